"""
S2S between wavebox and a real Prosody, both directions (issue 6, item 1).

wavebox serves ``wave.test`` (and its wave service ``wave.wave.test``) on
127.0.0.2, built by ``wavebox.service.makeService`` as twistd builds it, with
``tls_required yes`` and Prosody's self-signed certificate as its trusted CA.
Prosody serves ``prosody.test`` on 127.0.0.5 with ``s2s_require_encryption``
and ``s2s_secure_auth = false``: it does not trust wavebox's self-signed
certificate, so it authenticates wavebox with dialback after STARTTLS.
wavebox finds Prosody through a real DNS server on loopback (SRV and A
records carrying Prosody's port); Prosody finds wavebox through the test
module's routes.

Prosody 0.12 holds the ``db:verify`` for wavebox's key until its *own*
stream to wavebox is authenticated, and that needs wavebox to verify
Prosody's key while its ``db:result`` is still pending.  A server that waits
on one stream for another deadlocks here; these tests would time out.
"""

from twisted.internet import defer, reactor
from twisted.trial import unittest
from twisted.words.protocols.jabber import error
from twisted.words.xish import domish

from tests.helpers import LogWatch as LogLines
from tests.helpers import PROSODY_GUARD as GUARD
from tests.helpers import wavebox_behind_prosody, wavebox_beside_prosody
from tests.prosody import ProsodyPeer


def iq_get(sender, to, namespace, name="query"):
    iq = domish.Element((None, "iq"))
    iq["type"], iq["from"], iq["to"] = "get", sender, to
    iq.addElement((namespace, name))
    return iq


def children(answer, namespace, name):
    return [child for query in answer.elements(namespace, "query")
            for child in query.elements(namespace, name)]


class WaveboxAndProsody(unittest.TestCase):

    timeout = 120

    @defer.inlineCallbacks
    def setUp(self):
        directory = self.mktemp()
        self.peer = ProsodyPeer(directory + "/prosody")
        self.addCleanup(self.peer.stop)
        self.wavebox, self.zone = yield wavebox_beside_prosody(
            self, self.peer, directory + "/wavebox")

    @property
    def s2s(self):
        return self.wavebox.s2s

    def request(self, iq):
        return self.s2s.request(iq, timeout=GUARD).addTimeout(GUARD + 5, reactor)

    def ping(self, sender="wave.test", to="prosody.test"):
        return self.request(iq_get(sender, to, "urn:xmpp:ping", "ping"))

    def prosody_log_order(self, *texts):
        """Line numbers of the first log line containing each text (None if missing)."""
        lines = self.peer.log_text().splitlines()
        return [next((i for i, line in enumerate(lines) if text in line), None)
                for text in texts]


class WaveboxToProsodyTests(WaveboxAndProsody):

    @defer.inlineCallbacks
    def test_ping_gets_prosodys_pong(self):
        answer = yield self.ping()
        self.assertEqual((answer["type"], answer["from"], answer["to"]),
                         ("result", "prosody.test", "wave.test"))
        # Encrypted both ways; Prosody authenticated us with dialback.
        log = self.peer.log_text()
        self.assertIn("Incoming s2s connection wave.test->prosody.test complete", log)
        self.assertIn("Outgoing s2s connection prosody.test->wave.test complete", log)
        self.assertGreaterEqual(log.count("Stream encrypted"), 2)
        for stream in self.s2s.outgoing:
            self.assertTrue(stream.tls_active)
            self.assertTrue(stream.tls_verdict.chain_ok, stream.tls_verdict.error)

    @defer.inlineCallbacks
    def test_prosody_holds_its_verify_until_its_own_stream_is_authenticated(self):
        yield self.ping()
        # The order Prosody logs proves which interlocking happened: our
        # incoming stream from Prosody was authenticated (we verified its key
        # while our db:result was pending) before Prosody answered our key.
        outgoing, incoming = self.prosody_log_order(
            "Outgoing s2s connection prosody.test->wave.test complete",
            "Incoming s2s connection wave.test->prosody.test complete")
        self.assertIsNotNone(outgoing, self.peer.log_text())
        self.assertIsNotNone(incoming, self.peer.log_text())
        self.assertLess(outgoing, incoming)

    @defer.inlineCallbacks
    def test_disco_info_and_items_get_prosodys_answers(self):
        info = yield self.request(iq_get("wave.test", "prosody.test",
                                         "http://jabber.org/protocol/disco#info"))
        identities = [(i.getAttribute("category"), i.getAttribute("type"))
                      for i in children(info, "http://jabber.org/protocol/disco#info",
                                        "identity")]
        features = [f.getAttribute("var") for f in
                    children(info, "http://jabber.org/protocol/disco#info", "feature")]
        self.assertIn(("server", "im"), identities)
        self.assertIn("urn:xmpp:ping", features)
        self.assertIn("http://jabber.org/protocol/disco#items", features)

        items = yield self.request(iq_get("wave.test", "prosody.test",
                                          "http://jabber.org/protocol/disco#items"))
        jids = [i.getAttribute("jid") for i in
                children(items, "http://jabber.org/protocol/disco#items", "item")]
        self.assertEqual(jids, ["wave.prosody.test"])

    @defer.inlineCallbacks
    def test_wave_service_discovery_of_prosody_finds_no_wave_service(self):
        # Prosody lists its component, but nobody serves it: disco of the
        # item fails, and discovery falls back to the wave. guess, which
        # resolves to nothing here.
        from wavebox.xmpp.discovery import DiscoveryFailed
        failure = yield self.assertFailure(
            self.wavebox.discovery.discover("prosody.test"), DiscoveryFailed)
        self.assertIn("wave.prosody.test", str(failure.trace))

    @defer.inlineCallbacks
    def test_stanza_to_unknown_prosody_user_gets_prosodys_answer(self):
        # Prosody answers pings to any JID of its host (research notes §7).
        answer = yield self.ping(to="nobody@prosody.test")
        self.assertEqual(answer["type"], "result")
        # And an iq Prosody does not handle comes back as a stanza error.
        failure = yield self.assertFailure(
            self.request(iq_get("wave.test", "prosody.test", "urn:example:unknown")),
            error.StanzaError)
        self.assertEqual(failure.condition, "service-unavailable")

    @defer.inlineCallbacks
    def test_second_of_our_domains_gets_its_answers(self):
        # Regression: with both pairs multiplexed on one stream, Prosody
        # sends the answer to wave.wave.test over its stream authenticated
        # only for (prosody.test, wave.test).  We used to refuse that as
        # invalid-from and the request timed out; prosody.test is
        # authenticated on that stream and wave.wave.test is ours, so it is
        # accepted now.
        yield self.ping(sender="wave.test")
        answer = yield self.ping(sender="wave.wave.test")
        self.assertEqual((answer["type"], answer["to"]), ("result", "wave.wave.test"))
        self.assertNotIn("invalid-from", self.peer.log_text())
        # Both pairs on one outgoing stream: Prosody offers no dialback
        # errors, but a new sender domain needs none (XEP-0220 2.6.1).
        [stream] = self.s2s.outgoing
        self.assertEqual(stream.authenticated, {("wave.test", "prosody.test"),
                                                ("wave.wave.test", "prosody.test")})
        self.assertIn("connection wave.test->prosody.test is now authenticated for "
                      "wave.wave.test", self.peer.log_text())


class ProsodyToWaveboxTests(WaveboxAndProsody):

    @defer.inlineCallbacks
    def test_prosody_ping_gets_waveboxs_pong(self):
        answer = yield self.peer.ping("wave.test")
        self.assertIn("pong from wave.test", answer)
        log = self.peer.log_text()
        self.assertIn("Outgoing s2s connection prosody.test->wave.test complete", log)
        self.assertIn("Incoming s2s connection wave.test->prosody.test complete", log)

    @defer.inlineCallbacks
    def test_prosody_disco_sees_the_wave_service(self):
        items = yield self.peer.disco("wave.test", "items")
        self.assertIn("item wave.wave.test", items)
        info = yield self.peer.disco("wave.wave.test", "info")
        self.assertIn("identity collaboration/google-wave wavebox", info)
        self.assertIn("feature http://waveprotocol.org/protocol/0.2/waveserver", info)
        domain = yield self.peer.disco("wave.test", "info")
        self.assertIn("identity server/im wavebox", domain)

    @defer.inlineCallbacks
    def test_prosody_ping_to_the_wave_service_jid(self):
        answer = yield self.peer.ping("wave.wave.test")
        self.assertIn("pong from wave.wave.test", answer)


class BothDirectionsAtOnceTests(WaveboxAndProsody):

    @defer.inlineCallbacks
    def test_simultaneous_pings_both_ways_do_not_deadlock(self):
        ours = self.ping()
        theirs = self.peer.ping("wave.test")
        answer, pong = yield defer.gatherResults([ours, theirs])
        self.assertEqual(answer["type"], "result")
        self.assertIn("pong from wave.test", pong)
        # And again, on the streams now established.
        answer = yield self.ping(sender="wave.wave.test")
        self.assertEqual(answer["type"], "result")
        pong = yield self.peer.ping("wave.wave.test")
        self.assertIn("pong from wave.wave.test", pong)



# --- Prosody with s2s_secure_auth = true and no mod_dialback ------------------------

class WaveboxAndSecureProsody(unittest.TestCase):
    """
    Prosody requires valid certificates (``s2s_secure_auth = true``) and has
    no dialback: both it and wavebox have certificates from the tests' CA
    and trust it, and SASL EXTERNAL (XEP-0178) authenticates every stream.
    """

    timeout = 120

    @defer.inlineCallbacks
    def setUp(self):
        import os

        from tests import pki
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory + "/wavebox")
        self.log = LogLines(self)
        self.peer = ProsodyPeer(directory + "/prosody", secure_auth=True, dialback=False)
        self.addCleanup(self.peer.stop)
        certificate, key, ca = pki.write_domain_files("wave.test", directory + "/wavebox")
        self.wavebox, self.zone = yield wavebox_beside_prosody(
            self, self.peer, directory + "/wavebox", certificate=certificate,
            private_key=key, trusted_ca=ca)

    @property
    def s2s(self):
        return self.wavebox.s2s

    def request(self, iq):
        return self.s2s.request(iq, timeout=GUARD).addTimeout(GUARD + 5, reactor)

    def methods(self, streams):
        return {pair: method for stream in streams
                for pair, method in getattr(stream, "auth_methods", {}).items()}

    def assert_no_dialback(self):
        self.assertNotIn("mod_dialback", self.peer.log_text())
        self.assertFalse([line for line in self.log.lines if "dialback" in line
                          and "authenticated" in line])


class WaveboxToSecureProsodyTests(WaveboxAndSecureProsody):

    @defer.inlineCallbacks
    def test_ping_and_disco_authenticated_by_sasl_external(self):
        answer = yield self.request(iq_get("wave.test", "prosody.test", "urn:xmpp:ping", "ping"))
        self.assertEqual((answer["type"], answer["from"]), ("result", "prosody.test"))
        info = yield self.request(iq_get("wave.test", "prosody.test",
                                         "http://jabber.org/protocol/disco#info"))
        features = [f.getAttribute("var") for f in
                    children(info, "http://jabber.org/protocol/disco#info", "feature")]
        self.assertIn("urn:xmpp:ping", features)
        self.assertEqual(self.methods(self.s2s.outgoing),
                         {("wave.test", "prosody.test"): "SASL EXTERNAL"})
        # Prosody's answers came on its own stream to us, by EXTERNAL too.
        self.assertEqual(self.methods(self.s2s.incoming),
                         {("prosody.test", "wave.test"): "SASL EXTERNAL"})
        self.assertIn("Incoming s2s connection wave.test->prosody.test complete",
                      self.peer.log_text())
        self.assert_no_dialback()


class SecureProsodyToWaveboxTests(WaveboxAndSecureProsody):

    @defer.inlineCallbacks
    def test_prosody_ping_and_disco_authenticated_by_sasl_external(self):
        answer = yield self.peer.ping("wave.test")
        self.assertIn("pong from wave.test", answer)
        items = yield self.peer.disco("wave.test", "items")
        self.assertIn("item wave.wave.test", items)
        info = yield self.peer.disco("wave.wave.test", "info")
        self.assertIn("feature http://waveprotocol.org/protocol/0.2/waveserver", info)
        incoming = self.methods(self.s2s.incoming)
        self.assertEqual(incoming[("prosody.test", "wave.test")], "SASL EXTERNAL")
        self.assertEqual(incoming[("prosody.test", "wave.wave.test")], "SASL EXTERNAL")
        self.assertIn("Outgoing s2s connection prosody.test->wave.test complete",
                      self.peer.log_text())
        self.assert_no_dialback()


class StandaloneToComponentBehindProsodyTests(unittest.TestCase):
    """
    Both deployments at once: wavebox ``wave.test`` (standalone S2S) pings
    ``prosody.test``, whose wave service is another wavebox, connected to
    Prosody as the component ``wave.prosody.test``.  Discovery finds it
    through Prosody's disco (the component is an item of prosody.test), and
    the FedOne ping and its receipt travel wave.test -> Prosody ->
    component and back.
    """

    timeout = 120

    @defer.inlineCallbacks
    def setUp(self):
        directory = self.mktemp()
        self.log = LogLines(self)
        self.peer = ProsodyPeer(directory + "/prosody", component_secret="s3cret")
        self.addCleanup(self.peer.stop)
        self.standalone, self.zone = yield wavebox_beside_prosody(
            self, self.peer, directory + "/standalone", component=True)
        self.component = yield wavebox_behind_prosody(self, self.peer, directory + "/component")

    @defer.inlineCallbacks
    def test_fedone_ping_reaches_the_component_and_the_receipt_comes_back(self):
        # What --xmpp_server_ping prosody.test does at start-up (the servers
        # here start before DNS and Prosody are ready, so it is asked later).
        answered = yield self.standalone.getServiceNamed("ping").ping("prosody.test")
        self.assertTrue(answered)
        line = yield self.log.wait_for("got ping response from prosody.test")
        self.assertEqual(line, "got ping response from prosody.test")
        self.assertEqual(self.log.count("sending ping to prosody.test (wave.prosody.test)"), 1)

    @defer.inlineCallbacks
    def test_discovery_finds_the_component_through_prosodys_disco(self):
        found = yield self.standalone.discovery.discover("prosody.test")
        self.assertEqual(found.jid, "wave.prosody.test")
        answer = yield self.standalone.s2s.request(
            iq_get("wave.wave.test", "wave.prosody.test", "urn:xmpp:ping", "ping"),
            timeout=GUARD)
        self.assertEqual((answer["type"], answer["from"]), ("result", "wave.prosody.test"))

    @defer.inlineCallbacks
    def test_component_pings_the_standalone_server_through_prosody(self):
        # The other way: the component's FedOne ping; Prosody does the S2S
        # (and its own dialback as wave.prosody.test) to reach wave.test.
        answered = yield self.component.getServiceNamed("ping").ping("wave.test")
        self.assertTrue(answered)
        self.assertEqual(self.log.count("sending ping to wave.test (wave.wave.test)"), 1)
        self.assertIn("Outgoing s2s connection wave.prosody.test->wave.wave.test complete",
                      self.peer.log_text())
