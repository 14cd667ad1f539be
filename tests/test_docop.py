"""
Document operations: components, builder, normal form, well-formedness,
documents and application (wave-protocol.md 6.1-6.3).
"""

from twisted.trial.unittest import SynchronousTestCase

from wavebox.model.docop import (
    AnnotationBoundary,
    Characters,
    DeleteCharacters,
    DocOp,
    DocOpBuilder,
    Document,
    ElementStart,
    Retain,
    UpdateAttributes,
    check_well_formed,
    is_well_formed,
    normalize,
)
from wavebox.model.errors import IllFormedOperation, OperationMismatch


def doc_of(*parts):
    """A document from text strings and (type, attrs) / None for element start / end."""
    b = DocOpBuilder()
    for p in parts:
        if isinstance(p, str):
            b.characters(p)
        elif p is None:
            b.element_end()
        else:
            b.element_start(p[0], p[1])
    return Document.from_op(b.build())


class ComponentTests(SynchronousTestCase):

    def test_attribute_dict_is_sorted_into_pairs(self):
        self.assertEqual(ElementStart("p", {"t": "1", "i": "2"}).attributes,
                         (("i", "2"), ("t", "1")))

    def test_attribute_sequence_keeps_its_order(self):
        self.assertEqual(ElementStart("p", [("t", "1"), ("i", "2")]).attributes,
                         (("t", "1"), ("i", "2")))

    def test_update_dict_becomes_sorted_triples(self):
        self.assertEqual(UpdateAttributes({"b": (None, "1"), "a": ("x", None)}).updates,
                         (("a", "x", None), ("b", None, "1")))

    def test_docop_is_hashable_and_compares_by_components(self):
        a = DocOp([Retain(1), Characters("x")])
        b = DocOpBuilder().retain(1).characters("x").build()
        self.assertEqual(a, b)
        self.assertEqual(hash(a), hash(b))
        self.assertEqual(len(a), 2)
        self.assertEqual(list(a), [Retain(1), Characters("x")])

    def test_builder_keeps_components_as_given(self):
        op = DocOpBuilder().retain(1).retain(2).annotation_boundary().build()
        self.assertEqual(op.components, (Retain(1), Retain(2), AnnotationBoundary()))


class NormalizeTests(SynchronousTestCase):

    def test_adjacent_runs_merge_and_empty_boundary_disappears(self):
        op = DocOpBuilder().retain(1).retain(2).annotation_boundary() \
            .characters("a").characters("b").delete_characters("x") \
            .delete_characters("y").build()
        self.assertEqual(normalize(op), DocOp([Retain(3), Characters("ab"),
                                               DeleteCharacters("xy")]))

    def test_boundary_only_where_the_update_changes_and_keys_close_at_end(self):
        op = DocOpBuilder().annotation_boundary(changes={"a": (None, "1")}).retain(1) \
            .annotation_boundary(changes={"a": (None, "1")}).retain(1).build()
        self.assertEqual(normalize(op), DocOp([
            AnnotationBoundary((), (("a", None, "1"),)), Retain(2),
            AnnotationBoundary(("a",), ())]))

    def test_assertion_of_an_unchanged_value_is_kept(self):
        op = DocOpBuilder().annotation_boundary(changes={"a": ("1", "1")}).retain(1) \
            .annotation_boundary(ends=["a"]).build()
        self.assertEqual(normalize(op), op)


class WellFormednessTests(SynchronousTestCase):

    def assertIllFormed(self, op, index, rule):
        e = self.assertRaises(IllFormedOperation, check_well_formed, op)
        self.assertEqual((e.index, e.rule), (index, rule))
        self.assertFalse(is_well_formed(op))
        return e

    def test_zero_retain_names_index_and_rule(self):
        e = self.assertIllFormed(DocOp([Characters("a"), Retain(0)]), 1, "retain_not_positive")
        self.assertIn("retain item count not positive", str(e))

    def test_surrogate_text_is_ill_formed(self):
        self.assertIllFormed(DocOp([Characters("a\U0001F600")]), 0, "surrogate")
        self.assertIllFormed(DocOp([Characters("a\ud83d")]), 0, "surrogate")

    def test_noncharacter_is_ill_formed_but_control_character_is_not(self):
        self.assertIllFormed(DocOp([Characters("a\ufffe")]), 0, "invalid_unicode")
        check_well_formed(DocOp([Characters("a\x01b")]))

    def test_unsorted_attributes_are_ill_formed(self):
        self.assertIllFormed(DocOp([ElementStart("p", (("t", "1"), ("i", "1"))),
                                    DocOpBuilder().element_end().build()[0]]),
                             0, "attribute_keys_not_sorted")

    def test_adjacent_boundaries_are_ill_formed(self):
        op = DocOpBuilder().annotation_boundary(changes={"a": (None, "1")}) \
            .annotation_boundary(ends=["a"]).build()
        self.assertIllFormed(op, 1, "adjacent_annotation_boundaries")

    def test_question_mark_in_annotation_key_is_ill_formed(self):
        op = DocOpBuilder().annotation_boundary(changes={"k?x": (None, "1")}).retain(1) \
            .annotation_boundary(ends=["k?x"]).build()
        self.assertIllFormed(op, 0, "annotation_key_invalid_character")

    def test_unclosed_key_is_reported_at_the_end(self):
        op = DocOpBuilder().annotation_boundary(changes={"a": (None, "1")}).retain(1).build()
        self.assertIllFormed(op, 2, "annotation_not_closed")

    def test_retain_inside_insertion_is_ill_formed(self):
        op = DocOpBuilder().element_start("p").retain(1).element_end().build()
        self.assertIllFormed(op, 1, "retain_inside_insert_or_delete")


class ApplyTests(SynchronousTestCase):

    def test_insert_text_in_element(self):
        d = doc_of(("body", {}), "hello", None)
        op = DocOpBuilder().retain(6).characters(" world").retain(1).build()
        self.assertEqual(d.apply(op).to_xml(), "<body>hello world</body>")
        self.assertEqual(d.to_xml(), "<body>hello</body>")

    def test_mismatched_delete_raises_and_leaves_document_unchanged(self):
        d = doc_of("abc")
        op = DocOpBuilder().delete_characters("x").retain(2).build()
        e = self.assertRaises(OperationMismatch, d.apply, op)
        self.assertEqual(e.index, 0)
        self.assertEqual(d.text(), "abc")

    def test_retain_past_end_is_a_mismatch(self):
        self.assertRaises(OperationMismatch, doc_of("ab").apply, DocOp([Retain(3)]))

    def test_short_operation_is_a_mismatch(self):
        self.assertRaises(OperationMismatch, doc_of("ab").apply, DocOp([Retain(1)]))

    def test_annotation_round_trips_through_to_op(self):
        op = DocOpBuilder().annotation_boundary(changes={"a": (None, "1")}).characters("ab") \
            .annotation_boundary(ends=["a"]).characters("c").build()
        d = Document.from_op(op)
        self.assertEqual(d.to_op(), op)
        self.assertEqual([dict(i.annotations) for i in d.items()], [{"a": "1"}, {"a": "1"}, {}])

    def test_inserted_text_takes_annotations_left_of_cursor(self):
        op = DocOpBuilder().annotation_boundary(changes={"a": (None, "1")}).characters("ab") \
            .annotation_boundary(ends=["a"]).build()
        d = Document.from_op(op).apply(DocOpBuilder().retain(1).characters("x").retain(1).build())
        self.assertEqual(d.annotations_at(1), {"a": "1"})

    def test_items_are_read_only(self):
        d = doc_of(("p", {"x": "1"}), "a", None)
        item = d.items()[0]
        self.assertTrue(item.is_element_start)
        self.assertEqual(item.value.type, "p")
        self.assertRaises(TypeError, item.annotations.__setitem__, "k", "v")

    def test_xml_escapes_text_and_attributes(self):
        d = doc_of(("p", {"x": 'a"<'}), "<&>", None)
        self.assertEqual(d.to_xml(), '<p x="a&quot;&lt;">&lt;&amp;&gt;</p>')
