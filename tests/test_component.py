"""
XEP-0114 component client (wavebox/xmpp/component.py) without a network:
the handshake, the backoff schedule under task.Clock, and what a refused
handshake does.  The same behaviours against a real Prosody are in
tests/test_prosody_component.py.
"""

from twisted.internet import error as net_error
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import Logger, LogLevel, formatEvent
from twisted.python import failure
from twisted.trial import unittest
from twisted.words.protocols.jabber import error, xmlstream
from twisted.words.xish import domish
from tx_xmpp.subprotocols import XMPPHandler

from wavebox.retry import RetryPolicy
from wavebox.xmpp.component import ExternalComponent, handshake_digest

COMPONENT_HEADER = (b"<stream:stream xmlns='jabber:component:accept' "
                    b"xmlns:stream='http://etherx.jabber.org/streams' "
                    b"id='%s' from='wave.prosody.test'>")


class RecordingHandler(XMPPHandler):
    def __init__(self):
        XMPPHandler.__init__(self)
        self.events = []

    def connectionMade(self):
        self.events.append("made")

    def connectionInitialized(self):
        self.events.append("initialized")

    def connectionLost(self, reason):
        self.events.append("lost")
        XMPPHandler.connectionLost(self, reason)


class Harness:
    """An ExternalComponent on a memory reactor, with its log collected."""

    def __init__(self, testcase, secret="secret", retry=None, refused_delay=60.0):
        self.reactor = MemoryReactorClock()
        self.handler = RecordingHandler()
        self.events = []
        self.component = ExternalComponent(
            "127.0.0.5", 5347, "wave.prosody.test", secret, handlers=[self.handler],
            reactor=self.reactor,
            retry=retry or RetryPolicy(initial=1.0, factor=2.0, maximum=30.0, jitter=0.0),
            refused_delay=refused_delay)
        self.component.log = Logger(observer=self.events.append)
        self.xs = None
        self.transport = None
        testcase.addCleanup(self.stop)

    def stop(self):
        if self.component.running:
            self.component.stopService()
            if self.xs is not None:
                self.drop()

    @property
    def attempts(self):
        return len(self.reactor.tcpClients)

    def accept(self):
        """The last connection attempt reaches the server; returns the stream."""
        factory = self.reactor.tcpClients[-1][2]
        self.wire = factory.buildProtocol(None)     # as the endpoint wraps the stream
        self.transport = StringTransport()
        self.wire.makeConnection(self.transport)
        self.xs = self.component.xmlstream
        return self.xs

    def refuse_tcp(self):
        factory = self.reactor.tcpClients[-1][2]
        factory.clientConnectionFailed(self.reactor.connectors[-1],
                                       failure.Failure(net_error.ConnectionRefusedError()))

    def server_says(self, data):
        self.xs.dataReceived(data)

    def sent(self):
        data = self.transport.value()
        self.transport.clear()
        return data

    def drop(self, reason=None):
        reason = failure.Failure(reason or net_error.ConnectionDone())
        self.xs = None
        self.wire.connectionLost(reason)

    def handshake(self, stream_id=b"s1"):
        self.accept()
        self.server_says(COMPONENT_HEADER % stream_id)
        self.server_says(b"<handshake/>")

    def lines(self, level=None):
        """Formatted log lines at ``level``, or at every level above debug."""
        return [formatEvent(e) for e in self.events
                if e["log_level"].name == level
                or (level is None and e["log_level"] > LogLevel.debug)]


class HandshakeDigestTests(unittest.SynchronousTestCase):

    def test_digest_is_hex_sha1_of_stream_id_and_secret(self):
        # Taken from a handshake Prosody 0.12 accepted.
        self.assertEqual(handshake_digest("3bb223d8-5522-4919-afa2-d4152a43e2c9", "secret"),
                         "a470ab9cdfe4a6df8de83c0628c9b632a4377c99")

    def test_digest_encodes_non_ascii_secret_as_utf8(self):
        self.assertEqual(handshake_digest("id", "s\u00e9cret"),
                         xmlstream.hashPassword("id", "s\u00e9cret"))


class HandshakeTests(unittest.SynchronousTestCase):

    def test_stream_header_is_component_accept_to_the_component_jid(self):
        h = Harness(self)
        h.component.startService()
        self.assertEqual(h.reactor.tcpClients[0][:2], ("127.0.0.5", 5347))
        h.accept()
        header = h.sent()
        self.assertIn(b"xmlns='jabber:component:accept'", header)
        self.assertIn(b"to='wave.prosody.test'", header)
        self.assertNotIn(b"version=", header)

    def test_handshake_sends_digest_and_initializes_handlers(self):
        h = Harness(self, secret="secret")
        h.component.startService()
        h.accept()
        h.sent()
        h.server_says(COMPONENT_HEADER % b"3bb223d8-5522-4919-afa2-d4152a43e2c9")
        self.assertEqual(h.sent(), b"<handshake>a470ab9cdfe4a6df8de83c0628c9b632a4377c99"
                                   b"</handshake>")
        self.assertEqual(h.handler.events, ["made"])
        self.assertFalse(h.component.authenticated)

        h.server_says(b"<handshake/>")
        self.assertTrue(h.component.authenticated)
        self.assertEqual(h.handler.events, ["made", "initialized"])
        self.assertIn("connected to XMPP server 127.0.0.5:5347 as component wave.prosody.test",
                      h.lines("info"))

    def test_stanzas_sent_while_disconnected_go_out_after_handshake_from_component(self):
        h = Harness(self)
        h.component.startService()
        ping = domish.Element((None, "iq"))
        ping["type"], ping["to"], ping["id"] = "get", "wave.test", "p1"
        h.component.send(ping)
        h.accept()
        h.server_says(COMPONENT_HEADER % b"s1")
        self.assertNotIn(b"<iq", h.sent())
        h.server_says(b"<handshake/>")
        out = h.sent()
        self.assertIn(b"<iq", out)
        self.assertIn(b"from='wave.prosody.test'", out)

    def test_incoming_stanzas_reach_handlers_observers(self):
        h = Harness(self)
        seen = []
        h.component.startService()
        h.handshake()
        h.xs.addObserver("/iq", seen.append)
        h.server_says(b"<iq type='get' id='x' from='wave.test' to='wave.prosody.test'>"
                      b"<ping xmlns='urn:xmpp:ping'/></iq>")
        self.assertEqual([e["id"] for e in seen], ["x"])


class ReconnectTests(unittest.SynchronousTestCase):

    def test_unreachable_server_is_retried_with_growing_delays(self):
        h = Harness(self)
        h.component.startService()
        delays = []
        for _ in range(4):
            h.refuse_tcp()
            delays.append(h.component.next_delay)
            before = h.attempts
            h.reactor.advance(delays[-1] - 0.01)
            self.assertEqual(h.attempts, before, "retried before the delay was over")
            h.reactor.advance(0.01)
            self.assertEqual(h.attempts, before + 1)
        self.assertEqual(delays, [1.0, 2.0, 4.0, 8.0])
        self.assertEqual(len(h.lines("warn")), 4)
        self.assertIn("cannot connect to XMPP server 127.0.0.5:5347", h.lines("warn")[0])

    def test_lost_connection_after_handshake_reconnects_and_reinitializes(self):
        h = Harness(self)
        h.component.startService()
        h.refuse_tcp()
        h.reactor.advance(1.0)
        h.refuse_tcp()
        h.reactor.advance(2.0)
        h.handshake()
        # The server restarts: it closes the stream with an error.
        h.server_says(b"<stream:error><system-shutdown "
                      b"xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>")
        h.drop()
        self.assertEqual(h.handler.events, ["made", "initialized", "lost"])
        # A successful handshake reset the backoff: back to the initial delay.
        self.assertEqual(h.component.next_delay, 1.0)
        self.assertIn("stream error system-shutdown", h.lines("warn")[-1])
        h.reactor.advance(1.0)
        h.handshake(b"s2")
        self.assertEqual(h.handler.events, ["made", "initialized", "lost", "made", "initialized"])

    def test_connection_closed_before_handshake_does_not_reset_backoff(self):
        # A server that accepts TCP and hangs up must not be retried in a fast loop.
        h = Harness(self)
        h.component.startService()
        delays = []
        for _ in range(3):
            h.accept()
            h.server_says(COMPONENT_HEADER % b"s")
            h.drop()
            delays.append(h.component.next_delay)
            h.reactor.advance(delays[-1])
        self.assertEqual(delays, [1.0, 2.0, 4.0])

    def test_stop_cancels_the_pending_retry(self):
        h = Harness(self)
        h.component.startService()
        h.refuse_tcp()
        d = h.component.stopService()
        self.assertIsNone(self.successResultOf(d))
        h.reactor.advance(1000)
        self.assertEqual(h.attempts, 1)
        self.assertEqual(h.reactor.getDelayedCalls(), [])

    def test_stop_while_connected_closes_stream_and_does_not_reconnect(self):
        h = Harness(self)
        h.component.startService()
        h.handshake()
        h.sent()
        d = h.component.stopService()
        self.assertIn(b"</stream:stream>", h.sent())
        self.assertNoResult(d)
        h.drop()
        self.successResultOf(d)
        h.reactor.advance(1000)
        self.assertEqual(h.attempts, 1)


class RefusedHandshakeTests(unittest.SynchronousTestCase):

    NOT_AUTHORIZED = (b"<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
                      b"<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>Given token does not "
                      b"match calculated token</text></stream:error></stream:stream>")

    def refuse(self, h, stream_id=b"s1"):
        h.accept()
        h.server_says(COMPONENT_HEADER % stream_id)
        h.server_says(self.NOT_AUTHORIZED)
        self.assertTrue(h.transport.disconnecting)
        h.drop()

    def test_wrong_secret_logs_one_clear_line_and_retries_slowly(self):
        h = Harness(self, secret="wrong", refused_delay=60.0)
        h.component.startService()
        self.refuse(h)
        self.assertEqual(h.handler.events, ["made", "lost"])
        lines = h.lines()
        self.assertEqual(len(lines), 1, lines)
        self.assertEqual(h.lines("error"), lines)
        self.assertIn("refused component wave.prosody.test: wrong component secret", lines[0])
        self.assertIn("not-authorized: Given token does not match calculated token", lines[0])
        self.assertIn("retrying in 60 s", lines[0])
        h.reactor.advance(59.9)
        self.assertEqual(h.attempts, 1)
        h.reactor.advance(0.1)
        self.assertEqual(h.attempts, 2)

    def test_repeated_refusals_wait_longer_each_time(self):
        h = Harness(self, secret="wrong", refused_delay=3.0)
        h.component.startService()
        delays = []
        for i in range(5):
            self.refuse(h, b"s%d" % i)
            delays.append(h.component.next_delay)
            h.reactor.advance(delays[-1])
        # The refused floor first, then the backoff once it is longer.
        self.assertEqual(delays, [3.0, 3.0, 4.0, 8.0, 16.0])
        self.assertEqual(len(h.lines()), 5)
        self.assertEqual(h.attempts, 6)

    def test_unknown_component_name_says_to_configure_it(self):
        h = Harness(self)
        h.component.startService()
        h.accept()
        h.server_says(COMPONENT_HEADER % b"s1")
        h.server_says(b"<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
                      b"</stream:error>")
        h.drop()
        [line] = h.lines()
        self.assertIn("has no component of this name", line)


class ServiceAPITests(unittest.SynchronousTestCase):
    """The API the layers above share with S2SService: send, request, handlers, disco."""

    def connected(self):
        h = Harness(self)
        h.component.startService()
        h.handshake()
        h.sent()
        return h

    def test_request_fires_with_the_answer(self):
        h = self.connected()
        iq = domish.Element((None, "iq"))
        iq["type"], iq["to"] = "get", "prosody.test"
        iq.addElement(("urn:xmpp:ping", "ping"))
        d = h.component.request(iq)
        out = h.sent()
        self.assertIn(b"from='wave.prosody.test'", out)
        self.assertNoResult(d)
        h.server_says(b"<iq type='result' id='%s' from='prosody.test' to='wave.prosody.test'/>"
                      % iq["id"].encode())
        self.assertEqual(self.successResultOf(d)["type"], "result")

    def test_request_error_answer_is_a_stanza_error(self):
        h = self.connected()
        iq = domish.Element((None, "iq"))
        iq["type"], iq["to"], iq["id"] = "get", "nobody.test", "q1"
        d = h.component.request(iq)
        h.server_says(b"<iq type='error' id='q1' from='nobody.test' to='wave.prosody.test'>"
                      b"<error type='cancel'><remote-server-not-found "
                      b"xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>")
        self.assertEqual(self.failureResultOf(d, error.StanzaError).value.condition,
                         "remote-server-not-found")

    def test_request_without_answer_times_out_as_remote_server_timeout(self):
        h = self.connected()
        iq = domish.Element((None, "iq"))
        iq["type"], iq["to"] = "get", "slow.test"
        d = h.component.request(iq, timeout=5)
        h.reactor.advance(5)
        self.assertEqual(self.failureResultOf(d, error.StanzaError).value.condition,
                         "remote-server-timeout")

    def test_request_pending_when_stream_drops_fails(self):
        h = self.connected()
        iq = domish.Element((None, "iq"))
        iq["type"], iq["to"] = "get", "slow.test"
        d = h.component.request(iq)
        h.drop(net_error.ConnectionLost())
        self.failureResultOf(d, net_error.ConnectionLost)
        # No request timer is left: the one call waiting is the reconnection.
        self.assertEqual([c.getTime() for c in h.reactor.getDelayedCalls() if c.active()],
                         [h.reactor.seconds() + h.component.next_delay])

    def test_stanzas_go_out_in_the_component_namespace(self):
        h = self.connected()
        message = domish.Element(("jabber:server", "message"))
        message["to"] = "wave.test"
        message.addElement("body", content="hi")
        h.component.send(message)
        out = h.sent()
        self.assertNotIn(b"jabber:server", out)
        self.assertIn(b"<message to='wave.test' from='wave.prosody.test'><body>hi</body>", out)

    def test_unhandled_iq_get_is_answered_service_unavailable(self):
        h = self.connected()
        h.server_says(b"<iq type='get' id='u1' from='wave.test' to='alice@wave.prosody.test'>"
                      b"<query xmlns='jabber:iq:version'/></iq>")
        out = h.sent()
        self.assertIn(b"type='error'", out)
        self.assertIn(b"service-unavailable", out)
        self.assertIn(b"id='u1'", out)

    def test_disco_info_of_the_component_jid_is_answered(self):
        h = Harness(self)
        h.component.disco.add_identity("wave.prosody.test", "collaboration", "google-wave",
                                       "wavebox")
        h.component.startService()
        h.handshake()
        h.sent()
        h.server_says(b"<iq type='get' id='d1' from='wave.test' to='wave.prosody.test'>"
                      b"<query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        out = h.sent()
        self.assertIn(b"type='result'", out)
        self.assertIn(b"category='collaboration'", out)
        self.assertIn(b"type='google-wave'", out)
        self.assertNotIn(b"service-unavailable", out)

    def test_locate_falls_back_to_the_wave_guess_when_disco_fails(self):
        h = self.connected()
        d = h.component.locate_wave_service("other.test")
        out = h.sent().decode()
        iq_id = out.split("id='")[1].split("'")[0]
        h.server_says(("<iq type='error' id='%s' from='other.test' to='wave.prosody.test'>"
                       "<error type='cancel'><service-unavailable "
                       "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
                       % iq_id).encode())
        # disco#items failed with a non-reachability error: disco#info of the
        # domain itself is asked next; it fails too.
        out = h.sent().decode()
        iq_id = out.split("id='")[1].split("'")[0]
        h.server_says(("<iq type='error' id='%s' from='other.test' to='wave.prosody.test'>"
                       "<error type='cancel'><service-unavailable "
                       "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
                       % iq_id).encode())
        self.assertEqual(self.successResultOf(d), "wave.other.test")
