"""
Property tests of document operations on random documents and random valid
operations (tests/docop_random.py): transform converges, compose has the
effect of both operations in turn, the keystroke fast path of transform is
the general construction, and damaged operations only ever raise model errors.

HYPOTHESIS_EXAMPLES sets the number of examples per property (default 1000).
"""

import os
import random

from hypothesis import HealthCheck, given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests.docop_random import (
    mutated,
    random_document,
    random_keystroke,
    random_op,
    random_text_document,
)
from wavebox.model.docop import (
    Document,
    check_well_formed,
    compose,
    is_well_formed,
    normalize,
    transform,
)
from wavebox.model.docop.transform import _keystroke, transform_general
from wavebox.model.errors import (
    ComposeError,
    IllFormedOperation,
    InvalidOperation,
    OperationMismatch,
    TransformError,
)

EXAMPLES = int(os.environ.get("HYPOTHESIS_EXAMPLES", "1000"))

PROPERTY = settings(max_examples=EXAMPLES, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def randoms(draw):
    """A seeded Random (the seed shows in a failure report)."""
    return random.Random(draw(st.integers(min_value=0, max_value=2 ** 64)))


def maybe_normalized(r, op):
    return normalize(op) if r.random() < 0.5 else op


class ConvergenceTests(SynchronousTestCase):

    @PROPERTY
    @given(randoms())
    def test_both_orders_reach_the_same_document(self, r):
        doc = random_document(r)
        a = maybe_normalized(r, random_op(r, doc))
        b = maybe_normalized(r, random_op(r, doc))
        a_t, b_t = transform(a, b)
        self.assertEqual(doc.apply(a).apply(b_t), doc.apply(b).apply(a_t))

    @PROPERTY
    @given(randoms())
    def test_transformed_operations_are_in_normal_form(self, r):
        doc = random_document(r)
        a_t, b_t = transform(random_op(r, doc), random_op(r, doc))
        self.assertEqual(normalize(a_t), a_t)
        self.assertEqual(normalize(b_t), b_t)

    @PROPERTY
    @given(randoms())
    def test_keystroke_fast_path_is_the_general_transform(self, r):
        doc = random_text_document(r)
        a = random_keystroke(r, doc)
        b = random_keystroke(r, doc)
        self.assertIsNotNone(_keystroke(a))
        self.assertIsNotNone(_keystroke(b))
        fast = transform(a, b)
        self.assertEqual(fast, transform_general(a, b))
        self.assertEqual(doc.apply(a).apply(fast[1]), doc.apply(b).apply(fast[0]))


class ComposeTests(SynchronousTestCase):

    @PROPERTY
    @given(randoms())
    def test_composed_operation_has_the_effect_of_both_in_turn(self, r):
        doc = random_document(r)
        a = maybe_normalized(r, random_op(r, doc))
        middle = doc.apply(a)
        b = maybe_normalized(r, random_op(r, middle))
        self.assertEqual(doc.apply(compose(a, b)), middle.apply(b))

    @PROPERTY
    @given(randoms())
    def test_normal_form_has_the_same_effect_and_is_stable(self, r):
        doc = random_document(r)
        op = random_op(r, doc)
        n = normalize(op)
        self.assertEqual(doc.apply(n), doc.apply(op))
        self.assertEqual(normalize(n), n)


class WellFormedApplyTests(SynchronousTestCase):
    """Issue 2: an operation that passes well-formedness never makes apply fail."""

    @PROPERTY
    @given(randoms())
    def test_operation_well_formed_for_the_document_always_applies(self, r):
        doc = random_document(r)
        op = maybe_normalized(r, random_op(r, doc))
        check_well_formed(op)
        result = doc.apply(op)
        self.assertEqual(result.size, op.output_length)
        self.assertEqual(Document.from_op(result.to_op()), result)

    @PROPERTY
    @given(randoms())
    def test_well_formed_operation_fails_apply_only_by_not_fitting_the_document(self, r):
        # A damaged operation that is still well-formed may not fit this
        # document (a wrong length, deleting other text), and is refused
        # for that reason alone, by name.
        doc = random_document(r)
        op = mutated(r, random_op(r, doc))
        if not is_well_formed(op):
            return
        try:
            result = doc.apply(op)
        except OperationMismatch as e:
            self.assertIn("document position", str(e))     # says where
            return
        self.assertEqual(result.size, op.output_length)


class RobustnessTests(SynchronousTestCase):

    @PROPERTY
    @given(randoms())
    def test_damaged_operation_fails_only_with_model_errors(self, r):
        doc = random_document(r)
        op = mutated(r, random_op(r, doc))
        well_formed = is_well_formed(op)
        try:
            result = doc.apply(op)
        except IllFormedOperation:
            self.assertFalse(well_formed)
            return
        except InvalidOperation:
            self.assertTrue(well_formed)
            return
        # Well-formed and valid: the result is a consistent document.
        self.assertTrue(well_formed)
        self.assertEqual(result.size, op.output_length)
        self.assertEqual(Document.from_op(result.to_op()), result)

    @PROPERTY
    @given(randoms())
    def test_damaged_operation_never_breaks_transform_or_compose(self, r):
        doc = random_document(r)
        good = random_op(r, doc)
        bad = mutated(r, random_op(r, doc))
        for first, second in ((bad, good), (good, bad)):
            try:
                transform(first, second)
            except TransformError:
                pass
            try:
                compose(first, second)
            except ComposeError:
                pass

    @PROPERTY
    @given(randoms())
    def test_document_round_trips_through_its_canonical_operation(self, r):
        doc = random_document(r)
        op = doc.to_op()
        self.assertEqual(Document.from_op(op), doc)
        self.assertEqual(normalize(op), op)
