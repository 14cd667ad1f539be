"""
The federation host and remote, two (or three) wave servers joined by an
in-memory network that carries every stanza as XML text: the chat between
domains, concurrent typing, a peer that is down and comes back, restarts,
history catch-up, signer infos, and every trust rule refused.
"""

from cryptography.hazmat.primitives import serialization
from twisted.internet import task
from twisted.trial.unittest import SynchronousTestCase

from tests import pki
from tests.federation_fixtures import (
    MemoryNetwork, WaveNode, element, insert)
from tests.helpers import LogWatch
from wavebox import crypto
from wavebox.federation import stanzas as S
from wavebox.model.delta import HashedVersion, SignedDelta, WaveletDelta
from wavebox.model.ids import ParticipantId, WaveletName
from wavebox.model.operations import AddParticipant, MutateDocument
from wavebox.server import errors as server_errors
from wavebox.server.modelbridge import parse_applied_delta
from wavebox.wire import convert

ALICE, BOB, CAROL = "alice@a.test", "bob@b.test", "carol@c.test"
A, B, C = "wave.a.test", "wave.b.test", "wave.c.test"


class FederationTestCase(SynchronousTestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.clock.advance(1700000000)
        self.net = MemoryNetwork(self.clock)
        self.a = self.node("a.test")
        self.b = self.node("b.test")

    def node(self, domain, **kwargs):
        n = WaveNode(self.net, domain, **kwargs)
        self.addCleanup(n.stop)
        return n

    def run_(self, d):
        """Pump the network until ``d`` has fired; its result."""
        self.net.pump()
        return self.successResultOf(d)

    def failed(self, d):
        self.net.pump()
        return self.failureResultOf(d)

    def wave_with_bob(self):
        """alice@a.test makes a wave and adds bob@b.test; b.test now has a copy."""
        name = self.run_(self.a.new_wave(ALICE))
        self.run_(self.a.add(ALICE, name, BOB))
        return name

    def stanzas_between(self, frm, to, name=None):
        return [e for f, t, e in self.net.log if f == frm and t == to
                and (name is None or e.name == name)]

    def history_requests(self, frm=B, to=A):
        return [e for e in self.stanzas_between(frm, to, "iq")
                if e.getAttribute("type") == "get" and S.classify_iq(e) == S.HISTORY]

    def send_raw(self, frm, to, stanza):
        """Put a stanza on the wire from ``frm`` (as if from its authenticated stream)."""
        stanza["from"], stanza["to"] = frm, to
        self.net.nodes[frm].send(stanza)
        self.net.pump()
        return [e for f, t, e in self.net.log if f == to and t == frm
                and e.getAttribute("id") == stanza.getAttribute("id")]

    def assertRefused(self, replies, condition="bad-request"):
        self.assertEqual(len(replies), 1, replies)
        self.assertEqual(replies[0].getAttribute("type"), "error")
        error = S.parse_error(replies[0])
        self.assertEqual(error.condition, condition, error.text)
        return error


class ChatTests(FederationTestCase):

    def test_adding_a_remote_user_gives_their_server_the_wavelet(self):
        name = self.wave_with_bob()
        self.assertEqual(self.b.participants(name), [ALICE, BOB])
        self.assertEqual(self.b.version(name), self.a.version(name))

    def test_new_domain_gets_the_history_before_it_in_the_first_update(self):
        name = self.wave_with_bob()
        self.assertEqual(self.history_requests(), [])
        [update] = self.stanzas_between(A, B, "message")
        [wu] = S.parse_update_message(update)
        self.assertEqual(len(wu.applied_deltas), 2)
        self.assertEqual(wu.commit_notice.version, self.a.version(name).version)
        self.assertEqual(wu.commit_notice.history_hash, self.a.version(name).history_hash)

    def test_remote_wavelet_is_in_the_remote_users_inbox(self):
        name = self.wave_with_bob()
        inbox = self.successResultOf(self.b.server.inbox(BOB))
        self.assertEqual([(i.name, i.hosted) for i in inbox], [(name.uri, False)])

    def test_lines_typed_on_either_side_reach_both(self):
        name = self.wave_with_bob()
        self.run_(self.a.say(ALICE, name, "hello bob", document="b+1"))
        self.assertEqual(self.b.texts(name), {"b+1": "hello bob"})
        result = self.run_(self.b.say(BOB, name, "hi alice", document="b+2"))
        expected = {"b+1": "hello bob", "b+2": "hi alice"}
        self.assertEqual(self.a.texts(name), expected)
        self.assertEqual(self.b.texts(name), expected)
        self.assertEqual(result.hashed_version_after, self.a.version(name))
        self.assertEqual(self.b.version(name), self.a.version(name))

    def test_remote_submit_changes_the_copy_only_when_the_update_comes_back(self):
        name = self.wave_with_bob()
        self.net.drop = lambda e: e.name == "message" and e.getAttribute("from") == A
        self.run_(self.b.say(BOB, name, "hi", document="b+2"))
        self.assertEqual(self.a.texts(name), {"b+2": "hi"})
        self.assertEqual(self.b.texts(name), {})

    def test_signer_info_is_posted_once_per_host(self):
        name = self.wave_with_bob()
        for i in range(3):
            self.run_(self.b.say(BOB, name, "line %d" % i))
        posts = [e for e in self.stanzas_between(B, A, "iq")
                 if e.getAttribute("type") == "set" and S.classify_iq(e) == S.SIGNER_POST]
        self.assertEqual(len(posts), 1)

    def test_receiver_fetches_an_unknown_signer_once(self):
        name = self.wave_with_bob()
        self.run_(self.a.say(ALICE, name, "one"))
        self.run_(self.a.say(ALICE, name, "two"))
        gets = [e for e in self.stanzas_between(B, A, "iq")
                if e.getAttribute("type") == "get" and S.classify_iq(e) == S.SIGNER_GET]
        self.assertEqual(len(gets), 1)
        stored = self.successResultOf(self.b.store.get_signer_info(self.a.signer.signer_id))
        self.assertEqual(stored.domain, "a.test")

    def test_third_domain_verifies_a_remote_authors_delta_through_the_host(self):
        c = self.node("c.test")
        name = self.wave_with_bob()
        self.run_(self.b.say(BOB, name, "from bob", document="b+2"))
        self.run_(self.a.add(ALICE, name, CAROL))
        self.assertEqual(c.texts(name), {"b+2": "from bob"})
        self.assertEqual(c.version(name), self.a.version(name))
        # c learnt bob's chain from the host, which kept what b.test posted
        self.assertIsNotNone(self.successResultOf(
            c.store.get_signer_info(self.b.signer.signer_id)))

    def test_removed_domain_still_receives_its_removal(self):
        name = self.wave_with_bob()
        self.run_(self.a.remove(ALICE, name, BOB))
        self.assertEqual(self.b.participants(name), [ALICE])
        self.assertEqual(self.b.version(name), self.a.version(name))
        self.run_(self.a.say(ALICE, name, "after"))
        self.assertNotEqual(self.b.version(name), self.a.version(name))

    def test_receipt_is_sent_only_after_the_update_is_stored(self):
        name = self.wave_with_bob()
        self.run_(self.a.say(ALICE, name, "x"))
        receipts = [e for e in self.stanzas_between(B, A, "message")
                    if S.classify_message(e) == S.RECEIPT]
        self.assertEqual(len(receipts), 2)
        self.assertEqual(self.successResultOf(self.a.store.outbox_backlog()), {})
        stored = self.successResultOf(self.b.store.deltas(name.uri))
        self.assertEqual(stored[-1].resulting_version, self.a.version(name).version)

    def test_ping_is_answered_with_a_receipt(self):
        replies = self.send_raw(B, A, S.build_ping(B, A, "ping-1"))
        self.assertEqual([S.classify_message(r) for r in replies], [S.RECEIPT])


class ConcurrencyTests(FederationTestCase):

    def test_both_sides_typing_at_the_same_version_converge(self):
        name = self.wave_with_bob()
        self.run_(self.a.say(ALICE, name, "base", document="b+0"))
        version = self.a.version(name)
        self.assertEqual(self.b.version(name), version)
        edit_a = MutateDocument("b+0", insert("A", at=4, size=4))
        edit_b = MutateDocument("b+0", insert("B", at=4, size=4))
        da = self.a.submit(ALICE, name, [edit_a], target=version)
        db = self.b.submit(BOB, name, [edit_b], target=version)
        self.run_(da)
        self.run_(db)
        self.assertEqual(self.a.texts(name), self.b.texts(name))
        self.assertIn(self.a.texts(name)["b+0"], ("baseAB", "baseBA"))
        self.assertEqual(self.a.version(name), self.b.version(name))
        self.assertEqual(self.successResultOf(self.a.store.deltas(name.uri))[-1].applied_delta,
                         self.successResultOf(self.b.store.deltas(name.uri))[-1].applied_delta)

    def test_many_interleaved_lines_from_both_sides_converge(self):
        name = self.wave_with_bob()
        pending = []
        for i in range(10):
            pending.append(self.a.say(ALICE, name, "a%d" % i))
            pending.append(self.b.say(BOB, name, "b%d" % i))
            if i % 3 == 0:
                self.net.pump()
        for d in pending:
            self.run_(d)
        self.assertEqual(len(self.a.texts(name)), 20)
        self.assertEqual(self.a.texts(name), self.b.texts(name))
        self.assertEqual(self.a.version(name), self.b.version(name))


class OutageTests(FederationTestCase):

    def test_peer_down_while_users_type_catches_up_when_back(self):
        name = self.wave_with_bob()
        self.net.down.add(B)
        for i in range(5):
            self.run_(self.a.say(ALICE, name, "line %d" % i, document="b+%d" % i))
        self.clock.advance(1)
        self.net.pump()
        self.assertEqual(self.b.texts(name), {})
        self.assertEqual(self.successResultOf(self.a.store.outbox_backlog()), {"b.test": 5})
        self.net.down.discard(B)
        for _ in range(10):
            self.clock.advance(8)
            self.net.pump()
        self.assertEqual(self.b.texts(name), self.a.texts(name))
        self.assertEqual(self.b.version(name), self.a.version(name))
        self.assertEqual(self.successResultOf(self.a.store.outbox_backlog()), {})

    def test_a_submit_to_a_host_that_is_down_fails_as_host_unreachable(self):
        """Issue 9, finding 8: the core's own error, which the console words for people."""
        name = self.wave_with_bob()
        self.net.down.add(A)
        failure = self.failed(self.b.say(BOB, name, "anyone?"))
        failure.trap(server_errors.HostUnreachable)
        self.assertEqual(str(failure.value), "a.test cannot be reached")
        self.assertEqual(self.b.texts(name), {})

    def test_a_submit_the_host_refuses_fails_as_remote_host_error_saying_why(self):
        name = self.wave_with_bob()
        stale = HashedVersion(self.b.version(name).version + 7, b"\x01" * 20)
        failure = self.failed(self.b.submit(BOB, name, [MutateDocument("b+x", insert("x"))],
                                            stale))
        failure.trap(server_errors.RemoteHostError)
        self.assertNotIsInstance(failure.value, server_errors.HostUnreachable)
        self.assertIn("a.test refused it: bad-request", str(failure.value))

    def test_remote_server_restarts_and_catches_up_from_its_store(self):
        name = self.wave_with_bob()
        self.run_(self.a.say(ALICE, name, "before", document="b+0"))
        self.b.stop()
        self.net.down.add(B)
        self.run_(self.a.say(ALICE, name, "while down", document="b+1"))
        self.net.down.discard(B)
        b2 = self.node("b.test", store=self.b.store)
        for _ in range(5):
            self.clock.advance(8)
            self.net.pump()
        b2_state = self.successResultOf(b2.server.wavelet(name))
        self.assertEqual(b2_state.hashed_version, self.a.version(name))
        self.assertEqual({d: doc.text() for d, doc in b2_state.documents.items()},
                         {"b+0": "before", "b+1": "while down"})

    def test_host_restarts_and_its_outbox_resumes(self):
        name = self.wave_with_bob()
        self.net.down.add(B)
        self.run_(self.a.say(ALICE, name, "queued", document="b+0"))
        self.a.stop()
        self.net.down.discard(B)
        a2 = self.node("a.test", store=self.a.store)
        for _ in range(5):
            self.clock.advance(8)
            self.net.pump()
        self.assertEqual(self.b.texts(name), {"b+0": "queued"})
        self.assertEqual(self.successResultOf(a2.store.outbox_backlog()), {})

    def test_lost_update_is_fetched_as_history_on_the_next_one(self):
        name = self.wave_with_bob()
        lose = [True]

        def drop_first_update(e):
            if e.name == "message" and e.getAttribute("from") == A and lose[0]:
                lose[0] = False
                return True
            return False
        self.net.drop = drop_first_update
        self.run_(self.a.say(ALICE, name, "lost", document="b+0"))
        self.net.drop = None
        self.run_(self.a.say(ALICE, name, "next", document="b+1"))
        self.assertEqual(self.b.texts(name), {"b+0": "lost", "b+1": "next"})
        self.assertEqual(len(self.history_requests()), 1)

    def test_history_is_fetched_in_a_loop_when_the_host_gives_one_delta_a_time(self):
        b = self.node("b2.test", history_limit=1)
        name = self.run_(self.a.new_wave(ALICE))
        for i in range(4):
            self.run_(self.a.say(ALICE, name, "l%d" % i, document="b+%d" % i))
        self.a.federation.host._early.clear()
        self.run_(self.a.add(ALICE, name, "bob@b2.test"))
        self.assertEqual(b.version(name), self.a.version(name))
        self.assertEqual(len(b.texts(name)), 4)
        self.assertEqual(len(self.history_requests(frm="wave.b2.test")), 5)


class HostServiceTests(FederationTestCase):
    """History and signer info as the host serves them."""

    def history_iq(self, name, start, end, limit=None):
        self.ids = getattr(self, "ids", 0) + 1
        return S.build_history_request(B, A, "h%d" % self.ids, S.HistoryRequest(
            name.uri, start.version, start.history_hash, end.version, end.history_hash, limit))

    def boundaries(self, name):
        stored = self.successResultOf(self.a.store.deltas(name.uri))
        return [HashedVersion.zero(name)] + [
            HashedVersion(s.resulting_version, s.resulting_hash) for s in stored]

    def test_history_is_start_inclusive_end_exclusive(self):
        name = self.wave_with_bob()
        for i in range(3):
            self.run_(self.a.say(ALICE, name, "l%d" % i))
        v = self.boundaries(name)
        [reply] = self.send_raw(B, A, self.history_iq(name, v[1], v[4]))
        history = S.parse_history_response(reply)
        got = [parse_applied_delta(d).applied_at.version for d in history.applied_deltas]
        self.assertEqual(got, [v[1].version, v[2].version, v[3].version])
        self.assertEqual(history.commit_notice_version, v[4].version)
        self.assertIsNone(history.truncated_version)

    def test_history_truncates_only_when_over_the_limit(self):
        name = self.wave_with_bob()
        for i in range(3):
            self.run_(self.a.say(ALICE, name, "l%d" % i))
        v = self.boundaries(name)
        sizes = [len(s.applied_delta) for s in self.successResultOf(self.a.store.deltas(name.uri))]
        [reply] = self.send_raw(B, A, self.history_iq(name, v[0], v[5], limit=sum(sizes)))
        self.assertIsNone(S.parse_history_response(reply).truncated_version)
        [reply] = self.send_raw(B, A, self.history_iq(name, v[0], v[5],
                                                      limit=sizes[0] + sizes[1]))
        history = S.parse_history_response(reply)
        self.assertEqual(len(history.applied_deltas), 2)
        self.assertEqual(history.truncated_version, v[2].version)

    def test_history_with_a_wrong_hash_is_refused(self):
        name = self.wave_with_bob()
        v = self.boundaries(name)
        wrong = HashedVersion(v[1].version, b"\x00" * 20)
        self.assertRefused(self.send_raw(B, A, self.history_iq(name, v[0], wrong)))

    def test_history_of_an_unknown_wavelet_is_refused(self):
        name = WaveletName.of("a.test", "w+none", "a.test", "conv+root")
        z = HashedVersion.zero(name)
        self.assertRefused(self.send_raw(B, A, self.history_iq(name, z, z)))

    def test_signer_info_is_served_for_the_signer_of_the_delta_ending_there(self):
        name = self.wave_with_bob()
        self.run_(self.b.say(BOB, name, "signed by b"))
        v = self.boundaries(name)[-1]
        iq = S.build_signer_request(C, A, "g1", S.SignerRequest(
            name.uri, self.b.signer.signer_id, v.version, v.history_hash))
        [reply] = self.send_raw(B, A, iq)
        info = S.parse_signer_response(reply)
        self.assertEqual((info.domain, info.algorithm), ("b.test", "SHA256"))
        self.assertEqual(list(info.certificates), list(self.b.signer.signer_info.certificates))

    def test_signer_info_for_another_signer_of_that_version_is_refused(self):
        name = self.wave_with_bob()
        v = self.boundaries(name)[-1]
        iq = S.build_signer_request(B, A, "g1", S.SignerRequest(
            name.uri, self.b.signer.signer_id, v.version, v.history_hash))
        error = self.assertRefused(self.send_raw(B, A, iq))
        self.assertEqual(error.text, "Not authorised to get signer info")

    def test_signer_post_with_an_untrusted_chain_is_refused(self):
        key, cert = crypto.generate_key_and_certificate("b.test", key_size=1024)
        iq = S.build_signer_post(B, A, "p1", S.SignerInfoPayload(
            "b.test", "SHA256", (cert.public_bytes(serialization.Encoding.DER),)))
        error = self.assertRefused(self.send_raw(B, A, iq))
        self.assertIn("verification failure from domain b.test", error.text)

    def test_signer_post_whose_chain_goes_on_after_the_trusted_root_is_refused(self):
        # Issue 9, finding 9: [leaf, trusted root, another root] used to pass
        # as soon as the trusted root was reached.
        der = serialization.Encoding.DER
        key, leaf = crypto.generate_key_and_certificate("b.test", issuer=pki.ca(),
                                                        key_size=1024)
        _, other_root = crypto.generate_key_and_certificate(
            "Other Root", key_size=1024, ca=True, wave_extension=False)
        chain = (leaf.public_bytes(der), pki.ca()[1].public_bytes(der),
                 other_root.public_bytes(der))
        iq = S.build_signer_post(B, A, "p2", S.SignerInfoPayload("b.test", "SHA256", chain))
        error = self.assertRefused(self.send_raw(B, A, iq))
        self.assertIn("verification failure from domain b.test: Remote verification failed: "
                      "CN=Wavebox Federation Test CA is "
                      "issued by CN=Wavebox Federation Test CA, not by the certificate after it, "
                      "CN=Other Root", error.text)
        self.assertIsNone(self.successResultOf(self.a.store.get_signer_info(
            crypto.SignerInfo("b.test", chain).signer_id)))
        iq = S.build_signer_post(B, A, "p3", S.SignerInfoPayload("b.test", "SHA256",
                                                                 chain[:2]))
        [answer] = self.send_raw(B, A, iq)
        self.assertEqual(answer["type"], "result")

    def test_malformed_request_gets_bad_request(self):
        iq = element('<iq type="set" id="m1"><pubsub xmlns="%s"><publish node="wavelet"/>'
                     '</pubsub></iq>' % S.NS_PUBSUB)
        error = self.assertRefused(self.send_raw(B, A, iq))
        self.assertIn("Malformed submit request", error.text)

    def test_unknown_node_gets_bad_request(self):
        iq = element('<iq type="get" id="m2"><pubsub xmlns="%s"><items node="x"/>'
                     '</pubsub></iq>' % S.NS_PUBSUB)
        self.assertRefused(self.send_raw(B, A, iq))

    def test_submit_without_a_known_signer_is_retried_after_posting_again(self):
        name = self.wave_with_bob()
        self.b.federation.remote._posted.add("a.test")      # b believes a has it

        def refuse(iq):     # as FedOne/WIAB answer the host's signer get
            raise S.FederationError("bad-request", "Non-local wavelet")
        self.b.federation.host.handle_signer_get = refuse
        result = self.run_(self.b.say(BOB, name, "hi", document="b+9"))
        self.assertEqual(result.hashed_version_after, self.a.version(name))
        self.assertEqual(self.b.texts(name), {"b+9": "hi"})
        [wait] = [e for e in self.stanzas_between(A, B, "iq") if e.getAttribute("type") == "error"]
        refusal = S.parse_error(wait)
        self.assertEqual((refusal.condition, refusal.application),
                         ("internal-server-error", S.UNKNOWN_SIGNER))
        posts = [e for e in self.stanzas_between(B, A, "iq")
                 if e.getAttribute("type") == "set" and S.classify_iq(e) == S.SIGNER_POST]
        self.assertEqual(len(posts), 1)


class TrustRuleTests(FederationTestCase):
    """Each rule: refused with the protocol's error, logged, nothing changed."""

    def setUp(self):
        FederationTestCase.setUp(self)
        self.c = self.node("c.test")
        self.name = self.wave_with_bob()
        self.log = LogWatch(self)

    def assertLogged(self, kind, sender, text):
        """The refusal is logged once, with what was refused and why."""
        line = "%s from %s refused: bad-request " % (kind, sender)
        self.assertEqual(self.log.count(line), 1, self.log.lines)
        self.assertTrue([l for l in self.log.lines if line in l and text in l], self.log.lines)

    def update_from(self, frm, name, applied):
        msg = S.build_update_message(frm, B, "u1", [S.WaveletUpdate(name.uri, tuple(applied))])
        return self.send_raw(frm, B, msg)

    def test_update_for_a_wavelet_of_another_domain_is_refused(self):
        stored = self.successResultOf(self.a.store.deltas(self.name.uri))
        self.run_(self.a.say(ALICE, self.name, "real"))
        before = self.b.version(self.name)
        forged = [s.applied_delta for s in self.successResultOf(
            self.a.store.deltas(self.name.uri))][len(stored):]
        error = self.assertRefused(self.update_from(C, self.name, forged))
        self.assertIn("c.test may not send updates for wavelets of a.test", error.text)
        self.assertLogged("wavelet update", C, error.text)
        self.assertEqual(self.b.version(self.name), before)

    def test_update_for_a_local_wavelet_is_refused(self):
        own = self.run_(self.b.new_wave(BOB))
        [s] = self.successResultOf(self.b.store.deltas(own.uri))
        before = self.b.version(own)
        # A subdomain of b.test speaks for b.test, so only the "ours" rule stops it.
        self.net.transport(["x.b.test"])
        msg = S.build_update_message("x.b.test", B, "u2",
                                     [S.WaveletUpdate(own.uri, (s.applied_delta,))])
        error = self.assertRefused(self.send_raw("x.b.test", B, msg))
        self.assertEqual(error.text, "Received update to local wavelet")
        self.assertLogged("wavelet update", "x.b.test", error.text)
        self.assertEqual(self.b.version(own), before)

    def test_submit_for_an_author_of_another_domain_is_refused(self):
        signer = pki.signer("c.test")
        delta = WaveletDelta(ParticipantId(BOB), self.a.version(self.name),
                             [MutateDocument("b+x", insert("forged"))])
        data = convert.serialize_wavelet_delta(delta)
        signed = signer.sign_delta(data, delta)
        iq = S.build_submit_request(C, A, "s1", S.SubmitRequest(
            self.name.uri, convert.serialize_signed_delta(signed)))
        error = self.assertRefused(self.send_raw(C, A, iq))
        self.assertIn("c.test may not submit for bob@b.test", error.text)
        self.assertLogged("submit", C, error.text)
        self.assertNotIn("b+x", self.a.texts(self.name))

    def test_submit_with_a_bad_signature_is_refused(self):
        self.run_(self.b.say(BOB, self.name, "post the signer first"))
        delta = WaveletDelta(ParticipantId(BOB), self.a.version(self.name),
                             [MutateDocument("b+x", insert("tampered"))])
        data = convert.serialize_wavelet_delta(delta)
        good = self.b.signer.sign(data)
        bad = crypto.Signature(bytes(reversed(good.signature_bytes)), good.signer_id,
                               good.algorithm)
        iq = S.build_submit_request(B, A, "s2", S.SubmitRequest(
            self.name.uri, convert.serialize_signed_delta(SignedDelta(data, (bad,), delta))))
        error = self.assertRefused(self.send_raw(B, A, iq))
        self.assertIn("Remote verification failed", error.text)
        self.assertLogged("submit", B, error.text)
        self.assertNotIn("b+x", self.a.texts(self.name))

    def test_submit_adding_a_disguised_participant_is_refused(self):
        """Issue 9, finding 7: an address from the network is checked as the console's is."""
        self.run_(self.b.say(BOB, self.name, "post the signer first"))
        delta = WaveletDelta(ParticipantId(BOB), self.a.version(self.name),
                             [AddParticipant(ParticipantId("zzzeve@b.test"))])
        honest = convert.serialize_wavelet_delta(delta)
        # The same length in UTF-8: a right-to-left override makes "eve" show as "bob"-like.
        data = honest.replace(b"zzzeve@b.test", "\u202eeve@b.test".encode("utf-8"))
        self.assertNotEqual(data, honest)
        signed = SignedDelta(data, (self.b.signer.sign(data),))
        iq = S.build_submit_request(B, A, "s9", S.SubmitRequest(
            self.name.uri, convert.serialize_signed_delta(signed)))
        error = self.assertRefused(self.send_raw(B, A, iq))
        self.assertIn("bidi control character U+202E", error.text)
        self.assertLogged("submit", B, "U+202E")
        self.assertEqual(self.a.participants(self.name), [ALICE, BOB])

    def test_submit_at_a_version_that_is_not_a_delta_boundary_is_refused(self):
        self.run_(self.a.submit(ALICE, self.name, [MutateDocument("b+1", insert("x")),
                                                   MutateDocument("b+2", insert("y"))]))
        inside = HashedVersion(self.a.version(self.name).version - 1, b"\x01" * 20)
        delta = WaveletDelta(ParticipantId(BOB), inside, [MutateDocument("b+x", insert("z"))])
        data = convert.serialize_wavelet_delta(delta)
        iq = S.build_submit_request(B, A, "s3", S.SubmitRequest(
            self.name.uri, convert.serialize_signed_delta(self.b.signer.sign_delta(data, delta))))
        self.run_(self.b.say(BOB, self.name, "post the signer first"))
        error = self.assertRefused(self.send_raw(B, A, iq))
        self.assertIn("not a delta boundary", error.text)
        self.assertLogged("submit", B, error.text)

    def test_history_request_from_a_domain_without_participant_is_refused(self):
        v = self.a.version(self.name)
        iq = S.build_history_request(C, A, "h1", S.HistoryRequest(
            self.name.uri, 0, self.name.uri.encode(), v.version, v.history_hash))
        error = self.assertRefused(self.send_raw(C, A, iq))
        self.assertIn("c.test has no participant", error.text)
        self.assertLogged("history", C, error.text)

    def test_history_at_a_version_that_is_not_a_delta_boundary_is_refused(self):
        self.run_(self.a.submit(ALICE, self.name, [MutateDocument("b+1", insert("x")),
                                                   MutateDocument("b+2", insert("y"))]))
        v = self.a.version(self.name)
        iq = S.build_history_request(B, A, "h2", S.HistoryRequest(
            self.name.uri, 0, self.name.uri.encode(), v.version - 1, v.history_hash))
        error = self.assertRefused(self.send_raw(B, A, iq))
        self.assertIn("not a delta boundary", error.text)
        self.assertLogged("history", B, error.text)

    def test_signer_request_from_a_domain_without_participant_is_refused(self):
        v = self.a.version(self.name)
        iq = S.build_signer_request(C, A, "g1", S.SignerRequest(
            self.name.uri, self.a.signer.signer_id, v.version, v.history_hash))
        error = self.assertRefused(self.send_raw(C, A, iq))
        self.assertIn("c.test has no participant", error.text)
        self.assertLogged("signer-get", C, error.text)

    def test_update_with_a_bad_signature_is_refused_and_not_stored(self):
        stored = self.successResultOf(self.a.store.deltas(self.name.uri))
        v = self.a.version(self.name)
        delta = WaveletDelta(ParticipantId(ALICE), v, [MutateDocument("b+x", insert("evil"))])
        data = convert.serialize_wavelet_delta(delta)
        other_key, other_cert = crypto.generate_key_and_certificate(
            "a.test", issuer=pki.ca(), key_size=1024)
        impostor = crypto.Signer(other_key, [other_cert, pki.ca()[1]], "a.test")
        good = self.a.signer.sign(data)
        forged = crypto.Signature(impostor.sign(data).signature_bytes, good.signer_id,
                                  good.algorithm)
        applied = convert.build_applied_delta(SignedDelta(data, (forged,), delta), v, 1,
                                              1700000000000)
        error = self.assertRefused(self.update_from(A, self.name, [applied.applied_delta_bytes]))
        self.assertIn("Remote verification failed", error.text)
        self.assertLogged("wavelet update", A, error.text)
        self.assertEqual(len(self.successResultOf(self.b.store.deltas(self.name.uri))),
                         len(stored))

    def test_update_that_does_not_extend_the_hash_chain_is_refused(self):
        v = self.a.version(self.name)
        wrong = HashedVersion(v.version, b"\x07" * 20)
        delta = WaveletDelta(ParticipantId(ALICE), wrong, [MutateDocument("b+x", insert("x"))])
        data = convert.serialize_wavelet_delta(delta)
        applied = convert.build_applied_delta(self.a.signer.sign_delta(data, delta), wrong, 1,
                                              1700000000000)
        before = len(self.successResultOf(self.b.store.deltas(self.name.uri)))
        error = self.assertRefused(self.update_from(A, self.name, [applied.applied_delta_bytes]))
        self.assertIn("does not extend our hash", error.text)
        self.assertLogged("wavelet update", A, error.text)
        self.assertEqual(len(self.successResultOf(self.b.store.deltas(self.name.uri))), before)

    def test_update_that_is_not_base64_is_bad_request(self):
        msg = element('<message type="normal" id="u9"><request xmlns="urn:xmpp:receipts"/>'
                      '<event xmlns="%s"><items><item><wavelet-update xmlns="%s" '
                      'wavelet-name="%s"><applied-delta>***</applied-delta></wavelet-update>'
                      '</item></items></event></message>' % (S.NS_PUBSUB_EVENT, S.NS_WAVE,
                                                             self.name.uri))
        error = self.assertRefused(self.send_raw(A, B, msg))
        self.assertLogged("wavelet update", A, error.text)


class HostUnitTests(SynchronousTestCase):
    """What the host puts in the outbox, without a network."""

    def test_no_remote_participant_means_no_outbox_item(self):
        net = MemoryNetwork(task.Clock())
        a = WaveNode(net, "a.test")
        self.addCleanup(a.stop)
        name = self.successResultOf(a.new_wave(ALICE))
        self.successResultOf(a.say(ALICE, name, "alone"))
        self.assertEqual(self.successResultOf(a.store.outbox_backlog()), {})
        self.assertEqual(a.federation.host.pushed, 0)

    def test_each_remote_domain_gets_one_item_per_delta(self):
        net = MemoryNetwork(task.Clock())
        net.down.update([B, C])
        a = WaveNode(net, "a.test")
        self.addCleanup(a.stop)
        name = self.successResultOf(a.new_wave(ALICE))
        self.successResultOf(a.add(ALICE, name, BOB))
        self.successResultOf(a.add(ALICE, name, CAROL))
        self.successResultOf(a.say(ALICE, name, "to both"))
        self.assertEqual(self.successResultOf(a.store.outbox_backlog()),
                         {"b.test": 3, "c.test": 2})


class RemotePipelineTests(FederationTestCase):
    """
    The host's updates of one wavelet are taken in order, the next while the
    previous one waits for our disk, and none is acknowledged (receipt)
    before it is durable here.
    """

    def receipts(self):
        return [e for e in self.stanzas_between(B, A, "message")
                if any(c.name == "received" for c in e.elements())]

    def test_the_next_update_is_taken_while_the_previous_waits_for_the_disk(self):
        from twisted.internet import defer
        name = self.wave_with_bob()
        self.net.pump()
        receipts_before = len(self.receipts())
        held = []
        real = self.b.store.append_delta

        def slow_append(*args, **kwargs):
            written, durable = real(*args, **kwargs), defer.Deferred()
            held.append((written, durable))
            return durable
        self.b.store.append_delta = slow_append
        said = [self.a.say(ALICE, name, "line %d" % i) for i in range(3)]
        self.net.pump()
        for d in said:
            self.successResultOf(d)        # durable on the host
        # All three were asked of our store at once: each update was taken
        # while the one before it waited for the disk ...
        self.assertEqual(len(held), 3)
        # ... and none is acknowledged before it is durable.
        self.assertEqual(len(self.receipts()), receipts_before)
        self.assertNotEqual(self.b.version(name), self.a.version(name))
        written, durable = held[0]
        written.chainDeferred(durable)
        self.net.pump()
        self.assertEqual(len(self.receipts()), receipts_before + 1)
        for written, durable in held[1:]:
            written.chainDeferred(durable)
        self.net.pump()
        self.assertEqual(len(self.receipts()), receipts_before + 3)
        self.assertEqual(self.b.version(name), self.a.version(name))
        self.assertEqual(self.a.texts(name), self.b.texts(name))
