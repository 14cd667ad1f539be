"""
wavebox.web.ops_json: the server model's operations and deltas to the JSON
shape of the web client's WebSocket and back, one to one (docs/web.rst).
"""

import json
import os
import re

from twisted.trial.unittest import SynchronousTestCase

from wavebox.model import docop
from wavebox.model.delta import HashedVersion, TransformedDelta, WaveletDelta
from wavebox.model.ids import ParticipantId, WaveletName
from wavebox.model.operations import AddParticipant, MutateDocument, NoOp, RemoveParticipant
from wavebox.model.vectors import op_from_json
from wavebox.server.interfaces import SubmitResult
from wavebox.web import ops_json
from wavebox.web.ops_json import JsonShapeError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")


def through_json(value):
    """What the other end of a WebSocket reads."""
    return json.loads(json.dumps(value))


def vector_ops():
    """Every well-formed operation of the Java vectors, as the model reads them."""
    ops = []
    for name, fields in (("ot-transform-java.json",
                          ("doc", "client", "server", "client_t", "server_t", "result")),
                         ("ot-compose-java.json", ("doc", "a", "b", "composed", "result")),
                         ("ot-wellformed-java.json", ("doc", "op"))):
        with open(os.path.join(DATA, name), encoding="utf-8") as f:
            for case in json.load(f):
                for field in fields:
                    op = op_from_json(case[field])
                    if docop.is_well_formed(op):
                        ops.append(op)
    return ops


NAME = WaveletName.of("example.com", "w+abc", "example.com", "conv+root")
V0 = HashedVersion.zero(NAME)
V3 = HashedVersion(3, bytes(range(20)))
INSERT = docop.DocOpBuilder().retain(3).characters("hi").retain(2).build()


class DocumentOperationTests(SynchronousTestCase):

    def test_every_vector_operation_round_trips(self):
        ops = vector_ops()
        self.assertGreater(len(ops), 5000)
        for op in ops:
            self.assertEqual(ops_json.docop_from_json(through_json(ops_json.docop_to_json(op))), op)

    def test_components_are_written_in_the_vectors_notation(self):
        op = (docop.DocOpBuilder()
              .annotation_boundary((), {"style/fontWeight": (None, "bold")})
              .element_start("line", {"t": "h1"}).element_end()
              .retain(2).delete_characters("ab")
              .update_attributes({"i": ("1", None)})
              .replace_attributes({"a": "1"}, {})
              .delete_element_start("image", {"src": "x"}).delete_element_end()
              .annotation_boundary(("style/fontWeight",), ())
              .build())
        self.assertEqual(ops_json.docop_to_json(op), [
            {"ab": {"end": [], "change": {"style/fontWeight": [None, "bold"]}}},
            {"es": ["line", {"t": "h1"}]}, {"ee": True},
            {"r": 2}, {"dc": "ab"},
            {"ua": {"i": ["1", None]}},
            {"ra": [{"a": "1"}, {}]},
            {"des": ["image", {"src": "x"}]}, {"dee": True},
            {"ab": {"end": ["style/fontWeight"], "change": {}}},
        ])

    def test_map_keys_in_any_order_are_read_in_java_order(self):
        # JSON objects are unordered: the reader sorts, as the wire demands.
        op = ops_json.docop_from_json([
            {"ab": {"change": {"z": [None, "1"], "a": [None, "2"]}}},
            {"es": ["p", {"y": "1", "b": "2"}]}, {"ee": True},
            {"ab": {"end": ["z", "a"]}},
            {"r": 1},
            {"ua": {"y": ["1", "2"], "b": ["2", None]}},
        ])
        self.assertEqual(op[0].changes, (("a", None, "2"), ("z", None, "1")))
        self.assertEqual(op[1].attributes, (("b", "2"), ("y", "1")))
        self.assertEqual(op[3].ends, ("a", "z"))
        self.assertEqual(op[5].updates, (("b", "2", None), ("y", "1", "2")))

    def test_an_ill_formed_operation_is_refused_saying_where(self):
        with self.assertRaises(JsonShapeError) as e:
            ops_json.docop_from_json([{"r": 0}], "operations[2].mutate_document.operation")
        self.assertIn("operations[2].mutate_document.operation: retain item count not positive",
                      str(e.exception))
        with self.assertRaises(JsonShapeError) as e:
            ops_json.docop_from_json([{"c": "\ud83d\ude00"}])
        self.assertIn("surrogate", str(e.exception))

    def test_malformed_components_are_refused(self):
        for bad, words in [
                ({"r": 1}, "expected a list"),
                ([{"r": 1, "c": "x"}], "operation[0]: a component is an object with exactly one"),
                ([{"x": 1}], "unknown component kind 'x'"),
                ([{"r": "3"}], "operation[0].r: expected an integer, not a string"),
                ([{"r": True}], "expected an integer, not a boolean"),
                ([{"es": ["p"]}, {"ee": True}], "expected [type, {attributes}]"),
                ([{"es": ["p", {"a": 1}]}, {"ee": True}], "operation[0].es.a: expected a string"),
                ([{"ee": 1}], "operation[0].ee: expected true"),
                ([{"ua": {"a": ["1"]}}], "operation[0].ua.a: expected [old, new]"),
                ([{"ab": {"end": ["a", "a"]}}], "a key is ended twice"),
                ([{"ab": {"ends": []}}], "unknown field(s) ends"),
        ]:
            with self.assertRaises(JsonShapeError) as e:
                ops_json.docop_from_json(bad)
            self.assertIn(words, str(e.exception), bad)


class WaveletOperationTests(SynchronousTestCase):

    def test_wavelet_operations_round_trip(self):
        for op, shape in [
                (AddParticipant(ParticipantId("Bob@Example.com")),
                 {"add_participant": "bob@example.com"}),
                (RemoveParticipant(ParticipantId("bob@example.com")),
                 {"remove_participant": "bob@example.com"}),
                (NoOp(), {"no_op": True}),
                (MutateDocument("b+1", INSERT),
                 {"mutate_document": {"document_id": "b+1", "operation":
                                      [{"r": 3}, {"c": "hi"}, {"r": 2}]}}),
                (MutateDocument("b+1", docop.DocOp(())),
                 {"mutate_document": {"document_id": "b+1", "operation": []}}),
        ]:
            self.assertEqual(ops_json.operation_to_json(op), shape)
            self.assertEqual(ops_json.operation_from_json(through_json(shape)), op)

    def test_malformed_wavelet_operations_are_refused(self):
        for bad, words in [
                ({}, "exactly one key"),
                ({"add_participant": "nobody"}, "operation.add_participant: "),
                ({"no_op": False}, "operation.no_op: expected true"),
                ({"mutate_document": {"document_id": "", "operation": []}},
                 "a document id is not empty"),
                ({"mutate_document": {"operation": []}}, "missing document_id"),
                ({"remove": "a@b.c"}, "unknown wavelet operation 'remove'"),
        ]:
            with self.assertRaises(JsonShapeError) as e:
                ops_json.operation_from_json(bad)
            self.assertIn(words, str(e.exception), bad)


class DeltaTests(SynchronousTestCase):

    def test_hashed_versions_round_trip_with_the_hash_in_base64(self):
        shape = ops_json.hashed_version_to_json(V0)
        self.assertEqual(shape, {"version": 0,
                                 "history_hash": "d2F2ZTovL2V4YW1wbGUuY29tL3crYWJjL2NvbnYrcm9vdA=="})
        self.assertEqual(ops_json.hashed_version_from_json(through_json(shape)), V0)
        self.assertEqual(ops_json.hashed_version_from_json(
            through_json(ops_json.hashed_version_to_json(V3))), V3)
        with self.assertRaises(JsonShapeError) as e:
            ops_json.hashed_version_from_json({"version": 1, "history_hash": "not base64!"})
        self.assertIn("hashed_version: bad base64 in hashed_version.history_hash", str(e.exception))
        with self.assertRaises(JsonShapeError) as e:
            ops_json.hashed_version_from_json({"version": -1, "history_hash": ""})
        self.assertIn("out of range", str(e.exception))

    def test_a_submitted_delta_round_trips(self):
        delta = WaveletDelta(ParticipantId("ann@example.com"), V3,
                             (MutateDocument("b+1", INSERT),
                              AddParticipant(ParticipantId("cat@example.org"))))
        shape = ops_json.delta_to_json(delta)
        self.assertEqual(sorted(shape), ["author", "hashed_version", "operations"])
        self.assertEqual(ops_json.delta_from_json(through_json(shape)), delta)

    def test_a_bad_submitted_delta_says_where(self):
        shape = ops_json.delta_to_json(WaveletDelta(
            ParticipantId("ann@example.com"), V3, (MutateDocument("b+1", INSERT),)))
        shape["operations"][0]["mutate_document"]["operation"][1] = {"c": 5}
        with self.assertRaises(JsonShapeError) as e:
            ops_json.delta_from_json(shape)
        self.assertEqual(str(e.exception), "delta.operations[0].mutate_document.operation[1].c: "
                                           "expected a string, not a number")
        with self.assertRaises(JsonShapeError) as e:
            ops_json.delta_from_json({**shape, "address_path": []})
        self.assertIn("unknown field(s) address_path", str(e.exception))

    def test_a_transformed_delta_round_trips(self):
        delta = TransformedDelta(ParticipantId("bob@example.com"), V3,
                                 HashedVersion(5, bytes(20)),
                                 (MutateDocument("b+1", INSERT), NoOp()), 1_700_000_000_000)
        shape = ops_json.transformed_delta_to_json(delta)
        self.assertEqual(ops_json.transformed_delta_from_json(through_json(shape)), delta)
        shape["resulting_version"]["version"] = 6
        with self.assertRaises(JsonShapeError) as e:
            ops_json.transformed_delta_from_json(shape)
        self.assertIn("cannot result in version 6", str(e.exception))

    def test_a_submit_result_has_the_fields_of_the_servers_answer(self):
        shape = ops_json.submit_result_to_json(SubmitResult(2, V3, 1234, duplicate=True))
        self.assertEqual(shape, {"operations_applied": 2,
                                 "hashed_version_after": ops_json.hashed_version_to_json(V3),
                                 "timestamp_ms": 1234, "duplicate": True})


class DocumentationTests(SynchronousTestCase):
    """The examples of docs/web.rst are what ops_json reads and writes."""

    def blocks(self):
        with open(os.path.join(ROOT, "docs", "web.rst"), encoding="utf-8") as f:
            text = f.read()
        found = re.findall(r"\.\. code-block:: json\n\n((?:    .*\n|\n)+)", text)
        return [json.loads("\n".join(line[4:] for line in block.splitlines())) for block in found]

    def test_the_documented_examples_parse(self):
        submit, update, answer = self.blocks()
        delta = ops_json.delta_from_json(submit)
        self.assertEqual(ops_json.delta_to_json(delta), submit)
        transformed = ops_json.transformed_delta_from_json(update)
        self.assertEqual(ops_json.transformed_delta_to_json(transformed), update)
        self.assertEqual(sorted(answer), sorted(ops_json.submit_result_to_json(
            SubmitResult(1, V3, 0))))
