"""
wavebox as an XEP-0114 component of a real Prosody (issue 6, item 2): the
handshake, reconnection after Prosody restarts, a wrong secret, and stanzas
from Prosody answered by wavebox's handlers through the component stream.
"""

from twisted.internet import defer
from twisted.logger import Logger, LogLevel, formatEvent
from twisted.trial import unittest
from tx_xmpp.ping import PingHandler
from tx_xmpp.subprotocols import XMPPHandler

from tests.helpers import wavebox_behind_prosody
from tests.processes import poll_until
from tests.prosody import ProsodyPeer
from wavebox.retry import RetryPolicy
from wavebox.xmpp.component import ExternalComponent


class CountingHandler(XMPPHandler):
    """Counts completed handshakes (connectionInitialized calls)."""

    def __init__(self):
        XMPPHandler.__init__(self)
        self.initialized = 0

    def connectionInitialized(self):
        self.initialized += 1


class ComponentWithProsodyTests(unittest.TestCase):

    timeout = 120

    @defer.inlineCallbacks
    def start_prosody(self, **kwargs):
        self.peer = ProsodyPeer(self.mktemp(), **kwargs)
        self.addCleanup(self.peer.stop)
        yield self.peer.start()

    def start_component(self, secret="secret", handlers=(), refused_delay=60.0):
        self.counter = CountingHandler()
        self.log_events = []
        component = ExternalComponent(
            self.peer.ip, self.peer.component_port, self.peer.component_jid, secret,
            handlers=[self.counter] + list(handlers),
            retry=RetryPolicy(initial=0.1, factor=2.0, maximum=2.0, jitter=0.0),
            refused_delay=refused_delay)
        component.log = Logger(observer=self.log_events.append)
        component.startService()
        self.addCleanup(component.stopService)
        return component

    def log_lines(self, level):
        return [formatEvent(e) for e in self.log_events if e["log_level"] == level]

    def until(self, predicate, what):
        return poll_until(predicate, timeout=30, what=what, diagnostics=self.peer.log_text)

    @defer.inlineCallbacks
    def test_handshake_with_prosody_succeeds(self):
        yield self.start_prosody()
        component = self.start_component()
        yield self.until(lambda: self.counter.initialized == 1, "the component handshake")
        self.assertTrue(component.authenticated)
        self.assertIn("External component successfully authenticated", self.peer.log_text())
        self.assertEqual(self.log_lines(LogLevel.error), [])

    @defer.inlineCallbacks
    def test_reconnects_after_prosody_restarts(self):
        yield self.start_prosody()
        component = self.start_component()
        yield self.until(lambda: self.counter.initialized == 1, "the first handshake")
        yield self.peer.restart(down_for=0.5)
        yield self.until(lambda: self.counter.initialized == 2,
                         "the handshake after Prosody restarted")
        self.assertTrue(component.authenticated)
        lost = self.log_lines(LogLevel.warn)
        self.assertTrue(any("lost the connection to XMPP server" in line for line in lost), lost)
        # The handshake after the restart reset the count of failures.
        self.assertEqual(component.failures, 0)

    @defer.inlineCallbacks
    def test_wrong_secret_logs_one_line_per_attempt_and_waits_longer(self):
        yield self.start_prosody(component_secret="secret")
        component = self.start_component(secret="not-the-secret", refused_delay=0.3)
        delays = []

        def refusals():
            lines = self.log_lines(LogLevel.error)
            if len(lines) > len(delays):
                delays.append(component.next_delay)
            return len(lines) >= 3

        yield self.until(refusals, "three refused handshakes")
        errors = self.log_lines(LogLevel.error)
        self.assertEqual(len(errors), len(delays))
        for line in errors:
            self.assertIn("refused component wave.prosody.test: wrong component secret", line)
            self.assertIn("not-authorized", line)
        self.assertEqual(delays[:3], [0.3, 0.3, 0.4])
        self.assertEqual(self.counter.initialized, 0)
        self.assertFalse(component.authenticated)
        self.assertIn("Component authentication failed", self.peer.log_text())
        # Nothing else was logged above debug: no tracebacks, no extra noise.
        self.assertEqual([e for e in self.log_events
                          if e["log_level"] not in (LogLevel.debug, LogLevel.error)], [])

    @defer.inlineCallbacks
    def test_prosody_ping_to_component_is_answered_by_handlers(self):
        yield self.start_prosody()
        self.start_component(handlers=[PingHandler()])
        yield self.until(lambda: self.counter.initialized == 1, "the component handshake")
        answer = yield self.peer.ping_local("wave.prosody.test")
        self.assertIn("pong from wave.prosody.test", answer)


class WaveboxBehindProsodyTests(unittest.TestCase):
    """``twistd wavebox --component ...`` as makeService builds it, behind a real Prosody."""

    timeout = 120

    @defer.inlineCallbacks
    def setUp(self):
        self.peer = ProsodyPeer(self.mktemp(), component_secret="s3cret")
        self.addCleanup(self.peer.stop)
        yield self.peer.start()
        self.top = yield wavebox_behind_prosody(self, self.peer, self.mktemp(),
                                                what="wavebox's component handshake")

    def test_component_mode_does_not_listen_for_s2s(self):
        self.assertIsNone(self.top.s2s)
        self.assertEqual(self.top.xmpp.jid, "wave.prosody.test")

    @defer.inlineCallbacks
    def test_prosody_ping_is_answered_by_wavebox(self):
        answer = yield self.peer.ping_local("wave.prosody.test")
        self.assertIn("pong from wave.prosody.test", answer)

    @defer.inlineCallbacks
    def test_prosody_disco_sees_the_wave_identity_through_the_component(self):
        info = yield self.peer.disco("wave.prosody.test", "info")
        self.assertIn("identity collaboration/google-wave wavebox", info)
        self.assertIn("feature http://waveprotocol.org/protocol/0.2/waveserver", info)
        self.assertIn("feature urn:xmpp:ping", info)
        # Prosody lists the component as an item of its host: how remote
        # wave servers find wave.prosody.test (docs/deployment.rst).
        items = yield self.peer.disco("prosody.test", "items")
        self.assertIn("item wave.prosody.test", items)

    @defer.inlineCallbacks
    def test_wavebox_reaches_prosody_through_the_component(self):
        from twisted.words.xish import domish
        iq = domish.Element((None, "iq"))
        iq["type"], iq["to"] = "get", "prosody.test"
        iq.addElement(("urn:xmpp:ping", "ping"))
        answer = yield self.top.xmpp.request(iq, timeout=20)
        self.assertEqual((answer["type"], answer["from"]), ("result", "prosody.test"))
        service = yield self.top.xmpp.locate_wave_service("prosody.test")
        self.assertEqual(service, "wave.prosody.test")
