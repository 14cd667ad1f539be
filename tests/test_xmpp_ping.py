"""XEP-0199 pings and the FedOne server ping with its XEP-0184 receipt."""

from twisted.internet import defer
from twisted.trial import unittest
from twisted.words.xish import domish

from tests import xmpp_fakes as fx
from tests.helpers import LogWatch
from wavebox.retry import RetryPolicy
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
        log = LogWatch(self)
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


class PingerTestCase(unittest.SynchronousTestCase):
    """A pinger on an S2S service whose sent stanzas are collected."""

    def setUp(self):
        self.service, self.network, _, self.clock = fx.make_service()
        self.addCleanup(self.service.stopService)
        self.sent = []
        self.service.send = self.sent.append
        self.log = LogWatch(self)

    def pinger(self, locate=None, **kw):
        pinger = ping.ServerPinger(self.service, "wave.a.test", ["b.test"], locate=locate,
                                   clock=self.clock, timeout=60, **kw)
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


class PingerTests(PingerTestCase):

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


class PingerRetryTests(PingerTestCase):
    """A peer that is down at our start-up is pinged again until it answers."""

    def bounce(self, message):
        from twisted.words.protocols.jabber import error
        self.service.local.deliver(error.StanzaError(
            "remote-server-timeout", type="wait", text="connection refused").toResponse(message))

    def warnings(self):
        from twisted.logger import LogLevel
        return [e for e in self.log.events if e.get("log_namespace") == "wavebox.xmpp.ping"
                and e.get("log_level") == LogLevel.warn]

    def test_start_up_ping_is_retried_until_the_peer_answers(self):
        self.pinger()
        self.bounce(self.sent[0])
        self.clock.advance(9)
        self.assertEqual(len(self.sent), 1)
        self.clock.advance(1)
        self.assertEqual(len(self.sent), 2)
        self.bounce(self.sent[1])
        self.clock.advance(20)
        self.assertEqual(len(self.sent), 3)
        self.receipt(self.sent[2])
        self.assertEqual(self.log.count("got ping response from b.test"), 1)
        self.clock.advance(24 * 3600)
        self.assertEqual(len(self.sent), 3)

    def test_an_outage_is_one_warning_not_one_per_attempt(self):
        self.pinger()
        for _ in range(5):
            self.bounce(self.sent[-1])
            self.clock.advance(700)
        self.assertEqual(len(self.sent), 6)
        [warning] = self.warnings()
        from twisted.logger import formatEvent
        self.assertIn("ping to b.test failed: remote-server-timeout (connection refused); "
                      "pinging it again in 10s", formatEvent(warning))
        self.assertEqual(self.log.count("sending ping to b.test"), 1)

    def test_retries_wait_twice_as_long_each_time_up_to_the_cap(self):
        self.pinger(retry=RetryPolicy(10, 600, attempts=12))
        delays = []
        for _ in range(8):
            self.bounce(self.sent[-1])
            before, sent = self.clock.seconds(), len(self.sent)
            for _ in range(3600):
                if len(self.sent) > sent:
                    break
                self.clock.advance(1)
            delays.append(self.clock.seconds() - before)
        self.assertEqual(delays, [10, 20, 40, 80, 160, 320, 600, 600])

    def test_no_receipt_in_time_is_retried_too(self):
        self.pinger()
        self.clock.advance(60)
        self.assertEqual(self.log.count("no ping response from b.test in 60s"), 1)
        self.clock.advance(10)
        self.assertEqual(len(self.sent), 2)

    def test_pinging_stops_after_the_last_attempt(self):
        self.pinger(retry=RetryPolicy(10, 600, attempts=3))
        for _ in range(3):
            self.bounce(self.sent[-1])
            self.clock.advance(3600)
        self.assertEqual(len(self.sent), 3)
        self.assertEqual(self.log.count("no answer from b.test in 3 attempts"), 1)

    def test_unfound_peer_is_forgotten_and_looked_for_again(self):
        found, forgotten = [], []

        def locate(domain):
            found.append(domain)
            if len(found) < 3:
                return defer.fail(RuntimeError("no wave service"))
            return defer.succeed("wave." + domain)
        self.pinger(locate=locate, forget=forgotten.append)
        self.clock.advance(10)
        self.clock.advance(20)
        self.assertEqual((found, forgotten), (["b.test"] * 3, ["b.test"] * 2))
        self.assertEqual(len(self.sent), 1)
        self.assertEqual(len(self.warnings()), 1)

    def test_stopping_cancels_the_next_ping(self):
        pinger = self.pinger()
        self.bounce(self.sent[0])
        pinger.stopService()
        self.clock.advance(3600)
        self.assertEqual(len(self.sent), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_ping_asked_for_later_is_not_retried(self):
        pinger = self.pinger()
        self.receipt(self.sent[0])
        answered = pinger.ping("b.test")
        self.bounce(self.sent[1])
        self.assertFalse(self.successResultOf(answered))
        self.clock.advance(3600)
        self.assertEqual(len(self.sent), 2)
