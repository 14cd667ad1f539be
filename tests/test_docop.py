"""
Document operations: components, builder, normal form, well-formedness,
documents and application (wave-protocol.md 6.1-6.3).
"""

from twisted.trial.unittest import SynchronousTestCase

from wavebox.model.docop import (
    AnnotationBoundary,
    Characters,
    DeleteCharacters,
    DeleteElementStart,
    DocOp,
    DocOpBuilder,
    Document,
    ElementStart,
    ReplaceAttributes,
    Retain,
    UpdateAttributes,
    check_well_formed,
    compose,
    is_well_formed,
    normalize,
    transform,
)
from wavebox.model.errors import (
    ComposeError,
    IllFormedOperation,
    OperationMismatch,
    TransformError,
)


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


class ComposeTests(SynchronousTestCase):

    def test_insert_then_delete_of_it_vanishes(self):
        a = DocOpBuilder().retain(1).characters("xy").retain(1).build()
        b = DocOpBuilder().retain(1).delete_characters("x").retain(2).build()
        self.assertEqual(compose(a, b), DocOp([Retain(1), Characters("y"), Retain(1)]))

    def test_replace_then_replace_keeps_first_old_and_second_new(self):
        a = DocOp([ReplaceAttributes({"k": "1"}, {"k": "2"})])
        b = DocOp([ReplaceAttributes({"k": "2"}, {"j": "3"})])
        self.assertEqual(compose(a, b), DocOp([ReplaceAttributes({"k": "1"}, {"j": "3"})]))

    def test_update_then_update_merges(self):
        a = DocOp([UpdateAttributes({"k": ("1", "2")})])
        b = DocOp([UpdateAttributes({"k": ("2", "3"), "j": (None, "x")})])
        self.assertEqual(compose(a, b),
                         DocOp([UpdateAttributes({"j": (None, "x"), "k": ("1", "3")})]))

    def test_inserted_element_takes_the_later_attribute_change(self):
        a = DocOpBuilder().element_start("p", {"k": "1"}).element_end().build()
        b = DocOpBuilder().update_attributes({"k": ("1", "2")}).retain(1).build()
        self.assertEqual(compose(a, b), DocOpBuilder().element_start("p", {"k": "2"})
                         .element_end().build())

    def test_update_then_delete_deletes_the_original_attributes(self):
        a = DocOpBuilder().update_attributes({"k": ("1", "2")}).retain(1).build()
        b = DocOpBuilder().delete_element_start("p", {"k": "2"}).delete_element_end().build()
        self.assertEqual(compose(a, b)[0], DeleteElementStart("p", {"k": "1"}))

    def test_length_mismatch_is_a_compose_error(self):
        self.assertRaises(ComposeError, compose, DocOp([Retain(2)]), DocOp([Retain(3)]))
        self.assertRaises(ComposeError, compose, DocOp([Retain(3)]), DocOp([Retain(2)]))

    def test_delete_of_inserted_element_as_text_is_a_compose_error(self):
        a = DocOpBuilder().element_start("p").element_end().build()
        b = DocOpBuilder().delete_characters("ab").build()
        self.assertRaises(ComposeError, compose, a, b)


class TransformTieBreakTests(SynchronousTestCase):

    def test_client_wins_an_annotation_conflict_on_the_overlap(self):
        d = doc_of("abcd")
        client = DocOpBuilder().annotation_boundary(changes={"a": (None, "1")}).retain(4) \
            .annotation_boundary(ends=["a"]).build()
        server = DocOpBuilder().retain(1).annotation_boundary(changes={"a": (None, "2")}) \
            .retain(2).annotation_boundary(ends=["a"]).retain(1).build()
        client_t, server_t = transform(client, server)
        # The client's operation now asserts the server's value on the overlap...
        self.assertIn(AnnotationBoundary((), (("a", "2", "1"),)), client_t.components)
        # ...and the server's is trimmed to nothing.
        self.assertEqual(server_t, DocOp([Retain(4)]))
        one = d.apply(client).apply(server_t)
        self.assertEqual(one, d.apply(server).apply(client_t))
        self.assertEqual([dict(i.annotations) for i in one.items()], [{"a": "1"}] * 4)

    def test_attribute_change_vanishes_when_the_element_is_deleted(self):
        d = doc_of(("p", {"x": "1"}), "ab", None)
        client = DocOpBuilder().update_attributes({"x": ("1", "2")}).retain(3).build()
        server = DocOpBuilder().delete_element_start("p", {"x": "1"}).delete_characters("ab") \
            .delete_element_end().build()
        client_t, server_t = transform(client, server)
        self.assertEqual(client_t, DocOp([]))
        self.assertEqual(server_t[0], DeleteElementStart("p", {"x": "2"}))
        self.assertEqual(d.apply(client).apply(server_t).size, 0)

    def test_insertion_inside_a_deleted_element_is_swallowed(self):
        d = doc_of(("p", {}), "ab", None)
        client = DocOpBuilder().retain(2).characters("hello").retain(2).build()
        server = DocOpBuilder().delete_element_start("p").delete_characters("ab") \
            .delete_element_end().build()
        client_t, server_t = transform(client, server)
        self.assertEqual(client_t, DocOp([]))
        self.assertIn(DeleteCharacters("ahellob"), server_t.components)
        self.assertEqual(d.apply(client).apply(server_t), d.apply(server).apply(client_t))

    def test_update_conflict_on_same_key_client_wins(self):
        d = doc_of(("p", {"x": "1"}), None)
        client = DocOpBuilder().update_attributes({"x": ("1", "c")}).retain(1).build()
        server = DocOpBuilder().update_attributes({"x": ("1", "s")}).retain(1).build()
        client_t, server_t = transform(client, server)
        self.assertEqual(client_t[0], UpdateAttributes({"x": ("s", "c")}))
        result = d.apply(server).apply(client_t)
        self.assertEqual(result, d.apply(client).apply(server_t))
        self.assertEqual(result.items()[0].value.attribute_map(), {"x": "c"})

    def test_operations_of_different_lengths_are_a_transform_error(self):
        self.assertRaises(TransformError, transform, DocOp([Retain(2)]), DocOp([Retain(3)]))
        self.assertRaises(TransformError, transform,
                          DocOpBuilder().element_start("p").element_end().retain(1).build(),
                          DocOp([Retain(2)]))


class DocumentReadingTests(SynchronousTestCase):

    def test_element_range_finds_the_matching_end(self):
        d = doc_of(("conversation", {}), ("blip", {}), "hi", None, None, ("x", {}), None)
        self.assertEqual(d.element_range("conversation"), (0, 5))
        self.assertEqual(d.element_range("blip"), (1, 4))
        self.assertEqual(d.element_range("x"), (6, 7))
        self.assertIsNone(d.element_range("missing"))

    def test_inserting_at_element_end_puts_content_last_in_it(self):
        d = doc_of(("conversation", {}), ("blip", {}), None, None)
        _start, end = d.element_range("conversation")
        op = DocOpBuilder().retain(end).element_start("blip", {"id": "b2"}).element_end() \
            .retain(d.size - end).build()
        self.assertEqual(d.apply(op).to_xml(),
                         '<conversation><blip></blip><blip id="b2"></blip></conversation>')


class ForeignInputTests(SynchronousTestCase):

    def test_transform_refuses_objects_that_are_not_components(self):
        self.assertRaises(TransformError, transform, DocOp(["r"]), DocOp([Retain(1)]))

    def test_compose_refuses_objects_that_are_not_components(self):
        self.assertRaises(ComposeError, compose, DocOp([Retain(1)]), DocOp([None]))

    def test_apply_refuses_objects_that_are_not_components(self):
        e = self.assertRaises(IllFormedOperation, doc_of("a").apply, DocOp([Retain(1), 7]))
        self.assertEqual((e.index, e.rule), (1, "unknown_component"))

    def test_non_integer_retain_is_ill_formed(self):
        e = self.assertRaises(IllFormedOperation, doc_of("ab").apply, DocOp([Retain("2")]))
        self.assertEqual(e.rule, "retain_not_positive")
