"""XEP-0199 pings and the FedOne server ping with its XEP-0184 receipt."""

from twisted.internet import defer
from twisted.trial import unittest
from twisted.words.xish import domish

from tests import xmpp_fakes as fx
from wavebox.xmpp import ping


class ResponderTests(unittest.SynchronousTestCase):

    def setUp(self):
        self.service, self.network, _, _ = fx.make_service(
            table={"b.test": [("127.0.0.3", 5269)], "wave.b.test": [("127.0.0.3", 5269)]})
        self.addCleanup(self.service.stopService)
        self.service.add_handler(ping.PingResponder())
        self.service.tls.proves.update(["b.test", "wave.b.test"])
        self.peer = fx.open_incoming(self.service)
        self.peer.feed("<db:result from='wave.b.test' to='wave.a.test'>k</db:result>")
        self.peer.feed("<db:result from='b.test' to='a.test'>k</db:result>")

    def answers(self, local, remote):
        out = fx.answer_outgoing(self.network, sender=remote)
        out.take()
        out.feed("<db:result from='%s' to='%s' type='valid'/>" % (remote, local))
        return out.take()[1]

    def test_xmpp_ping_gets_an_empty_result(self):
        self.peer.feed("<iq type='get' id='p1' from='b.test' to='a.test'>"
                       "<ping xmlns='urn:xmpp:ping'/></iq>")
        [answer] = self.answers("a.test", "b.test")
        self.assertEqual((answer.name, answer["type"], answer["id"], answer["from"],
                          answer["to"]), ("iq", "result", "p1", "a.test", "b.test"))
        self.assertEqual(list(answer.elements()), [])

    def test_fedone_ping_gets_a_receipt_with_the_same_id_and_swapped_addresses(self):
        log = fx.LogCapture(self)
        self.peer.feed(
            "<message type='normal' id='ping-1' from='wave.b.test' to='wave.a.test'>"
            "<ping xmlns='http://waveprotocol.org/protocol/0.2/waveserver'/>"
            "<request xmlns='urn:xmpp:receipts'/></message>")
        [answer] = self.answers("wave.a.test", "wave.b.test")
        self.assertEqual((answer.name, answer["id"], answer["from"], answer["to"]),
                         ("message", "ping-1", "wave.a.test", "wave.b.test"))
        self.assertEqual(log.count("answered the wave ping from wave.b.test"), 1)
        self.assertEqual([(c.uri, c.name) for c in answer.elements()],
                         [("urn:xmpp:receipts", "received")])


class PingerTests(unittest.SynchronousTestCase):

    def setUp(self):
        self.service, self.network, _, self.clock = fx.make_service()
        self.addCleanup(self.service.stopService)
        self.sent = []
        self.service.send = self.sent.append
        self.log = fx.LogCapture(self)

    def pinger(self, locate=None):
        pinger = ping.ServerPinger(self.service, "wave.a.test", ["b.test"], locate=locate,
                                   clock=self.clock, timeout=60)
        pinger.startService()
        self.addCleanup(pinger.stopService)
        self.clock.advance(0)
        return pinger

    def receipt(self, ping_message, sender=None):
        m = domish.Element((None, "message"))
        m["id"], m["from"], m["to"] = (ping_message["id"], sender or ping_message["to"],
                                       ping_message["from"])
        m.addElement((ping.NS_RECEIPTS, "received"))
        self.service.local.deliver(m)

    def test_start_up_pings_the_guessed_wave_service(self):
        self.pinger()
        [m] = self.sent
        self.assertEqual((m.name, m["type"], m["from"], m["to"]),
                         ("message", "normal", "wave.a.test", "wave.b.test"))
        self.assertEqual(sorted((c.uri, c.name) for c in m.elements()),
                         [(ping.NS_WAVE_SERVER, "ping"), (ping.NS_RECEIPTS, "request")])

    def test_receipt_logs_got_ping_response(self):
        self.pinger()
        self.receipt(self.sent[0])
        self.assertEqual(self.log.count("got ping response from b.test"), 1)

    def test_receipt_from_another_jid_is_not_the_answer(self):
        self.pinger()
        self.receipt(self.sent[0], sender="mallory.b.test")
        self.assertEqual(self.log.count("got ping response"), 0)

    def test_discovered_service_is_pinged(self):
        self.pinger(locate=lambda domain: defer.succeed("waves." + domain))
        self.assertEqual(self.sent[0]["to"], "waves.b.test")

    def test_no_receipt_in_time_is_logged(self):
        pinger = self.pinger()
        self.clock.advance(61)
        self.assertEqual(self.log.count("no ping response from b.test"), 1)
        self.assertEqual(pinger._waiting, {})

    def test_bounced_ping_is_logged_with_its_condition(self):
        self.pinger()
        from twisted.words.protocols.jabber import error
        bounce = error.StanzaError("remote-server-not-found").toResponse(self.sent[0])
        self.service.local.deliver(bounce)
        self.assertEqual(self.log.count("ping to b.test failed: remote-server-not-found"), 1)

    def test_bounced_ping_log_line_carries_the_reason_text(self):
        self.pinger()
        from twisted.words.protocols.jabber import error
        bounce = error.StanzaError(
            "remote-server-timeout", type="wait",
            text="cannot connect to 127.0.0.3:5269: connection refused").toResponse(self.sent[0])
        self.service.local.deliver(bounce)
        self.assertEqual(self.log.count(
            "ping to b.test failed: remote-server-timeout "
            "(cannot connect to 127.0.0.3:5269: connection refused)"), 1)
