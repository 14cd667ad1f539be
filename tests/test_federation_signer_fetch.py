"""
Issue 5, host side item 2: the host fetches an unknown submitter's signer
info (a §1.6 signer get sent to the JID the submit came from), validates and
keeps it, then verifies the submit; a submitter that does not answer is
told ``internal-server-error`` (wait) so that it posts (FedOne/WIAB, §7(b)2).
Our side gives our own signer info to the host of a wavelet we do not host.
"""

import base64

from tests import pki
from tests.helpers import LogWatch, insert
from tests.test_federation import BOB, A, B, C, FederationTestCase
from wavebox import crypto
from wavebox.federation import stanzas as S
from wavebox.model.delta import HashedVersion, WaveletDelta
from wavebox.model.ids import ParticipantId, WaveletName
from wavebox.model.operations import MutateDocument
from wavebox.wire import convert

X = "x.b.test"      # another JID of b.test's (a subdomain speaks for it)


class ScriptedSubmitter:
    """A submitting server on the network whose answers to signer gets we script."""

    def __init__(self, net, jid, answer):
        self.answer = answer        # iq -> reply element, or None to stay silent
        self.got = []
        self.transport = net.transport([jid])
        self.transport.service = self

    def stanza_received(self, element):
        self.got.append(element)
        if element.name == "iq" and element.getAttribute("type") == "get":
            reply = self.answer(element)
            if reply is not None:
                self.transport.send(reply)

    def signer_gets(self):
        return [e for e in self.got if e.name == "iq" and e.getAttribute("type") == "get"
                and S.classify_iq(e) == S.SIGNER_GET]


def chain_answer(signer):
    """Answer every signer get with ``signer``'s chain, as a §1.6 response."""
    info = signer.signer_info

    def answer(iq):
        return S.build_signer_response(iq, S.SignerInfoPayload(
            info.domain, info.hash_algorithm, tuple(info.certificates)))
    return answer


class SignerFetchTestCase(FederationTestCase):

    def setUp(self):
        FederationTestCase.setUp(self)
        self.log = LogWatch(self)

    def iqs(self, frm, to, kind, type_):
        return [e for e in self.stanzas_between(frm, to, "iq")
                if e.getAttribute("type") == type_ and S.classify_iq(e) == kind]

    def replies(self, frm, to, type_):
        return [e for e in self.stanzas_between(frm, to, "iq") if e.getAttribute("type") == type_]

    def never_post(self, node=None):
        """b believes a.test has its signer info: it submits without posting it."""
        (node or self.b).federation.remote._posted.add("a.test")

    def bob_submit(self, name, signer, text, stanza_id="s1", frm=X):
        """A submit of bob's line, signed by ``signer``, as it goes on the wire."""
        target = self.a.version(name)
        delta = WaveletDelta(ParticipantId(BOB), target, [MutateDocument("b+x", insert(text))])
        data = convert.serialize_wavelet_delta(delta)
        return target, S.build_submit_request(frm, A, stanza_id, S.SubmitRequest(
            name.uri, convert.serialize_signed_delta(signer.sign_delta(data, delta))))

    def stored_signer(self, node, signer):
        return self.successResultOf(node.store.get_signer_info(signer.signer_id))


class HostFetchesSignerTests(SignerFetchTestCase):

    def test_submit_from_a_signer_never_posted_is_accepted_after_fetching_it(self):
        name = self.wave_with_bob()
        self.never_post()
        self.assertIsNone(self.stored_signer(self.a, self.b.signer))
        result = self.run_(self.b.say(BOB, name, "unposted", document="b+9"))
        self.assertEqual(result.hashed_version_after, self.a.version(name))
        self.assertEqual(self.a.texts(name), {"b+9": "unposted"})
        # The host asked b.test itself, once, and took its answer: no post, no retry.
        self.assertEqual(len(self.iqs(A, B, S.SIGNER_GET, "get")), 1)
        self.assertEqual(len(self.replies(B, A, "result")), 1)
        self.assertEqual(self.iqs(B, A, S.SIGNER_POST, "set"), [])
        self.assertEqual(len(self.iqs(B, A, S.SUBMIT, "set")), 1)
        self.assertEqual(self.replies(A, B, "error"), [])
        stored = self.stored_signer(self.a, self.b.signer)
        self.assertEqual(stored.domain, "b.test")
        self.assertEqual(convert.parse_signer_info(stored.blob).certificates,
                         self.b.signer.signer_info.certificates)
        self.assertEqual(self.a.federation.host.signer_fetches, 1)

    def test_fetched_signer_is_kept_for_the_next_submits(self):
        name = self.wave_with_bob()
        self.never_post()
        for i in range(3):
            self.run_(self.b.say(BOB, name, "line %d" % i))
        self.assertEqual(len(self.iqs(A, B, S.SIGNER_GET, "get")), 1)
        self.assertEqual(len(self.iqs(B, A, S.SUBMIT, "set")), 3)

    def test_signer_get_sent_by_the_host_has_the_signer_request_shape(self):
        name = self.wave_with_bob()
        peer = ScriptedSubmitter(self.net, X, chain_answer(self.b.signer))
        target, submit = self.bob_submit(name, self.b.signer, "from x")
        [reply] = self.send_raw(X, A, submit)
        self.assertEqual(reply.getAttribute("type"), "result", reply.toXml())
        [get] = peer.signer_gets()
        # To the JID the submit came from, from the wavelet's service JID.
        self.assertEqual((get.getAttribute("from"), get.getAttribute("to")), (A, X))
        self.assertTrue(get.getAttribute("id"))
        [pubsub] = list(get.elements())
        self.assertEqual((pubsub.uri, pubsub.name), (S.NS_PUBSUB, "pubsub"))
        [items] = list(pubsub.elements())
        self.assertEqual((items.uri, items.name), (S.NS_PUBSUB, "items"))
        self.assertEqual(items.getAttribute("node"), "signer")
        [request] = list(items.elements())      # no <item> around it (§1.6)
        self.assertEqual((request.uri, request.name), (S.NS_WAVE, "signer-request"))
        self.assertEqual(dict(request.attributes), {
            "signer-id": base64.b64encode(self.b.signer.signer_id).decode("ascii"),
            "wavelet-name": name.uri,
            "version": str(target.version),
            "history-hash": base64.b64encode(target.history_hash).decode("ascii"),
        })
        parsed = S.parse_signer_request(get)
        self.assertEqual((parsed.signer_id, parsed.version, parsed.history_hash),
                         (self.b.signer.signer_id, target.version, target.history_hash))
        self.assertIn("b+x", self.a.texts(name))

    def test_fetched_chain_that_does_not_validate_refuses_the_submit(self):
        name = self.wave_with_bob()
        key, cert = crypto.generate_key_and_certificate("b.test", key_size=1024)
        untrusted = crypto.Signer(key, [cert], "b.test")      # self-signed: no trusted root
        peer = ScriptedSubmitter(self.net, X, chain_answer(untrusted))
        _, submit = self.bob_submit(name, untrusted, "untrusted")
        error = self.assertRefused(self.send_raw(X, A, submit))
        self.assertIn("Remote verification failed", error.text)
        self.assertEqual(len(peer.signer_gets()), 1)
        self.assertIsNone(self.stored_signer(self.a, untrusted))
        self.assertNotIn("b+x", self.a.texts(name))
        self.assertEqual(self.log.count("submit from %s refused: bad-request" % (X,)), 1)
        self.assertEqual(self.log.count("fetched from %s does not validate" % (X,)), 1)

    def test_fetched_chain_of_another_domain_refuses_the_submit(self):
        name = self.wave_with_bob()
        other = pki.signer("c.test")          # trusted, but not b.test's
        ScriptedSubmitter(self.net, X, chain_answer(other))
        _, submit = self.bob_submit(name, other, "not bob's server")
        error = self.assertRefused(self.send_raw(X, A, submit))
        self.assertIn("Remote verification failed", error.text)
        self.assertIn("does not speak for 'b.test'", error.text)
        self.assertIsNone(self.stored_signer(self.a, other))
        self.assertNotIn("b+x", self.a.texts(name))

    def test_concurrent_submits_from_one_unknown_signer_cause_one_fetch(self):
        name = self.wave_with_bob()
        self.never_post()
        first = self.b.say(BOB, name, "one", document="b+1")
        second = self.b.say(BOB, name, "two", document="b+2")
        self.net.pump()
        self.successResultOf(first)
        self.successResultOf(second)
        self.assertEqual(len(self.iqs(B, A, S.SUBMIT, "set")), 2)
        self.assertEqual(len(self.iqs(A, B, S.SIGNER_GET, "get")), 1)
        self.assertEqual(self.a.federation.host.signer_fetches, 1)
        self.assertEqual(self.a.texts(name), {"b+1": "one", "b+2": "two"})
        self.assertEqual(self.a.federation.host._fetching, {})


class FetchFailsTests(SignerFetchTestCase):
    """Interop: a submitter that cannot answer the signer get posts and retries, as today."""

    def test_submitter_refusing_the_signer_get_is_told_to_wait_then_posts(self):
        name = self.wave_with_bob()
        answer = S.FederationError("bad-request", "Non-local wavelet")   # what WIAB says
        peer = ScriptedSubmitter(self.net, X, lambda iq: S.build_error_reply(iq, answer))
        _, submit = self.bob_submit(name, self.b.signer, "first try")
        error = self.assertRefused(self.send_raw(X, A, submit), "internal-server-error")
        [reply] = [e for f, t, e in self.net.log if f == A and t == X and
                   e.getAttribute("id") == "s1"]
        [err] = [c for c in reply.elements() if c.name == "error"]
        self.assertEqual(err.getAttribute("type"), "wait")
        self.assertIn("signer", error.text.lower())
        self.assertEqual(len(peer.signer_gets()), 1)
        self.assertIsNone(self.stored_signer(self.a, self.b.signer))
        # It posts its signer info (§1.7) and submits again: accepted, nothing fetched.
        info = self.b.signer.signer_info
        [posted] = self.send_raw(X, A, S.build_signer_post(X, A, "p1", S.SignerInfoPayload(
            info.domain, info.hash_algorithm, tuple(info.certificates))))
        self.assertEqual(posted.getAttribute("type"), "result")
        submit["id"] = "s2"
        [reply] = self.send_raw(X, A, submit)
        self.assertEqual(reply.getAttribute("type"), "result", reply.toXml())
        self.assertEqual(len(peer.signer_gets()), 1)
        self.assertIn("b+x", self.a.texts(name))

    def test_silent_submitter_is_told_to_wait_before_it_gives_up(self):
        name = self.wave_with_bob()
        self.never_post()
        # b.test answers no signer get (lost on the way, or a peer that ignores it).
        self.net.drop = lambda e: (e.name == "iq" and e.getAttribute("type") == "get"
                                   and S.classify_iq(e) == S.SIGNER_GET)
        d = self.b.say(BOB, name, "after the wait", document="b+9")
        self.net.pump()
        self.assertNoResult(d)
        self.clock.advance(self.a.federation.host.signer_fetch_timeout)
        self.net.pump()
        # a answered wait in time; b posted, submitted again and was accepted.
        result = self.successResultOf(d)
        self.assertEqual(result.hashed_version_after, self.a.version(name))
        [wait] = self.replies(A, B, "error")
        self.assertEqual(S.parse_error(wait).condition, "internal-server-error")
        self.assertEqual(len(self.iqs(B, A, S.SIGNER_POST, "set")), 1)
        self.assertEqual(len(self.iqs(B, A, S.SUBMIT, "set")), 2)
        self.assertEqual(self.a.texts(name), {"b+9": "after the wait"})


class OwnSignerForTheHostTests(SignerFetchTestCase):
    """Our remote side gives our own chain to the host of a wavelet we do not host."""

    def signer_get(self, frm, name, signer_id, stanza_id="g1"):
        z = HashedVersion.zero(name)
        return self.send_raw(frm, B, S.build_signer_request(frm, B, stanza_id, S.SignerRequest(
            name.uri, signer_id, z.version, z.history_hash)))

    def test_our_signer_info_is_given_to_the_host_of_a_wavelet_we_do_not_host(self):
        name = WaveletName.of("a.test", "w+notyet", "a.test", "conv+root")
        [reply] = self.signer_get(A, name, self.b.signer.signer_id)
        info = S.parse_signer_response(reply)
        self.assertEqual((info.domain, info.algorithm), ("b.test", "SHA256"))
        self.assertEqual(list(info.certificates), list(self.b.signer.signer_info.certificates))

    def test_our_signer_info_is_refused_to_a_server_that_does_not_host_the_wavelet(self):
        self.node("c.test")
        name = WaveletName.of("a.test", "w+other", "a.test", "conv+root")
        error = self.assertRefused(self.signer_get(C, name, self.b.signer.signer_id))
        self.assertIn("c.test does not host", error.text)
        self.assertEqual(self.log.count("signer-get from %s refused: bad-request" % (C,)), 1)

    def test_another_signer_for_a_wavelet_we_do_not_host_is_refused_as_before(self):
        name = WaveletName.of("a.test", "w+other", "a.test", "conv+root")
        error = self.assertRefused(self.signer_get(A, name, self.a.signer.signer_id))
        self.assertIn("Non-local wavelet", error.text)
