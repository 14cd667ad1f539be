"""Wavelet state: authorship, all-or-nothing deltas, snapshots."""

from twisted.trial.unittest import SynchronousTestCase

from wavebox.model.delta import HashedVersion, TransformedDelta
from wavebox.model.docop import DocOpBuilder
from wavebox.model.errors import (
    InvalidDelta, InvalidHashedVersion, InvalidOperation, InvalidSnapshot, NotAParticipant,
    OperationMismatch)
from wavebox.model.ids import ParticipantId, WaveletName
from wavebox.model.operations import AddParticipant, MutateDocument, NoOp, RemoveParticipant
from wavebox.model.wavelet import WaveletState

NAME = WaveletName.of("a.test", "w+abc", "a.test", "conv+root")
ALICE = ParticipantId("alice@a.test")
BOB = ParticipantId("bob@b.test")
CAROL = ParticipantId("carol@a.test")


def insert(text):
    return DocOpBuilder().characters(text).build()


class Wavelet:
    """A wavelet and the next delta's hashed version bookkeeping."""

    def __init__(self):
        self.state = WaveletState(NAME)
        self.time = 1000

    def delta(self, author, ops):
        start = self.state.hashed_version
        end = HashedVersion(start.version + len(ops), b"%020d" % (start.version + len(ops)))
        self.time += 1
        return TransformedDelta(author, start, end, ops, self.time)

    def apply(self, author, ops):
        self.state.apply_delta(self.delta(author, ops))


def snapshot_of(state):
    return (state.version, state.hashed_version, list(state.participants), dict(state.documents),
            dict(state.contributors), state.creator,
            state.last_modified_time)


class CreationTests(SynchronousTestCase):

    def test_new_wavelet_is_at_version_zero_with_uri_hash(self):
        state = WaveletState(NAME)
        self.assertEqual(state.hashed_version, HashedVersion(0, NAME.uri.encode()))
        self.assertFalse(state.exists)
        self.assertEqual(state.document("b+1").size, 0)

    def test_first_delta_creates_wavelet(self):
        w = Wavelet()
        w.apply(ALICE, [AddParticipant(ALICE), MutateDocument("conversation", insert("x"))])
        s = w.state
        self.assertTrue(s.exists)
        self.assertEqual(s.version, 2)
        self.assertEqual(s.participants, [ALICE])
        self.assertEqual((s.creator, s.creation_time, s.last_modified_time), (ALICE, 1001, 1001))
        self.assertEqual(dict(s.contributors), {"conversation": (ALICE,)})

    def test_first_delta_must_add_its_author(self):
        w = Wavelet()
        e = self.assertRaises(NotAParticipant, w.apply, ALICE, [AddParticipant(BOB)])
        self.assertIn("must add its author", str(e))
        self.assertEqual(w.state.version, 0)
        self.assertIsNone(w.state.creator)


class AuthorshipTests(SynchronousTestCase):

    def setUp(self):
        self.w = Wavelet()
        self.w.apply(ALICE, [AddParticipant(ALICE)])

    def test_non_participant_author_is_refused(self):
        e = self.assertRaises(NotAParticipant, self.w.apply, BOB,
                              [MutateDocument("b+1", insert("hi"))])
        self.assertIn("bob@b.test is not a participant", str(e))

    def test_author_may_add_themself(self):
        self.w.apply(BOB, [AddParticipant(BOB), MutateDocument("b+1", insert("hi"))])
        self.assertEqual(self.w.state.participants, [ALICE, BOB])
        self.assertEqual(self.w.state.contributors["b+1"], (BOB,))

    def test_participant_may_remove_themself(self):
        self.w.apply(ALICE, [AddParticipant(BOB), RemoveParticipant(ALICE)])
        self.assertEqual(self.w.state.participants, [BOB])
        self.assertEqual(self.w.state.creator, ALICE)

    def test_last_modified_follows_deltas_creator_stays(self):
        self.w.apply(ALICE, [NoOp()])
        self.assertEqual((self.w.state.creation_time, self.w.state.last_modified_time),
                         (1001, 1002))


class AllOrNothingTests(SynchronousTestCase):

    def setUp(self):
        self.w = Wavelet()
        self.w.apply(ALICE, [AddParticipant(ALICE), MutateDocument("b+1", insert("hello"))])
        self.before = snapshot_of(self.w.state)

    def assertUnchanged(self):
        self.assertEqual(snapshot_of(self.w.state), self.before)

    def test_failing_participant_op_after_document_op_leaves_state_unchanged(self):
        ops = [MutateDocument("b+1", DocOpBuilder().retain(5).characters("!").build()),
               AddParticipant(BOB), MutateDocument("b+2", insert("new")),
               AddParticipant(ALICE)]
        e = self.assertRaises(InvalidOperation, self.w.apply, ALICE, ops)
        self.assertIn("operation 3 of the delta", str(e))
        self.assertIn("already a participant", str(e))
        self.assertUnchanged()
        self.assertEqual(self.w.state.document("b+1").text(), "hello")
        self.assertNotIn("b+2", self.w.state.documents)

    def test_failing_document_op_leaves_state_unchanged(self):
        ops = [AddParticipant(BOB), MutateDocument("b+1", DocOpBuilder().retain(9).build())]
        e = self.assertRaises(OperationMismatch, self.w.apply, ALICE, ops)
        self.assertIn("document b+1", str(e))
        self.assertUnchanged()

    def test_delta_at_wrong_version_is_refused(self):
        delta = TransformedDelta(ALICE, HashedVersion(1, b"x"), HashedVersion(2, b"y"), [NoOp()], 5)
        self.assertRaises(InvalidHashedVersion, self.w.state.apply_delta, delta)
        self.assertUnchanged()

    def test_delta_with_wrong_hash_is_refused(self):
        current = self.w.state.hashed_version
        delta = TransformedDelta(ALICE, HashedVersion(current.version, b"other"),
                                 HashedVersion(current.version + 1, b"y"), [NoOp()], 5)
        e = self.assertRaises(InvalidHashedVersion, self.w.state.apply_delta, delta)
        self.assertIn("hash differs", str(e))

    def test_empty_delta_is_refused(self):
        self.assertRaises(InvalidDelta, self.w.apply, ALICE, [])
        self.assertUnchanged()

    def test_check_delta_reports_without_changing(self):
        self.w.state.check_delta(ALICE, [AddParticipant(BOB)])
        self.assertRaises(InvalidOperation, self.w.state.check_delta, ALICE, [AddParticipant(ALICE)])
        self.assertUnchanged()

    def test_copy_is_independent(self):
        copy = self.w.state.copy()
        self.w.apply(ALICE, [AddParticipant(BOB)])
        self.assertEqual(snapshot_of(copy), self.before)
        self.assertEqual(copy.participants, [ALICE])


class SnapshotTests(SynchronousTestCase):

    def setUp(self):
        self.w = Wavelet()
        self.w.apply(ALICE, [AddParticipant(ALICE), AddParticipant(BOB)])
        self.w.apply(BOB, [MutateDocument("b+1", DocOpBuilder()
                                           .element_start("body").element_start("line")
                                           .element_end()
                                           .annotation_boundary((), (("style/b", None, "1"),))
                                           .characters("h\u00e9 <&>\"")
                                           .annotation_boundary(("style/b",), ())
                                           .element_end().build())])
        self.w.apply(ALICE, [MutateDocument("b+1", DocOpBuilder().retain(4)
                                             .characters("x").retain(7).build()),
                             MutateDocument("conversation", insert("c"))])

    def test_snapshot_round_trips_to_an_equal_state(self):
        data = self.w.state.to_snapshot()
        restored = WaveletState.from_snapshot(data)
        self.assertEqual(restored, self.w.state)
        self.assertEqual(restored.document("b+1").annotations_at(3), {"style/b": "1"})
        self.assertEqual(restored.contributors["b+1"], (BOB, ALICE))
        self.assertEqual(restored.to_snapshot(), data)

    def test_restored_state_keeps_applying_deltas(self):
        self.w.state = WaveletState.from_snapshot(self.w.state.to_snapshot())
        self.w.apply(BOB, [RemoveParticipant(ALICE)])
        self.assertEqual(self.w.state.participants, [BOB])

    def test_garbage_snapshot_is_refused(self):
        e = self.assertRaises(InvalidSnapshot, WaveletState.from_snapshot, b"\xff{")
        self.assertIn("not JSON", str(e))

    def test_snapshot_missing_field_is_refused(self):
        e = self.assertRaises(InvalidSnapshot, WaveletState.from_snapshot,
                              b'{"format": 1, "name": "wave://a.test/w+abc/conv+root"}')
        self.assertIn("malformed", str(e))

    def test_snapshot_with_bad_document_is_refused(self):
        data = self.w.state.to_snapshot().replace(b'"c":', b'"q":')
        self.assertRaises(InvalidSnapshot, WaveletState.from_snapshot, data)


class GrowthTests(SynchronousTestCase):
    """What a copy and an apply cost does not grow with the number of documents."""

    def allocated(self, documents):
        import tracemalloc
        w = Wavelet()
        w.apply(ALICE, [AddParticipant(ALICE)] + [MutateDocument("b+%d" % i, insert("x"))
                                                 for i in range(documents)])
        delta = w.delta(ALICE, [MutateDocument("b+new", insert("a line"))])
        tracemalloc.start()
        try:
            copy = w.state.copy()
            copy.apply_delta(delta)
            return tracemalloc.get_traced_memory()[1]     # peak bytes while doing it
        finally:
            tracemalloc.stop()

    def test_copying_a_state_and_applying_a_delta_allocate_the_same_at_100_and_10000_documents(self):
        small, large = self.allocated(100), self.allocated(10000)
        # A dict of 10,000 documents copied once is over 300 KB; the maps'
        # paths are a few KB whatever their size.
        self.assertLess(large, 1.2 * small + 2048)
        self.assertLess(large, 16 * 1024)


class SnapshotEncoderTests(SynchronousTestCase):

    def test_reusing_unchanged_documents_gives_the_bytes_of_a_fresh_encoding(self):
        from wavebox.model.wavelet import SnapshotEncoder
        w = Wavelet()
        w.apply(ALICE, [AddParticipant(ALICE)] + [MutateDocument("b+%d" % i, insert("x%d" % i))
                                                 for i in range(5)])
        encoder = SnapshotEncoder()
        first = encoder.encode(w.state)
        self.assertEqual(first, w.state.to_snapshot())
        encoded = encoder.encoded_bytes
        w.apply(BOB, [AddParticipant(BOB)])
        w.apply(BOB, [MutateDocument("b+2", DocOpBuilder().retain(2).characters("!").build())])
        second = encoder.encode(w.state)
        self.assertEqual(second, w.state.to_snapshot())
        self.assertEqual(WaveletState.from_snapshot(second), w.state)
        # Only b+2 (changed text, new contributor) and the header were encoded again.
        fresh = SnapshotEncoder()
        fresh.encode(w.state)
        unchanged = sum(len(text) for doc_id, (_, _, text) in encoder._fragments.items()
                        if doc_id != "b+2")
        self.assertEqual(encoder.encoded_bytes - encoded, fresh.encoded_bytes - unchanged)
