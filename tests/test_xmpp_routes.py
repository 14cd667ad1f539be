"""
Routes and their back-off across a domain's family: a domain and its wave
service (``b.test`` and ``wave.b.test``) are one peer, so a stream that
either opens to us ends the wait of our routes to both (and only to them).
"""

from twisted.trial import unittest
from twisted.words.xish import domish

from tests import xmpp_fakes as fx


def message(sender, to, body="hi"):
    m = domish.Element((None, "message"))
    m["from"], m["to"] = sender, to
    m.addElement("body", content=body)
    return m


class FamilyBackOffTests(unittest.SynchronousTestCase):

    def setUp(self):
        self.service, self.network, self.resolver, self.clock = fx.make_service(
            table={"b.test": [("127.0.0.3", 5269)], "c.test": [("127.0.0.4", 5269)]})
        self.addCleanup(self.service.stopService)

    def backing_off(self, local, remote):
        self.service.send(message(local, remote))
        self.network.refuse(self.network.attempts[-1])
        route = self.service.routes.table[(local, remote)]
        self.assertGreater(route.retry_at, self.clock.seconds())
        self.service.send(message(local, remote, "waiting"))
        return len(self.network.attempts)

    def test_the_wave_service_authenticating_ends_the_back_off_to_its_domain(self):
        tried = self.backing_off("a.test", "b.test")
        self.service.tls.proves.add("wave.b.test")
        incoming = fx.open_incoming(self.service, sender="wave.b.test", to="wave.a.test")
        incoming.feed("<db:result from='wave.b.test' to='wave.a.test'>k</db:result>")
        self.assertEqual(len(self.network.attempts), tried + 1)    # at once, not at the clock

    def test_another_domain_authenticating_leaves_the_back_off_alone(self):
        tried = self.backing_off("a.test", "b.test")
        self.service.tls.proves.add("c.test")
        incoming = fx.open_incoming(self.service, sender="c.test", to="a.test")
        incoming.feed("<db:result from='c.test' to='a.test'>k</db:result>")
        self.assertEqual(len(self.network.attempts), tried)
