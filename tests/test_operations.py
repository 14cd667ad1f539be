"""Wavelet operations, their transform and delta-level transform (wave protocol notes 6.6)."""

from twisted.trial.unittest import SynchronousTestCase

from wavebox.model.delta import HashedVersion, TransformedDelta, WaveletDelta
from wavebox.model.docop import DocOpBuilder
from wavebox.model.errors import (
    InvalidDelta, InvalidHashedVersion, InvalidOperation, RemovedAuthorError, TransformError)
from wavebox.model.ids import ParticipantId
from wavebox.model.operations import (
    AddParticipant, MutateDocument, NoOp, RemoveParticipant, WaveletBlipOperation, transform,
    transform_delta)

X = ParticipantId("x@b.example")
Y = ParticipantId("y@b.example")
A = ParticipantId("a@a.example")


def insert(text):
    return DocOpBuilder().characters(text).build()


class WaveletOpTransformVectorTests(SynchronousTestCase):
    """The wavelet_op_transform cases of section 9."""

    def test_concurrent_adds_of_same_participant_become_noops(self):
        self.assertEqual(transform(AddParticipant(X), A, AddParticipant(X), Y), (NoOp(), NoOp()))

    def test_concurrent_removes_of_same_participant_become_noops(self):
        self.assertEqual(transform(RemoveParticipant(X), A, RemoveParticipant(X), Y),
                         (NoOp(), NoOp()))

    def test_add_against_remove_of_same_participant_fails(self):
        e = self.assertRaises(TransformError, transform, AddParticipant(X), A,
                              RemoveParticipant(X), Y)
        self.assertNotIsInstance(e, RemovedAuthorError)
        self.assertIn("x@b.example", str(e))

    def test_document_op_against_removal_of_its_author_fails(self):
        e = self.assertRaises(RemovedAuthorError, transform, MutateDocument("b+1", insert("x")), X,
                              RemoveParticipant(X), Y)
        self.assertIn("x@b.example", str(e))

    def test_ops_on_different_documents_are_identity(self):
        c, s = MutateDocument("b+1", insert("a")), MutateDocument("b+2", insert("b"))
        self.assertEqual(transform(c, A, s, Y), (c, s))


class MoreTransformTests(SynchronousTestCase):

    def test_ops_on_same_document_use_document_transform(self):
        c = MutateDocument("b+1", DocOpBuilder().retain(2).characters("abc").retain(18).build())
        s = MutateDocument("b+1", DocOpBuilder().retain(2).characters("123").retain(18).build())
        c_t, s_t = transform(c, A, s, Y)
        # Client first at a tie (section 9 doc_op_transform "TIE").
        self.assertEqual(c_t, MutateDocument(
            "b+1", DocOpBuilder().retain(2).characters("abc").retain(21).build()))
        self.assertEqual(s_t, MutateDocument(
            "b+1", DocOpBuilder().retain(5).characters("123").retain(18).build()))

    def test_document_transform_failure_names_the_document(self):
        c = MutateDocument("b+1", DocOpBuilder().retain(1).build())
        s = MutateDocument("b+1", DocOpBuilder().characters("x").build())
        e = self.assertRaises(TransformError, transform, c, A, s, Y)
        self.assertIn("document b+1", str(e))

    def test_remove_against_add_of_same_participant_fails(self):
        self.assertRaises(TransformError, transform, RemoveParticipant(X), A, AddParticipant(X), Y)

    def test_any_op_against_removal_of_its_author_fails(self):
        self.assertRaises(RemovedAuthorError, transform, AddParticipant(Y), X,
                          RemoveParticipant(X), A)
        # Even removing oneself: the author check comes first, as in WIAB.
        self.assertRaises(RemovedAuthorError, transform, RemoveParticipant(X), X,
                          RemoveParticipant(X), A)

    def test_participant_ops_on_different_participants_are_identity(self):
        for c in (AddParticipant(X), RemoveParticipant(X), NoOp(), MutateDocument("b+1", insert("a"))):
            for s in (AddParticipant(Y), RemoveParticipant(Y), NoOp()):
                self.assertEqual(transform(c, A, s, A), (c, s))

    def test_removal_against_document_op_is_identity(self):
        c, s = RemoveParticipant(X), MutateDocument("b+1", insert("a"))
        self.assertEqual(transform(c, A, s, X), (c, s))

    def test_blip_operation_is_mutate_document(self):
        self.assertIs(WaveletBlipOperation, MutateDocument)

    def test_mutate_document_needs_a_docop(self):
        self.assertRaises(InvalidOperation, MutateDocument, "b+1", "hello")
        self.assertRaises(InvalidOperation, MutateDocument, "", insert("a"))


class Scratch:
    """The shape of wavelet that operations change."""

    def __init__(self, participants=()):
        self.participants = list(participants)
        self.documents = {}
        self.contributors = {}


class ApplyTests(SynchronousTestCase):

    def test_add_appends_participant(self):
        w = Scratch([A])
        AddParticipant(X).apply(w, A)
        self.assertEqual(w.participants, [A, X])

    def test_adding_existing_participant_fails(self):
        e = self.assertRaises(InvalidOperation, AddParticipant(A).apply, Scratch([A]), A)
        self.assertIn("already a participant", str(e))

    def test_removing_non_participant_fails(self):
        e = self.assertRaises(InvalidOperation, RemoveParticipant(X).apply, Scratch([A]), A)
        self.assertIn("is not a participant", str(e))

    def test_mutate_creates_document_and_records_contributors(self):
        w = Scratch([A, X])
        MutateDocument("b+1", insert("hi")).apply(w, A)
        MutateDocument("b+1", DocOpBuilder().retain(2).characters("!").build()).apply(w, X)
        MutateDocument("b+1", DocOpBuilder().retain(3).characters("?").build()).apply(w, A)
        self.assertEqual(w.documents["b+1"].text(), "hi!?")
        self.assertEqual(w.contributors["b+1"], (A, X))

    def test_mutate_that_does_not_fit_names_document(self):
        w = Scratch([A])
        e = self.assertRaises(InvalidOperation, MutateDocument("b+1", DocOpBuilder().retain(3).build()).apply, w, A)
        self.assertIn("document b+1", str(e))

    def test_noop_changes_nothing(self):
        w = Scratch([A])
        NoOp().apply(w, A)
        self.assertEqual((w.participants, w.documents), ([A], {}))


def history_delta(author, version, ops):
    start = HashedVersion(version, b"h%d" % version)
    end = HashedVersion(version + len(ops), b"h%d" % (version + len(ops)))
    return TransformedDelta(author, start, end, ops, 1000 + version)


class DeltaTransformTests(SynchronousTestCase):

    def setUp(self):
        self.d1 = history_delta(Y, 3, [AddParticipant(X)])
        self.d2 = history_delta(A, 4, [MutateDocument("b+9", insert("z")), NoOp()])
        self.history = [self.d1, self.d2]
        self.current = self.d2.resulting_version

    def submit(self, ops, target=None, author=A, history=None):
        delta = WaveletDelta(author, target or self.d1.applied_at, ops)
        return transform_delta(delta, self.history if history is None else history, self.current)

    def test_delta_at_current_version_is_unchanged(self):
        ops = [AddParticipant(Y)]
        result = transform_delta(WaveletDelta(A, self.current, ops), [], self.current)
        self.assertEqual(result.operations, tuple(ops))
        self.assertEqual(result.applied_at, self.current)
        self.assertFalse(result.is_duplicate)

    def test_stale_delta_is_transformed_against_every_history_delta(self):
        result = self.submit([AddParticipant(X), MutateDocument("b+1", insert("a"))])
        self.assertEqual(result.operations, (NoOp(), MutateDocument("b+1", insert("a"))))
        self.assertEqual(result.applied_at, self.current)

    def test_stale_document_op_is_shifted_past_history(self):
        history = [history_delta(Y, 3, [MutateDocument("b+1", insert("zz"))])]
        self.current = history[0].resulting_version
        mine = MutateDocument("b+1", insert("a"))
        result = self.submit([mine], history=history)
        # Same position, the submitted (client) insertion goes first.
        self.assertEqual(result.operations, (MutateDocument(
            "b+1", DocOpBuilder().characters("a").retain(2).build()),))

    def test_resubmission_by_same_author_is_a_duplicate(self):
        result = self.submit([AddParticipant(X)], author=Y)
        self.assertTrue(result.is_duplicate)
        self.assertIs(result.duplicate_of, self.d1)
        self.assertEqual(result.applied_at, self.d1.applied_at)

    def test_duplicate_found_after_transform_through_earlier_deltas(self):
        result = self.submit([MutateDocument("b+9", insert("z")), NoOp()])
        self.assertIs(result.duplicate_of, self.d2)

    def test_same_ops_by_other_author_are_not_a_duplicate(self):
        result = self.submit([AddParticipant(X)], author=A)
        self.assertFalse(result.is_duplicate)
        self.assertEqual(result.operations, (NoOp(),))

    def test_each_client_op_meets_the_server_ops_as_recorded(self):
        # WIAB transformOps does not advance the server op past the client's
        # first op: Remove(x) still meets Add(x) and the delta is refused.
        self.assertRaises(TransformError, self.submit, [AddParticipant(X), RemoveParticipant(X)])

    def test_removed_author_is_refused(self):
        history = [history_delta(Y, 3, [RemoveParticipant(A)])]
        self.current = history[0].resulting_version
        self.assertRaises(RemovedAuthorError, self.submit, [NoOp()], history=history)

    def test_empty_delta_is_refused(self):
        e = self.assertRaises(InvalidDelta, self.submit, [])
        self.assertIn("empty delta", str(e))

    def test_wrong_hash_at_current_version_is_refused(self):
        e = self.assertRaises(InvalidHashedVersion, self.submit, [NoOp()],
                              target=HashedVersion(self.current.version, b"bad"))
        self.assertIn("different hash", str(e))

    def test_future_version_is_refused(self):
        e = self.assertRaises(InvalidHashedVersion, self.submit, [NoOp()],
                              target=HashedVersion(99, b"h99"))
        self.assertIn("beyond the current version", str(e))

    def test_non_boundary_version_is_refused(self):
        e = self.assertRaises(InvalidHashedVersion, self.submit, [NoOp()],
                              target=HashedVersion(5, b"h5"), history=[self.d2])
        self.assertIn("not a delta boundary", str(e))

    def test_wrong_hash_at_old_boundary_is_refused(self):
        e = self.assertRaises(InvalidHashedVersion, self.submit, [NoOp()],
                              target=HashedVersion(3, b"bad"))
        self.assertIn("does not match", str(e))

    def test_history_must_reach_current(self):
        e = self.assertRaises(InvalidHashedVersion, self.submit, [NoOp()], history=[self.d1])
        self.assertIn("not at the current", str(e))
