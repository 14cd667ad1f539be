"""
S2S between wavebox and a real ejabberd, both directions, with STARTTLS and
SASL EXTERNAL or dialback (issue 15, items 1 and 4).

wavebox serves ``a.test`` (and its wave service ``wave.a.test``) on
127.0.0.2, built by ``wavebox.service.makeService`` as twistd builds it,
with ``tls_required yes`` and a certificate from the tests' CA, which it
trusts.  ejabberd 23.01 serves ``ejabberd.test`` on 127.0.0.36 with a
certificate from the same CA, ``s2s_use_starttls: required`` and
``mod_s2s_dialback``.  Both find each other through the tests' DNS server on
loopback.  ejabberd's side of a request is made by a user of its own, logged
in on its c2s port: ejabberd then routes the stanza over S2S itself.

After STARTTLS each side offers SASL EXTERNAL (XEP-0178) to the other,
whose certificate it trusts, so both directions authenticate by
certificate; ejabberd logs "Accepted inbound/outbound s2s EXTERNAL
authentication" and wavebox "authenticated by SASL EXTERNAL".  A second
domain pair on wavebox's stream (wave.a.test) is added with dialback when
ejabberd has ``mod_s2s_dialback``, on a stream of its own by EXTERNAL when
it has not.  Without ``mod_s2s_dialback`` ejabberd accepts certificates
only: the same tests pass, and a wavebox whose certificate ejabberd does not
trust is told so at once, on its own side.
"""

import os

from twisted.internet import defer, reactor
from twisted.trial import unittest
from twisted.words.protocols.jabber import error
from twisted.words.xish import domish

from tests import pki
from tests.ejabberd import NS_DISCO_INFO, NS_DISCO_ITEMS, NS_PING, EjabberdPeer
from tests.helpers import PROSODY_GUARD as GUARD
from tests.helpers import LogWatch, wavebox_beside_ejabberd
from wavebox.xmpp.disco import NS_WAVE_SERVER as NS_WAVE


def iq_get(sender, to, namespace, name="query"):
    iq = domish.Element((None, "iq"))
    iq["type"], iq["from"], iq["to"] = "get", sender, to
    iq.addElement((namespace, name))
    return iq


def children(answer, namespace, name):
    return [child for query in answer.elements(namespace, "query")
            for child in query.elements(namespace, name)]


def identities(answer):
    return [(i.getAttribute("category"), i.getAttribute("type"), i.getAttribute("name"))
            for i in children(answer, NS_DISCO_INFO, "identity")]


def features(answer):
    return [f.getAttribute("var") for f in children(answer, NS_DISCO_INFO, "feature")]


class WaveboxAndEjabberd(unittest.TestCase):

    timeout = 120
    wavebox_options = {}
    #: Load ejabberd's mod_s2s_dialback (False: certificates only).
    ejabberd_dialback = True

    @defer.inlineCallbacks
    def setUp(self):
        directory = self.mktemp()
        self.log = LogWatch(self)
        self.peer = EjabberdPeer(directory + "/ejabberd", dialback=self.ejabberd_dialback)
        # Cleanups run last-in first-out: this check runs after peer.stop.
        self.addCleanup(self.assert_no_ejabberd_process_left)
        self.addCleanup(self.peer.stop)
        self.wavebox, self.zone = yield wavebox_beside_ejabberd(
            self, self.peer, directory + "/wavebox", **self.wavebox_options)

    def assert_no_ejabberd_process_left(self):
        # beam.smp and its port programs, ejabberdctl, su, erl, any new epmd.
        self.assertEqual(self.peer.processes_left(), {})
        self.assertIsNotNone(self.peer.beam_pid)

    @property
    def s2s(self):
        return self.wavebox.s2s

    def request(self, iq):
        return self.s2s.request(iq, timeout=GUARD).addTimeout(GUARD + 5, reactor)

    def ejabberd_logs(self, text):
        return self.peer.wait_for_log(text, timeout=GUARD)

    def assert_no_dialback_at_ejabberd(self):
        self.assertFalse(self.peer.log_lines("s2s dialback authentication"))

    def our_log(self, text):
        return [line for line in self.log.lines if text in line]

    def incoming_from_ejabberd(self):
        """wavebox's incoming streams on which ejabberd.test is authenticated."""
        return [session for session in self.s2s.incoming
                if ("ejabberd.test", "a.test") in session.authenticated
                or ("ejabberd.test", "wave.a.test") in session.authenticated]


class WaveboxToEjabberdTests(WaveboxAndEjabberd):

    @defer.inlineCallbacks
    def test_ping_gets_ejabberds_pong_over_tls_and_sasl_external(self):
        answer = yield self.request(iq_get("a.test", "ejabberd.test", NS_PING, "ping"))
        self.assertEqual((answer["type"], answer["from"], answer["to"]),
                         ("result", "ejabberd.test", "a.test"))
        # Our stream: STARTTLS, ejabberd's certificate chained to the tests'
        # CA and names ejabberd.test.
        [stream] = self.s2s.outgoing
        self.assertTrue(stream.tls_active)
        self.assertTrue(stream.tls_verdict.chain_ok, stream.tls_verdict.error)
        self.assertTrue(stream.peer_proves("ejabberd.test"))
        self.assertIn(("a.test", "ejabberd.test"), stream.authenticated)
        # ejabberd trusts our certificate, so it offered EXTERNAL, and we used it.
        self.assertEqual(stream.auth_methods, {("a.test", "ejabberd.test"): "SASL EXTERNAL"})
        self.assertEqual(len(self.our_log(
            "a.test -> ejabberd.test authenticated by SASL EXTERNAL")), 1, self.log.lines)
        yield self.ejabberd_logs("Accepted inbound s2s EXTERNAL authentication "
                                 "a.test -> ejabberd.test (127.0.0.2)")
        self.assert_no_dialback_at_ejabberd()

    @defer.inlineCallbacks
    def test_disco_info_lists_what_ejabberd_has(self):
        info = yield self.request(iq_get("a.test", "ejabberd.test", NS_DISCO_INFO))
        self.assertEqual(info["from"], "ejabberd.test")
        self.assertIn(("server", "im", "ejabberd"), identities(info))
        # mod_disco and mod_ping, the modules the fixture loads.
        for feature in (NS_DISCO_INFO, NS_DISCO_ITEMS, NS_PING):
            self.assertIn(feature, features(info))
        self.assertNotIn(NS_WAVE, features(info))

    @defer.inlineCallbacks
    def test_ejabberd_answers_an_unknown_query_with_a_stanza_error(self):
        failure = yield self.assertFailure(
            self.request(iq_get("a.test", "ejabberd.test", "urn:example:unknown")),
            error.StanzaError)
        self.assertEqual(failure.condition, "service-unavailable")

    @defer.inlineCallbacks
    def test_wave_service_jid_pings_ejabberd_on_a_second_pair(self):
        yield self.request(iq_get("a.test", "ejabberd.test", NS_PING, "ping"))
        answer = yield self.request(iq_get("wave.a.test", "ejabberd.test", NS_PING, "ping"))
        self.assertEqual((answer["type"], answer["to"]), ("result", "wave.a.test"))
        # EXTERNAL authenticates a stream's own header pair; the second pair
        # is multiplexed with dialback on the same stream (XEP-0220 2.6).
        [stream] = self.s2s.outgoing
        self.assertEqual(stream.auth_methods[("wave.a.test", "ejabberd.test")], "dialback")
        yield self.ejabberd_logs("Accepted inbound s2s dialback authentication "
                                 "wave.a.test -> ejabberd.test")


class UntrustedEjabberdCertificateTests(WaveboxAndEjabberd):
    """wavebox trusts another CA only: ejabberd's certificate must be refused."""

    def setUp(self):
        other_ca = pki.write_ca_file(os.path.abspath(self.mktemp()),
                                     "a CA ejabberd's certificate is not from")
        self.wavebox_options = {"trusted_ca": other_ca}
        return WaveboxAndEjabberd.setUp(self)

    @defer.inlineCallbacks
    def test_stream_to_ejabberd_is_refused_and_says_why(self):
        failure = yield self.assertFailure(
            self.request(iq_get("a.test", "ejabberd.test", NS_PING, "ping")), error.StanzaError)
        self.assertEqual(failure.condition, "remote-server-timeout")
        self.assertIn("TLS certificate of ejabberd.test refused: its CA is not in trusted_ca",
                      failure.text)
        # Said once for the stream (and once more where the route gives up).
        refusals = [line for line in self.log.lines if line.startswith("outgoing S2S stream")
                    and "TLS certificate of ejabberd.test refused" in line]
        self.assertEqual(len(refusals), 1, self.log.lines)


class EjabberdToWaveboxTests(WaveboxAndEjabberd):

    @defer.inlineCallbacks
    def setUp(self):
        yield WaveboxAndEjabberd.setUp(self)
        self.user = yield self.peer.user("tester")

    @defer.inlineCallbacks
    def test_ejabberd_user_ping_gets_waveboxs_pong(self):
        answer = yield self.user.ping("a.test")
        self.assertEqual((answer["type"], answer["from"], answer["to"]),
                         ("result", "a.test", "tester@ejabberd.test/probe"))
        # ejabberd's stream to us: TLS with its certificate, which we checked
        # against the tests' CA, then SASL EXTERNAL, which we offered for it.
        [stream] = self.incoming_from_ejabberd()
        self.assertTrue(stream.tls_active)
        self.assertTrue(stream.tls_verdict.chain_ok, stream.tls_verdict.error)
        self.assertTrue(stream.peer_proves("ejabberd.test"))
        self.assertEqual(stream.auth_methods, {("ejabberd.test", "a.test"): "SASL EXTERNAL"})
        self.assertEqual(len(self.our_log(
            "ejabberd.test -> a.test authenticated by SASL EXTERNAL")), 1, self.log.lines)
        yield self.ejabberd_logs("Accepted outbound s2s EXTERNAL authentication "
                                 "ejabberd.test -> a.test (127.0.0.2)")
        self.assertFalse(self.peer.log_lines("Failed outbound s2s EXTERNAL"))
        self.assert_no_dialback_at_ejabberd()

    @defer.inlineCallbacks
    def test_ejabberd_user_disco_sees_the_wave_service(self):
        items = yield self.user.disco_items("a.test")
        self.assertIn("wave.a.test", [i.getAttribute("jid") for i in
                                      children(items, NS_DISCO_ITEMS, "item")])
        info = yield self.user.disco_info("wave.a.test")
        self.assertEqual(info["from"], "wave.a.test")
        self.assertIn(("collaboration", "google-wave", "wavebox"), identities(info))
        self.assertIn(NS_WAVE, features(info))
        domain = yield self.user.disco_info("a.test")
        self.assertIn(("server", "im", "wavebox"), identities(domain))

    @defer.inlineCallbacks
    def test_ejabberd_user_pings_the_wave_service_jid(self):
        answer = yield self.user.ping("wave.a.test")
        self.assertEqual((answer["type"], answer["from"]), ("result", "wave.a.test"))
        yield self.ejabberd_logs("Accepted outbound s2s EXTERNAL authentication "
                                 "ejabberd.test -> wave.a.test")


class BothDirectionsAtOnceTests(WaveboxAndEjabberd):

    @defer.inlineCallbacks
    def test_simultaneous_pings_both_ways(self):
        user = yield self.peer.user("tester")
        ours = self.request(iq_get("a.test", "ejabberd.test", NS_PING, "ping"))
        theirs = user.ping("a.test")
        answer, pong = yield defer.gatherResults([ours, theirs])
        self.assertEqual((answer["type"], pong["type"]), ("result", "result"))
        # And again, on the streams now established.
        answer = yield self.request(iq_get("a.test", "ejabberd.test", NS_PING, "ping"))
        pong = yield user.ping("a.test")
        self.assertEqual((answer["type"], pong["type"]), ("result", "result"))


# --- ejabberd without mod_s2s_dialback: certificates only ----------------------------

class WaveboxToCertificateOnlyEjabberdTests(WaveboxToEjabberdTests):
    ejabberd_dialback = False

    @defer.inlineCallbacks
    def test_wave_service_jid_pings_ejabberd_on_a_second_pair(self):
        yield self.request(iq_get("a.test", "ejabberd.test", NS_PING, "ping"))
        answer = yield self.request(iq_get("wave.a.test", "ejabberd.test", NS_PING, "ping"))
        self.assertEqual((answer["type"], answer["to"]), ("result", "wave.a.test"))
        # No dialback to multiplex with: the second pair has a stream of its
        # own, whose header names it, authenticated by EXTERNAL too.
        methods = {pair: method for stream in self.s2s.outgoing
                   for pair, method in stream.auth_methods.items()}
        self.assertEqual(methods, {("a.test", "ejabberd.test"): "SASL EXTERNAL",
                                   ("wave.a.test", "ejabberd.test"): "SASL EXTERNAL"})
        self.assertEqual(len(self.s2s.outgoing), 2)
        yield self.ejabberd_logs("Accepted inbound s2s EXTERNAL authentication "
                                 "wave.a.test -> ejabberd.test")
        self.assert_no_dialback_at_ejabberd()


class CertificateOnlyEjabberdToWaveboxTests(EjabberdToWaveboxTests):
    ejabberd_dialback = False


class BothWaysWithCertificateOnlyEjabberdTests(BothDirectionsAtOnceTests):
    ejabberd_dialback = False


class CertificateOnlyEjabberdRefusesOurCertificateTests(WaveboxAndEjabberd):
    """
    ejabberd without dialback, and wavebox's certificate from a CA ejabberd
    does not trust: no method is left.  wavebox says so on its side, and the
    request comes back with the reason instead of waiting for ever.
    """

    ejabberd_dialback = False

    def setUp(self):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        cert_path, key_path = pki.write_certificate_files(
            "a.test", directory, ca_name="a CA ejabberd does not trust")
        self.wavebox_options = {"certificate": cert_path, "private_key": key_path}
        return WaveboxAndEjabberd.setUp(self)

    @defer.inlineCallbacks
    def test_refusal_of_both_methods_is_said_here_and_bounces_the_request(self):
        failure = yield self.assertFailure(
            self.request(iq_get("a.test", "ejabberd.test", NS_PING, "ping")), error.StanzaError)
        self.assertEqual(failure.condition, "remote-server-timeout")
        # ejabberd offers EXTERNAL to anyone after STARTTLS and checks the
        # certificate on <auth>; it has no dialback to fall back to.
        self.assertIn("SASL EXTERNAL failed (not-authorized)", failure.text)
        self.assertIn("ejabberd.test does not offer dialback", failure.text)
        yield self.ejabberd_logs("Failed inbound s2s EXTERNAL authentication a.test -> "
                                 "ejabberd.test")
        refused = self.our_log("ejabberd.test accepted neither SASL EXTERNAL nor dialback "
                               "from a.test")
        self.assertEqual(len(refused), 1, self.log.lines)
        self.assertFalse([s for s in self.s2s.outgoing if s.authenticated])
