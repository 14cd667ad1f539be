"""
The wave server core: the submit pipeline (validate, transform, detect
duplicates, apply, hash, sign, store, then answer and tell), containers
loaded from the store, remote wavelets fed with applied deltas, history.
"""

from twisted.internet import defer, task
from twisted.trial import unittest
from zope.interface import implementer

from tests.helpers import insert
from wavebox.model.delta import HashedVersion, WaveletDelta, next_hash
from wavebox.model.errors import InvalidDelta, InvalidOperation, NotAParticipant
from wavebox.model.ids import ParticipantId, WaveletName
from wavebox.model.operations import AddParticipant, MutateDocument, RemoveParticipant
from wavebox.server import errors
from wavebox.server.interfaces import IWaveletListener
from wavebox.server.modelbridge import parse_applied_delta
from wavebox.server.waveserver import WaveServer
from wavebox.store.memory import MemoryStore

ALICE = ParticipantId("alice@a.test")
BOB = ParticipantId("bob@a.test")
CAROL = ParticipantId("carol@b.test")
NAME = WaveletName.of("a.test", "w+abc", "a.test", "conv+root")
OTHER = WaveletName.of("a.test", "w+def", "a.test", "conv+root")
REMOTE = WaveletName.of("b.test", "w+xyz", "b.test", "conv+root")


def write(doc, text, at=0, size=0):
    return MutateDocument(doc, insert(text, at, size))


@implementer(IWaveletListener)
class Recorder:
    def __init__(self):
        self.updates = []

    def wavelet_updated(self, update):
        self.updates.append(update)


class ControlledStore(MemoryStore):
    """A memory store whose appends wait until the test lets them through."""

    def __init__(self):
        MemoryStore.__init__(self)
        self.waiting = []     # (wavelet name, Deferred to fire, real append args)
        self.hold = True

    def append_delta(self, wavelet_name, delta, **kwargs):
        if not self.hold:
            return MemoryStore.append_delta(self, wavelet_name, delta, **kwargs)
        d = defer.Deferred()
        self.waiting.append((wavelet_name, d, delta, kwargs))
        return d

    def release(self, i=0):
        name, d, delta, kwargs = self.waiting.pop(i)
        MemoryStore.append_delta(self, name, delta, **kwargs).chainDeferred(d)

    def fail(self, i=0, exc=None):
        name, d, delta, kwargs = self.waiting.pop(i)
        d.errback(exc or IOError("disk on fire"))


class LateAnswerStore(MemoryStore):
    """A memory store that writes at once but answers each append when the test says."""

    def __init__(self):
        MemoryStore.__init__(self)
        self.answers = []     # (Deferred to fire, the real result)
        self.hold = False

    def append_delta(self, wavelet_name, delta, **kwargs):
        real = MemoryStore.append_delta(self, wavelet_name, delta, **kwargs)
        if not self.hold:
            return real
        d = defer.Deferred()
        self.answers.append((d, real))
        return d

    def answer(self, i=0):
        d, real = self.answers.pop(i)
        real.chainDeferred(d)


class ServerTestCase(unittest.TestCase):

    def setUp(self):
        self.clock = task.Clock()
        self.clock.advance(1000)
        self.store = MemoryStore()
        self.server = self.make_server(self.store)
        self.heard = Recorder()
        self.server.add_listener(self.heard)

    def make_server(self, store, **kwargs):
        return WaveServer(store, ["a.test"], clock=self.clock, **kwargs)

    def submit(self, ops, author=ALICE, version=None, name=NAME, server=None):
        server = server or self.server
        if version is None:
            version = self.successResultOf(server.hashed_version(name))
        return server.submit(name, WaveletDelta(author, version, ops))

    def create(self, name=NAME, server=None):
        """Make the wavelet: alice, and a document 'b+1' holding 'hello'."""
        return self.successResultOf(self.submit(
            [AddParticipant(ALICE), write("b+1", "hello")],
            version=HashedVersion.zero(name), name=name, server=server))

    def stored(self, name=NAME, store=None):
        return self.successResultOf((store or self.store).deltas(name.uri))

    def state(self, name=NAME, server=None):
        return self.successResultOf((server or self.server).wavelet(name))

    def text(self, doc="b+1", name=NAME, server=None):
        return self.state(name, server).documents[doc].text()


class SubmitTests(ServerTestCase):

    def test_first_delta_creates_the_wavelet_and_hashes_the_exact_bytes(self):
        result = self.create()
        self.assertEqual(result.operations_applied, 2)
        [stored] = self.stored()
        expected = next_hash(NAME.uri.encode("utf-8"), stored.applied_delta)
        self.assertEqual(result.hashed_version_after, HashedVersion(2, expected))
        self.assertEqual(stored.resulting_hash, expected)
        self.assertEqual(self.state().hashed_version, result.hashed_version_after)
        self.assertEqual(result.timestamp_ms, 1000 * 1000)

    def test_local_delta_is_signed_with_the_domain_key_over_its_exact_bytes(self):
        from cryptography.hazmat.primitives.serialization import Encoding
        from wavebox import crypto
        from wavebox.model.delta import SHA1_RSA
        from wavebox.model.signer import signer_id
        key, cert = crypto.generate_key_and_certificate("a.test", key_size=1024)
        server = self.make_server(self.store, signers={"a.test": crypto.Signer(key, [cert],
                                                                               "a.test")})
        self.create(server=server)
        [stored] = self.stored()
        signed = parse_applied_delta(stored.applied_delta).signed_delta
        [signature] = signed.signatures
        self.assertEqual(signature.algorithm, SHA1_RSA)
        # The signer id is the hash of the certificate chain (section 5).
        self.assertEqual(bytes(signature.signer_id), signer_id([cert.public_bytes(Encoding.DER)]))
        # SHA1withRSA over the delta bytes exactly as they travel in the applied delta.
        crypto.verify_signature(signed.delta_bytes, signature.signature_bytes, cert)
        self.assertRaises(crypto.InvalidSignatureError, crypto.verify_signature,
                          signed.delta_bytes + b"\0", signature.signature_bytes, cert)

    def test_applied_delta_records_version_count_and_timestamp(self):
        self.create()
        self.clock.advance(5)
        before = self.state().hashed_version
        result = self.successResultOf(self.submit([AddParticipant(BOB)]))
        applied = parse_applied_delta(self.stored()[-1].applied_delta)
        self.assertEqual(applied.applied_at, before)
        self.assertEqual(applied.operations_applied, 1)
        self.assertEqual(applied.application_timestamp, 1005 * 1000)
        self.assertEqual(applied.resulting_version, result.hashed_version_after)
        self.assertEqual(applied.delta.author, ALICE)

    def test_stale_delta_is_transformed_against_the_history(self):
        self.create()
        v = self.state().hashed_version
        self.successResultOf(self.submit([write("b+1", "A", 0, 5)], version=v))
        result = self.successResultOf(self.submit([write("b+1", "Z", 5, 5)], version=v))
        self.assertEqual(result.hashed_version_after.version, v.version + 2)
        self.assertEqual(self.text(), "AhelloZ")

    def test_concurrent_inserts_at_one_place_converge_client_first(self):
        self.create()
        v = self.state().hashed_version
        self.successResultOf(self.submit([write("b+1", "1", 5, 5)], version=v))
        self.successResultOf(self.submit([write("b+1", "2", 5, 5)], author=ALICE, version=v))
        # The later (client) insert goes left of the concurrent one (6.5 tie-break).
        self.assertEqual(self.text(), "hello21")

    def test_wrong_hash_at_current_version_is_refused(self):
        self.create()
        v = self.state().hashed_version
        d = self.submit([AddParticipant(BOB)], version=HashedVersion(v.version, b"x" * 20))
        self.failureResultOf(d, errors.HashMismatch)
        self.assertEqual(len(self.stored()), 1)

    def test_wrong_hash_at_older_version_is_refused(self):
        self.create()
        self.successResultOf(self.submit([AddParticipant(BOB)]))
        d = self.submit([AddParticipant(CAROL)], version=HashedVersion(2, b"y" * 20))
        self.failureResultOf(d, errors.HashMismatch)
        self.assertEqual(len(self.stored()), 2)

    def test_future_version_is_refused(self):
        self.create()
        d = self.submit([AddParticipant(BOB)], version=HashedVersion(7, b"z" * 20))
        self.failureResultOf(d, errors.FutureVersion)

    def test_version_inside_a_delta_is_refused(self):
        self.create()
        self.successResultOf(self.submit([AddParticipant(BOB)]))
        d = self.submit([AddParticipant(CAROL)], version=HashedVersion(1, b"z" * 20))
        self.failureResultOf(d, errors.NotADeltaBoundary)

    def test_non_participant_is_refused_and_nothing_is_stored_or_told(self):
        self.create()
        self.heard.updates[:] = []
        d = self.submit([write("b+1", "!", 5, 5)], author=BOB)
        self.failureResultOf(d, NotAParticipant)
        self.assertEqual(len(self.stored()), 1)
        self.assertEqual(self.heard.updates, [])

    def test_first_delta_must_add_its_author(self):
        d = self.submit([AddParticipant(BOB)], version=HashedVersion.zero(NAME))
        self.failureResultOf(d, NotAParticipant)
        self.assertEqual(self.stored(), [])

    def test_empty_delta_is_refused(self):
        self.create()
        self.failureResultOf(self.submit([]), errors.EmptyDelta)
        self.assertEqual(len(self.stored()), 1)

    def test_delta_that_does_not_fit_is_refused_and_changes_nothing(self):
        self.create()
        self.heard.updates[:] = []
        v = self.state().hashed_version
        d = self.submit([AddParticipant(BOB), write("b+1", "x", 9, 9)])
        self.failureResultOf(d, InvalidOperation)
        self.assertEqual(self.state().hashed_version, v)
        self.assertNotIn(BOB, self.state().participants)
        self.assertEqual(len(self.stored()), 1)
        self.assertEqual(self.heard.updates, [])
        self.successResultOf(self.submit([AddParticipant(BOB)], version=v))

    def test_ill_formed_delta_is_refused_and_nothing_is_stored_or_told(self):
        from wavebox.model.docop import Characters, DocOp, ElementStart, Retain
        from wavebox.model.errors import IllFormedOperation
        self.create()
        self.heard.updates[:] = []
        v = self.state().hashed_version
        # An element that is never closed: ill-formed whatever the document.
        unclosed = DocOp([Retain(5), ElementStart("line", ()), Characters("x")])
        failure = self.failureResultOf(
            self.submit([AddParticipant(BOB), MutateDocument("b+1", unclosed)]),
            IllFormedOperation)
        self.assertIn("elementStart with no matching elementEnd", str(failure.value))
        self.assertEqual(self.state().hashed_version, v)
        self.assertNotIn(BOB, self.state().participants)
        self.assertEqual(len(self.stored()), 1)
        self.assertEqual(self.heard.updates, [])

    def test_duplicate_resubmission_is_idempotent(self):
        self.create()
        v = self.state().hashed_version
        delta = WaveletDelta(ALICE, v, [write("b+1", "A", 0, 5)])
        first = self.successResultOf(self.server.submit(NAME, delta))
        self.successResultOf(self.submit([AddParticipant(BOB)]))
        self.heard.updates[:] = []
        again = self.successResultOf(self.server.submit(NAME, delta))
        self.assertTrue(again.duplicate)
        self.assertEqual((again.operations_applied, again.hashed_version_after,
                          again.timestamp_ms),
                         (first.operations_applied, first.hashed_version_after,
                          first.timestamp_ms))
        self.assertEqual(len(self.stored()), 3)
        self.assertEqual(self.text(), "Ahello")
        self.assertEqual(self.heard.updates, [])

    def test_users_of_other_domains_cannot_submit_here(self):
        d = self.submit([AddParticipant(CAROL)], author=CAROL,
                        version=HashedVersion.zero(NAME))
        self.failureResultOf(d, InvalidDelta)
        self.assertEqual(self.stored(), [])


class DurabilityTests(ServerTestCase):

    def setUp(self):
        ServerTestCase.setUp(self)
        self.store = ControlledStore()
        self.server = self.make_server(self.store)
        self.server.add_listener(self.heard)

    def test_answer_and_listeners_wait_for_the_store(self):
        d = self.submit([AddParticipant(ALICE)], version=HashedVersion.zero(NAME))
        self.assertNoResult(d)
        self.assertEqual(len(self.store.waiting), 1)
        self.assertEqual(self.heard.updates, [])
        self.store.release()
        result = self.successResultOf(d)
        [update] = self.heard.updates
        self.assertEqual(update.resulting_version, result.hashed_version_after)
        self.assertEqual(update.participants_after, frozenset([ALICE]))

    def test_failed_store_write_answers_with_the_failure_and_tells_nobody(self):
        d = self.submit([AddParticipant(ALICE)], version=HashedVersion.zero(NAME))
        self.store.fail()
        self.failureResultOf(d, IOError)
        self.assertEqual(self.heard.updates, [])
        # The in-memory copy was dropped: the wavelet is still at version 0.
        self.store.hold = False
        self.assertEqual(self.successResultOf(self.server.hashed_version(NAME)),
                         HashedVersion.zero(NAME))
        self.create()

    def test_submits_to_one_wavelet_are_written_in_order_without_waiting_for_the_disk(self):
        self.store.hold = False
        self.create()
        self.store.hold = True
        v = self.state().hashed_version
        d1 = self.submit([write("b+1", "1", 0, 5)], version=v)
        d2 = self.submit([write("b+1", "2", 0, 5)], version=v)
        # The second is transformed against the first while the first is
        # still being written: both are asked of the store, in order.
        self.assertEqual([w[2].applied_at_version for w in self.store.waiting],
                         [v.version, v.version + 1])
        self.assertNoResult(d1)
        self.assertNoResult(d2)
        # Readers still see only what is durable.
        self.assertEqual(self.server.current_state(NAME).hashed_version, v)
        self.store.release()
        self.assertEqual(self.successResultOf(d1).hashed_version_after.version, v.version + 1)
        self.assertNoResult(d2)
        self.assertEqual(self.server.current_state(NAME).hashed_version.version, v.version + 1)
        self.store.release()
        self.assertEqual(self.successResultOf(d2).hashed_version_after.version, v.version + 2)
        self.assertEqual(self.text(), "21hello")
        self.assertEqual([u.resulting_version.version for u in self.heard.updates],
                         [v.version, v.version + 1, v.version + 2])

    def test_a_write_after_a_failed_one_is_refused_by_the_store_and_transformed_again(self):
        self.store.hold = False
        self.create()
        heard = len(self.heard.updates)
        self.store.hold = True
        v = self.state().hashed_version
        d1 = self.submit([write("b+1", "1", 0, 5)], version=v)
        d2 = self.submit([write("b+1", "2", 0, 5)], version=v)
        self.store.fail(0)
        self.failureResultOf(d1, IOError)
        # The second does not extend what is stored: the store refuses it, the
        # core reloads and transforms it again, and it lands after all.
        self.assertNoResult(d2)
        self.store.hold = False
        self.store.release(0)
        self.assertEqual(self.successResultOf(d2).hashed_version_after.version, v.version + 1)
        self.assertEqual(self.text(), "2hello")
        self.assertEqual([u.resulting_version.version for u in self.heard.updates[heard:]],
                         [v.version + 1])
        self.assertEqual([d.resulting_version for d in self.stored()], [v.version, v.version + 1])

    def test_no_answer_or_update_overtakes_an_earlier_delta_still_being_written(self):
        store = LateAnswerStore()
        server = self.make_server(store)
        heard = Recorder()
        server.add_listener(heard)
        self.create(server=server)
        v = self.state(server=server).hashed_version
        store.hold = True
        d1 = self.submit([write("b+1", "1", 0, 5)], version=v, server=server)
        d2 = self.submit([write("b+1", "2", 0, 5)], version=v, server=server)
        # The store says the second is durable before it says the first is.
        store.answer(1)
        self.assertNoResult(d1)
        self.assertNoResult(d2)
        self.assertEqual(len(heard.updates), 1)
        self.assertEqual(server.current_state(NAME).hashed_version, v)
        store.answer(0)
        self.assertEqual([self.successResultOf(d).hashed_version_after.version
                          for d in (d1, d2)], [v.version + 1, v.version + 2])
        self.assertEqual([u.resulting_version.version for u in heard.updates[1:]],
                         [v.version + 1, v.version + 2])

    def test_different_wavelets_proceed_independently(self):
        d1 = self.submit([AddParticipant(ALICE)], version=HashedVersion.zero(NAME))
        d2 = self.submit([AddParticipant(ALICE)], version=HashedVersion.zero(OTHER), name=OTHER)
        self.assertEqual(len(self.store.waiting), 2)
        self.store.release(1)
        self.successResultOf(d2)
        self.assertNoResult(d1)
        self.store.release()
        self.successResultOf(d1)


class RestartTests(ServerTestCase):

    def fill(self, n):
        self.create()
        for i in range(n):
            size = len(self.text())
            self.successResultOf(self.submit([write("b+1", str(i % 10), size, size)]))

    def restarted(self):
        return self.make_server(self.store, snapshot_interval=3)

    def test_restart_reopens_the_same_content_and_hashed_version(self):
        self.server.snapshot_interval = 3
        self.fill(7)
        before = self.state()
        again = self.restarted()
        after = self.state(server=again)
        self.assertEqual(after.hashed_version, before.hashed_version)
        self.assertEqual(after.participants, before.participants)
        self.assertEqual(after.documents["b+1"].to_xml(), before.documents["b+1"].to_xml())
        self.assertIsNotNone(self.successResultOf(self.store.latest_snapshot(NAME.uri)))

    def test_reopening_replays_only_the_deltas_after_the_latest_snapshot(self):
        self.server.snapshot_interval = 3
        self.fill(7)
        before = self.state()
        every = self.stored()
        snap_version, _ = self.successResultOf(self.store.latest_snapshot(NAME.uri))
        self.assertLess(snap_version, before.hashed_version.version)
        asked = []
        real = self.store.deltas

        def deltas(uri, start_version=0, *args, **kwargs):
            asked.append((uri, start_version))
            return real(uri, start_version, *args, **kwargs)
        self.patch(self.store, "deltas", deltas)
        after = self.state(server=self.restarted())
        # One read, from the snapshot on: the deltas before it are not replayed.
        self.assertEqual(asked, [(NAME.uri, snap_version)])
        tail = self.successResultOf(real(NAME.uri, snap_version))
        self.assertLess(len(tail), len(every))
        self.assertEqual(after.hashed_version, before.hashed_version)
        self.assertEqual(after.documents["b+1"].to_xml(), before.documents["b+1"].to_xml())

    def test_stale_delta_before_the_snapshot_is_transformed_after_restart(self):
        self.server.snapshot_interval = 3
        self.create()
        old = self.state().hashed_version
        for i in range(5):
            size = len(self.text())
            self.successResultOf(self.submit([write("b+1", "x", size, size)]))
        snap_version, _ = self.successResultOf(self.store.latest_snapshot(NAME.uri))
        self.assertGreater(snap_version, old.version)
        again = self.restarted()
        self.successResultOf(self.submit([write("b+1", "A", 0, 5)], version=old, server=again))
        self.assertEqual(self.text(server=again), "Ahelloxxxxx")

    def test_duplicate_from_before_the_restart_is_still_recognised(self):
        self.create()
        v = self.state().hashed_version
        delta = WaveletDelta(ALICE, v, [write("b+1", "A", 0, 5)])
        first = self.successResultOf(self.server.submit(NAME, delta))
        again = self.successResultOf(self.restarted().submit(NAME, delta))
        self.assertTrue(again.duplicate)
        self.assertEqual(again.hashed_version_after, first.hashed_version_after)

    def test_tampered_history_marks_the_wavelet_corrupted(self):
        self.fill(2)
        w = self.store._wavelets[NAME.uri]
        bad = w.deltas[1]
        w.deltas[1] = type(bad)(bad.applied_at_version, bad.resulting_version, b"\0" * 20,
                                bad.applied_delta, bad.author, bad.timestamp_ms)
        again = self.make_server(self.store)
        self.failureResultOf(again.wavelet(NAME), errors.WaveletCorrupted)
        self.failureResultOf(again.wavelet(NAME), errors.WaveletCorrupted)


class SharedStoreTests(ServerTestCase):
    """Two processes on one database: the store, not a lock here, picks the writer."""

    def test_losing_a_race_to_the_store_reloads_and_transforms_again(self):
        self.create()
        other = self.make_server(self.store)
        v = self.state().hashed_version
        self.successResultOf(other.submit(NAME, WaveletDelta(ALICE, v, [write("b+1", "A", 0, 5)])))
        # This server still believes the wavelet is at v; its write conflicts.
        result = self.successResultOf(self.submit([write("b+1", "Z", 5, 5)], version=v))
        self.assertEqual(result.hashed_version_after.version, v.version + 2)
        self.assertEqual(self.text(), "AhelloZ")
        self.assertEqual(len(self.stored()), 3)
        self.assertEqual(self.state(server=self.make_server(self.store)).hashed_version,
                         result.hashed_version_after)
        # Listeners here heard the other server's delta before this one's.
        self.assertEqual([(u.applied.applied_at.version, u.author) for u in self.heard.updates],
                         [(0, ALICE), (v.version, ALICE), (v.version + 1, ALICE)])
        self.assertEqual(self.heard.updates[1].applied.applied_delta_bytes,
                         self.stored()[1].applied_delta)

    def test_a_delta_stored_elsewhere_is_caught_up_and_told_when_the_store_says_so(self):
        self.create()
        other = self.make_server(self.store)
        v = self.state().hashed_version
        done = self.successResultOf(
            other.submit(NAME, WaveletDelta(ALICE, v, [write("b+1", "A", 0, 5)])))
        self.assertEqual(self.text(), "hello")      # nobody said anything yet
        self.server.changed_elsewhere(NAME.uri, done.hashed_version_after.version)
        self.assertEqual(self.text(), "Ahello")
        self.assertEqual(self.state().hashed_version, done.hashed_version_after)
        self.assertEqual(self.heard.updates[-1].resulting_version, done.hashed_version_after)
        # Told again (our own delta, or an old notice): nothing more happens.
        self.server.changed_elsewhere(NAME.uri, done.hashed_version_after.version)
        self.server.changed_elsewhere(OTHER.uri, 7)
        self.assertEqual(len(self.heard.updates), 2)

    def test_a_wave_made_elsewhere_reaches_a_participant_listening_here(self):
        bob = Recorder()
        self.server.subscribe_participant(BOB, bob)
        other = self.make_server(self.store)
        self.create(server=other)
        v = self.state(server=other).hashed_version
        done = self.successResultOf(other.submit(NAME, WaveletDelta(ALICE, v,
                                                                    [AddParticipant(BOB)])))
        self.server.changed_elsewhere(NAME.uri, done.hashed_version_after.version)
        [update] = bob.updates
        self.assertEqual(update.added, frozenset([BOB]))
        self.assertEqual(update.resulting_version, done.hashed_version_after)
        self.assertEqual(self.state().hashed_version, done.hashed_version_after)

    def test_a_wavelet_not_loaded_is_not_read_when_the_store_says_it_changed(self):
        reads = []
        self.store.deltas = lambda *a, **k: reads.append(a) or defer.succeed([])
        self.server.changed_elsewhere(NAME.uri, 3)
        self.server.changed_elsewhere(None, None)
        self.assertEqual(reads, [])

    def test_the_server_listens_to_its_stores_changes(self):
        self.assertIn(self.server.changed_elsewhere, self.store.change_observers)
        other = MemoryStore()
        self.server.store = other
        self.assertNotIn(self.server.changed_elsewhere, self.store.change_observers)
        self.assertEqual(other.change_observers, [self.server.changed_elsewhere])


class ListenerTests(ServerTestCase):

    def test_wavelet_listener_hears_only_its_wavelet(self):
        mine = Recorder()
        self.server.subscribe(NAME, mine)
        self.create()
        self.create(OTHER)
        self.assertEqual([u.wavelet_name for u in mine.updates], [NAME])
        self.server.unsubscribe(NAME, mine)
        self.successResultOf(self.submit([AddParticipant(BOB)]))
        self.assertEqual(len(mine.updates), 1)

    def test_participant_listener_hears_of_being_added_and_removed(self):
        bob = Recorder()
        self.server.subscribe_participant(BOB, bob)
        self.create()
        self.assertEqual(bob.updates, [])
        self.successResultOf(self.submit([AddParticipant(BOB)]))
        self.successResultOf(self.submit([RemoveParticipant(BOB)]))
        self.assertEqual([u.added for u in bob.updates], [frozenset([BOB]), frozenset()])
        self.assertEqual([u.removed for u in bob.updates], [frozenset(), frozenset([BOB])])
        self.successResultOf(self.submit([write("b+1", "x", 5, 5)]))
        self.assertEqual(len(bob.updates), 2)

    def test_failing_listener_does_not_stop_the_others(self):
        class Broken:
            def wavelet_updated(self, update):
                raise RuntimeError("boom")
        self.server.subscribe(NAME, Broken())
        self.create()
        self.assertEqual(len(self.heard.updates), 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_update_names_the_remote_domains_to_push_to(self):
        self.create()
        self.successResultOf(self.submit([AddParticipant(CAROL)]))
        self.assertEqual(self.heard.updates[-1].remote_domains(["a.test"]), ["b.test"])
        self.successResultOf(self.submit([RemoveParticipant(CAROL)]))
        # The delta that removes carol still goes to her domain (7(a)4).
        self.assertEqual(self.heard.updates[-1].remote_domains(["a.test"]), ["b.test"])
        self.assertTrue(self.heard.updates[-1].hosted)

    def test_outbox_entries_are_stored_with_the_delta(self):
        class Source:
            def outbox_for(self, update):
                return [(d, update.applied_delta_bytes)
                        for d in update.remote_domains(["a.test"])]
        self.server.set_outbox_source(Source())
        self.create()
        self.successResultOf(self.submit([AddParticipant(CAROL)]))
        [item] = self.successResultOf(self.store.outbox_pending("b.test"))
        self.assertEqual(item.payload, self.stored()[-1].applied_delta)
        self.assertEqual(self.heard.updates[-1].outbox_ids, (item.id,))


class FederationSeamTests(ServerTestCase):
    """The calls the federation layer makes into the core, with a second server as host."""

    def setUp(self):
        ServerTestCase.setUp(self)
        self.host_store = MemoryStore()
        self.host = WaveServer(self.host_store, ["b.test"], clock=self.clock)
        self.pushed = Recorder()
        self.host.add_listener(self.pushed)
        carol = ParticipantId("carol@b.test")
        self.successResultOf(self.host.submit(REMOTE, WaveletDelta(
            carol, HashedVersion.zero(REMOTE), [AddParticipant(carol), write("b+1", "hi")])))
        self.successResultOf(self.submit([AddParticipant(ALICE)], author=carol, name=REMOTE,
                                         server=self.host))
        v = self.state(REMOTE, self.host).hashed_version
        # Two concurrent edits, the second transformed on the host.
        self.successResultOf(self.submit([write("b+1", "A", 0, 2)], author=carol,
                                         name=REMOTE, server=self.host, version=v))
        self.successResultOf(self.submit([write("b+1", "Z", 2, 2)], author=carol,
                                         name=REMOTE, server=self.host, version=v))
        self.applied = [u.applied_delta_bytes for u in self.pushed.updates]

    def test_remote_deltas_in_order_rebuild_the_hosts_wavelet(self):
        result = self.successResultOf(self.server.apply_remote_deltas(REMOTE, self.applied))
        host_state = self.state(REMOTE, self.host)
        self.assertEqual(result.current, host_state.hashed_version)
        self.assertIsNone(result.missing)
        self.assertEqual(self.text(name=REMOTE), "AhiZ")
        self.assertEqual([s.applied_delta for s in self.stored(REMOTE)], self.applied)
        self.assertFalse(self.heard.updates[-1].hosted)

    def test_remote_deltas_after_a_gap_wait_for_the_history(self):
        result = self.successResultOf(self.server.apply_remote_deltas(REMOTE, self.applied[2:]))
        self.assertEqual(result.current, HashedVersion.zero(REMOTE))
        self.assertEqual(result.missing, (HashedVersion.zero(REMOTE),
                                          parse_applied_delta(self.applied[2]).applied_at.version))
        self.assertEqual(self.stored(REMOTE), [])
        result = self.successResultOf(self.server.apply_remote_deltas(REMOTE, self.applied[:2]))
        self.assertIsNone(result.missing)
        self.assertEqual(len(result.updates), 4)
        self.assertEqual(self.text(name=REMOTE), "AhiZ")

    def test_old_remote_deltas_are_dropped_as_duplicates(self):
        self.successResultOf(self.server.apply_remote_deltas(REMOTE, self.applied))
        result = self.successResultOf(self.server.apply_remote_deltas(REMOTE, self.applied[1:3]))
        self.assertEqual(result.updates, ())
        self.assertEqual(len(self.stored(REMOTE)), 4)

    def test_remote_delta_that_breaks_our_hash_chain_corrupts_the_copy(self):
        self.successResultOf(self.server.apply_remote_deltas(REMOTE, self.applied[:1]))
        forged = WaveServer(MemoryStore(), ["b.test"], clock=self.clock)
        carol = ParticipantId("carol@b.test")
        recorder = Recorder()
        forged.add_listener(recorder)
        self.successResultOf(forged.submit(REMOTE, WaveletDelta(
            carol, HashedVersion.zero(REMOTE), [AddParticipant(carol), write("b+1", "ho")])))
        self.successResultOf(forged.submit(REMOTE, WaveletDelta(
            carol, self.state(REMOTE, forged).hashed_version, [AddParticipant(ALICE)])))
        self.failureResultOf(self.server.apply_remote_deltas(
            REMOTE, [recorder.updates[1].applied_delta_bytes]), errors.WaveletCorrupted)

    def test_updates_to_a_hosted_wavelet_are_refused(self):
        self.create()
        self.failureResultOf(self.server.apply_remote_deltas(NAME, []), errors.HostedHere)

    def test_history_gives_the_exact_bytes_between_boundaries(self):
        hv = [parse_applied_delta(a).resulting_version for a in self.applied]
        got = self.successResultOf(self.host.history(REMOTE, HashedVersion.zero(REMOTE), hv[2]))
        self.assertEqual(got, self.applied[:3])
        got = self.successResultOf(self.host.history(REMOTE, hv[0], hv[3]))
        self.assertEqual(got, self.applied[1:])

    def test_history_refuses_unknown_boundaries_and_hashes(self):
        hv = [parse_applied_delta(a).resulting_version for a in self.applied]
        self.failureResultOf(self.host.history(REMOTE, HashedVersion(1, b"x"), hv[2]),
                             errors.NotADeltaBoundary)
        self.failureResultOf(self.host.history(REMOTE, HashedVersion(hv[0].version, b"x" * 20),
                                               hv[2]), errors.HashMismatch)
        self.failureResultOf(self.host.history(REMOTE, HashedVersion.zero(REMOTE),
                                               HashedVersion(99, b"")), errors.FutureVersion)
        self.failureResultOf(self.server.history(REMOTE, HashedVersion.zero(REMOTE), hv[0]),
                             errors.NotHostedHere)

    def test_remote_submit_goes_through_the_host_pipeline(self):
        from wavebox.server.modelbridge import serialize_delta, sign, signed_delta_bytes
        self.successResultOf(self.server.apply_remote_deltas(REMOTE, self.applied))
        v = self.state(REMOTE).hashed_version
        delta = WaveletDelta(ALICE, v, [write("b+1", "!", 0, 4)])
        data = signed_delta_bytes(sign(None, delta, serialize_delta(delta)))
        result = self.successResultOf(self.host.submit_signed(REMOTE, data, "a.test"))
        self.assertEqual(result.hashed_version_after.version, v.version + 1)
        self.assertEqual(self.text(name=REMOTE, server=self.host), "!AhiZ")

    def test_remote_servers_may_not_create_wavelets_or_act_for_others(self):
        from wavebox.server.modelbridge import serialize_delta, sign, signed_delta_bytes
        name = WaveletName.of("b.test", "w+new", "b.test", "conv+root")
        delta = WaveletDelta(ALICE, HashedVersion.zero(name), [AddParticipant(ALICE)])
        data = signed_delta_bytes(sign(None, delta, serialize_delta(delta)))
        self.failureResultOf(self.host.submit_signed(name, data, "a.test"), InvalidDelta)
        v = self.state(REMOTE, self.host).hashed_version
        delta = WaveletDelta(ALICE, v, [write("b+1", "!", 0, 4)])
        data = signed_delta_bytes(sign(None, delta, serialize_delta(delta)))
        self.failureResultOf(self.host.submit_signed(REMOTE, data, "c.test"), InvalidDelta)

    def test_local_user_on_a_remote_wavelet_needs_federation(self):
        self.successResultOf(self.server.apply_remote_deltas(REMOTE, self.applied))
        d = self.submit([write("b+1", "x", 0, 4)], name=REMOTE)
        self.failureResultOf(d, errors.NoFederation)

    def test_local_user_on_a_remote_wavelet_goes_to_the_remote_submitter(self):
        from wavebox.server.interfaces import SubmitResult
        from wavebox.server.modelbridge import parse_signed_delta
        sent = []

        class Submitter:
            def submit(self, name, signed):
                sent.append((name, signed))
                return defer.succeed(SubmitResult(1, HashedVersion(9, b"h" * 20), 5))
        self.server.remote_submitter = Submitter()
        self.successResultOf(self.server.apply_remote_deltas(REMOTE, self.applied))
        result = self.successResultOf(self.submit([write("b+1", "x", 0, 4)], name=REMOTE))
        self.assertEqual(result.hashed_version_after.version, 9)
        [(name, signed)] = sent
        self.assertEqual(name, REMOTE)
        self.assertEqual(parse_signed_delta(signed).delta.author, ALICE)
        # Our copy changes only when the host's update comes back (7(b)6).
        self.assertEqual(len(self.stored(REMOTE)), 4)


class ControlledPool:
    """A signing pool whose jobs finish when the test says, in any order."""

    def __init__(self):
        self.jobs = []        # (Deferred, f, args)

    def run(self, f, *args):
        d = defer.Deferred()
        self.jobs.append((d, f, args))
        return d

    def finish(self, i):
        d, f, args = self.jobs[i]
        self.jobs[i] = None
        d.callback(f(*args))


class SigningPoolTests(ServerTestCase):
    """Deltas signed in threads keep their wavelet's order and wait for the store."""

    def setUp(self):
        from tests.federation_fixtures import domain_signer
        ServerTestCase.setUp(self)
        self.signer = domain_signer("a.test")
        self.pool = ControlledPool()
        self.store = ControlledStore()
        self.store.hold = False
        self.server = self.make_server(self.store, signers={"a.test": self.signer},
                                       signing_pool=self.pool)
        self.server.add_listener(self.heard)

    def test_a_delta_signed_first_still_waits_for_the_one_that_came_before_it(self):
        d0 = self.submit([AddParticipant(ALICE), write("b+1", "hello")],
                         version=HashedVersion.zero(NAME))
        self.pool.finish(0)
        v = self.successResultOf(d0).hashed_version_after
        self.store.hold = True
        d1 = self.submit([write("b+1", "1", 0, 5)], version=v)
        d2 = self.submit([write("b+1", "2", 0, 5)], version=v)
        self.pool.finish(2)            # the second is signed first...
        self.assertEqual(self.store.waiting, [])
        self.pool.finish(1)            # ...but written after the first
        self.assertEqual([w[2].applied_at_version for w in self.store.waiting],
                         [v.version, v.version + 1])
        # Signed and asked of the store, yet nobody hears before it is durable.
        self.assertNoResult(d1)
        self.assertNoResult(d2)
        self.assertEqual(len(self.heard.updates), 1)
        self.store.release()
        self.assertEqual(self.successResultOf(d1).hashed_version_after.version, v.version + 1)
        self.assertNoResult(d2)
        self.store.release()
        self.assertEqual(self.successResultOf(d2).hashed_version_after.version, v.version + 2)
        applied = [parse_applied_delta(s.applied_delta) for s in self.stored()]
        # Each applied delta carries its own delta's signature, made in the pool.
        for a, text in zip(applied[1:], "12"):
            [signature] = a.signed_delta.signatures
            self.assertEqual(signature.signer_id, self.signer.signer_id)
            self.assertIn(text.encode(), a.signed_delta.delta_bytes)
        self.assertEqual(self.text(), "21hello")

    def test_remote_submits_leave_in_the_order_they_came_whatever_is_signed_first(self):
        from wavebox.server.interfaces import SubmitResult
        from wavebox.server.modelbridge import parse_signed_delta
        sent = []

        class Submitter:
            def submit(self, name, signed):
                sent.append(parse_signed_delta(signed).delta.operations[0])
                return defer.succeed(SubmitResult(1, HashedVersion(9, b"h" * 20), 5))
        self.server.remote_submitter = Submitter()
        host = WaveServer(MemoryStore(), ["b.test"], clock=self.clock)
        carol = ParticipantId("carol@b.test")
        pushed = Recorder()
        host.add_listener(pushed)
        self.successResultOf(host.submit(REMOTE, WaveletDelta(
            carol, HashedVersion.zero(REMOTE), [AddParticipant(carol), AddParticipant(ALICE),
                                                write("b+1", "hi")])))
        self.successResultOf(self.server.apply_remote_deltas(
            REMOTE, [u.applied_delta_bytes for u in pushed.updates]))
        ops = [write("b+1", t, 0, 2) for t in "xyz"]
        ds = [self.submit([op], name=REMOTE) for op in ops]
        for i in (2, 0, 1):
            self.pool.finish(i)
        self.assertEqual(sent, ops)
        for d in ds:
            self.assertEqual(self.successResultOf(d).hashed_version_after.version, 9)
        self.assertEqual(self.server._remote_order, {})


class RealSigningPoolTests(unittest.TestCase):
    """The pool twistd runs: the work is done in its threads, the answers come in the reactor's."""

    @defer.inlineCallbacks
    def test_signs_in_its_threads_and_answers_in_the_reactor_thread(self):
        import threading
        from tests.federation_fixtures import domain_signer
        from wavebox.crypto import verify_signature
        from wavebox.server.waveserver import SigningPool
        pool = SigningPool(2)
        pool.start()
        self.addCleanup(pool.stop)
        signer = domain_signer("a.test")
        where = []

        def sign(data):
            where.append(threading.current_thread().name)
            return signer.sign(data)
        data = [b"delta %d" % i for i in range(20)]
        results = yield defer.gatherResults([pool.run(sign, d) for d in data])
        self.assertTrue(all(name.startswith("wavebox-sign-") for name in where))
        self.assertEqual(threading.current_thread(), threading.main_thread())
        for d, signature in zip(data, results):
            verify_signature(d, signature.signature_bytes, signer.signer_info.certificates[0])
        failure = yield self.assertFailure(pool.run(lambda: 1 / 0), ZeroDivisionError)
        self.assertIsInstance(failure, ZeroDivisionError)


class SnapshotCostTests(unittest.TestCase):
    """Keeping snapshots costs, per delta, a constant times the delta, however long the wavelet."""

    def setUp(self):
        from wavebox.model import conversation
        from wavebox.model.ids import IdGenerator
        self.conversation = conversation
        self.clock = task.Clock()
        self.store = MemoryStore()
        self.written = 0
        real = self.store.put_snapshot

        def put_snapshot(uri, version, blob):
            self.written += len(blob)
            return real(uri, version, blob)
        self.store.put_snapshot = put_snapshot
        self.server = WaveServer(self.store, ["a.test"], clock=self.clock)
        self.ids = IdGenerator("a.test", seed="snap")
        from wavebox.server import container
        self.encoders = []
        real_encoder = container.snapshot_encoder

        def snapshot_encoder():
            self.encoders.append(real_encoder())
            return self.encoders[-1]
        self.patch(container, "snapshot_encoder", snapshot_encoder)

    def encoded(self):
        return sum(e.encoded_bytes for e in self.encoders)

    def new_wave(self, blips):
        """A wave whose first delta already holds ``blips`` blips (a quick way to a long wave)."""
        name = self.ids.new_conversation_root()
        ops = self.conversation.create_wave_ops(ALICE)
        from wavebox.model import docop
        docop_builder = docop.DocOpBuilder().element_start("conversation")
        for i in range(blips):
            blip = self.ids.new_blip_id()
            docop_builder.element_start("blip", (("id", blip),)).element_end()
            ops.append(MutateDocument(blip, self.conversation.blip_content_op("old %d" % i)))
        ops[1] = MutateDocument("conversation", docop_builder.element_end().build())
        self.successResultOf(self.server.submit(name, WaveletDelta(
            ALICE, HashedVersion.zero(name), ops)))
        return name

    def per_delta(self, name, lines):
        """(JSON bytes encoded, snapshot bytes written, applied-delta bytes) per typed line."""
        encoded = self.encoded()
        written, delta_bytes = self.written, 0
        for i in range(lines):
            state = self.server.current_state(name)
            ops = self.conversation.append_blip_ops(state, self.ids.new_blip_id(), "line %d" % i)
            self.successResultOf(self.server.submit(name, WaveletDelta(
                ALICE, state.hashed_version, ops)))
            delta_bytes += len(self.successResultOf(self.store.deltas(
                name.uri, self.server.current_state(name).version - 2))[-1].applied_delta)
        encoded = self.encoded() - encoded
        return encoded / lines, (self.written - written) / lines, delta_bytes / lines

    def test_snapshot_work_per_line_is_bounded_by_the_line_at_version_100_as_at_10000(self):
        figures = {}
        # (blips in the first delta, lines to settle, lines measured): the
        # short wave is measured from version ~100 over a few snapshots, the
        # long one up to version ~10,000 over more than one snapshot cycle.
        for label, blips, settle, lines in (("v100", 0, 50, 300), ("v10000", 3000, 500, 3000)):
            name = self.new_wave(blips)
            self.per_delta(name, settle)
            figures[label] = self.per_delta(name, lines)
            figures[label + " ends at"] = self.server.current_state(name).version

        for label in ("v100", "v10000"):
            encoded, written, delta_bytes = figures[label]
            # Each snapshot encodes what changed and is written once the
            # deltas since add up to a quarter of it: per line, a few times
            # the line's own bytes (re-encoding every document every 100
            # deltas cost ~10 KB per line at version 10,000).
            self.assertLess(encoded, 2.5 * delta_bytes, figures)
            self.assertLess(written, 6 * delta_bytes, figures)
            self.assertGreater(written, 0, figures)
        # And opening the long wave replays deltas worth at most a quarter of
        # its latest snapshot.
        version, blob = self.successResultOf(self.store.latest_snapshot(name.uri))
        tail = self.successResultOf(self.store.deltas(name.uri, version))
        self.assertLess(sum(len(d.applied_delta) for d in tail), 0.25 * len(blob) + 1024)
        self.assertGreater(len(tail), 0)


class EvictionTests(ServerTestCase):
    """Idle containers are dropped beyond a cap and after an idle time, and reload the same."""

    NAMES = [WaveletName.of("a.test", "w+e%d" % i, "a.test", "conv+root") for i in range(4)]

    def fill(self, server, name, lines=5):
        self.create(name=name, server=server)
        for i in range(lines):
            size = len(self.text(name=name, server=server))
            self.successResultOf(self.submit([write("b+1", str(i), size, size)], name=name,
                                             server=server))

    def test_beyond_the_cap_the_least_recently_used_is_dropped_and_reloads_the_same(self):
        server = self.make_server(self.store, max_loaded=2, snapshot_interval=3)
        listener = Recorder()
        server.subscribe(self.NAMES[0], listener)
        self.fill(server, self.NAMES[0])
        before = self.state(self.NAMES[0], server)
        self.fill(server, self.NAMES[1])
        self.fill(server, self.NAMES[2])
        self.assertNotIn(self.NAMES[0], server._containers)
        self.assertLessEqual(len(server._containers), 2)
        self.assertIsNone(server.current_state(self.NAMES[0]))
        after = self.state(self.NAMES[0], server)
        self.assertIsNot(after, before)
        self.assertEqual(after, before)
        self.assertEqual(after.hashed_version, before.hashed_version)
        # It goes on from there, and its listener still hears of it.
        heard = len(listener.updates)
        self.successResultOf(self.submit([write("b+1", "!", 0, 10)], name=self.NAMES[0],
                                         server=server))
        self.assertEqual(len(listener.updates), heard + 1)
        self.assertEqual(self.text(name=self.NAMES[0], server=server), "!hello01234")

    def test_a_wavelet_unused_for_the_idle_time_is_dropped_at_the_next_use(self):
        server = self.make_server(self.store, idle_time=60)
        self.fill(server, self.NAMES[0], lines=1)
        self.clock.advance(59)
        self.fill(server, self.NAMES[1], lines=1)
        self.assertIn(self.NAMES[0], server._containers)
        self.clock.advance(2)
        self.state(self.NAMES[1], server)
        self.assertNotIn(self.NAMES[0], server._containers)
        self.assertIn(self.NAMES[1], server._containers)
        self.assertEqual(self.text(name=self.NAMES[0], server=server), "hello0")

    def test_a_wavelet_being_written_is_not_dropped(self):
        store = ControlledStore()
        store.hold = False
        server = self.make_server(store, max_loaded=1)
        self.fill(server, self.NAMES[0], lines=0)
        store.hold = True
        v = self.state(self.NAMES[0], server).hashed_version
        d = self.submit([write("b+1", "x", 0, 5)], version=v, name=self.NAMES[0], server=server)
        store.hold = False
        self.fill(server, self.NAMES[1], lines=0)
        self.assertIn(self.NAMES[0], server._containers)
        store.release()
        self.successResultOf(d)
        self.state(self.NAMES[1], server)
        self.assertNotIn(self.NAMES[0], server._containers)
        self.assertEqual(self.text(name=self.NAMES[0], server=server), "xhello")
