"""Model <-> federation protocol buffers (wave protocol notes 2, vectors 9)."""

import base64
import os

from hypothesis import assume, given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from wavebox.model.delta import HashedVersion, Signature, SignedDelta, WaveletDelta
from wavebox.model import docop
from wavebox.model.docop import DocOpBuilder
from wavebox.model.errors import (
    IllFormedOperation, InvalidParticipantId, ModelError, WireError)
from wavebox.model.ids import WaveletName
from wavebox.model.operations import AddParticipant, MutateDocument, NoOp, RemoveParticipant
from wavebox.model.signer import SignerInfo
from wavebox.wire import convert, federation_pb2 as pb

SPEC_APPLIED_DELTA = base64.b64decode(
    "CiIKIAoFCNIJEgASF2ZvenppZUBpbml0ZWNoLWNvcnAuY29tEgUI0gkSABgCINKF2MwE")
SPEC_INNER_DELTA = b"\n\x05\x08\xd2\t\x12\x00\x12\x17fozzie@initech-corp.com"


def every_component_op():
    """A well-formed document operation using all ten component kinds."""
    return (DocOpBuilder()
            .annotation_boundary((), (("style/bold", None, "true"),))
            .characters("hi")
            .annotation_boundary(("style/bold",), ())
            .element_start("line", (("t", "h1"),))
            .element_end()
            .retain(2)
            .delete_characters("ab")
            .delete_element_start("img", (("src", "x"),))
            .delete_element_end()
            .replace_attributes((("a", "1"),), (("b", "2"),))
            .update_attributes((("c", None, "3"), ("d", "4", None)))
            .retain(1)
            .build())


def sample_delta():
    return WaveletDelta(
        "bob@a.test", HashedVersion(7, b"\x01" * 20),
        [AddParticipant("carol@b.test"), RemoveParticipant("dave@a.test"), NoOp(),
         MutateDocument("b+1", every_component_op())])


class AppliedDeltaVectorTests(SynchronousTestCase):
    """The spec_example_applied_delta vector of section 9."""

    def setUp(self):
        self.applied = convert.parse_applied_delta(SPEC_APPLIED_DELTA)

    def test_spec_applied_delta_parses_to_decoded_values(self):
        a = self.applied
        self.assertEqual(a.applied_at, HashedVersion(1234, b""))
        self.assertEqual(a.operations_applied, 2)
        self.assertEqual(a.application_timestamp, 1234567890)
        self.assertEqual(a.delta.author.address, "fozzie@initech-corp.com")
        self.assertEqual(a.delta.hashed_version, HashedVersion(1234, b""))
        self.assertEqual(a.delta.operations, ())
        self.assertEqual(a.signed_delta.signatures, ())

    def test_parse_keeps_exact_applied_and_inner_delta_bytes(self):
        self.assertEqual(self.applied.applied_delta_bytes, SPEC_APPLIED_DELTA)
        self.assertEqual(self.applied.delta_bytes, SPEC_INNER_DELTA)

    def test_spec_applied_delta_next_hash_over_received_bytes(self):
        name = WaveletName.from_uri("wave://acmewave.com/initech-corp.com!w+a/conv+b")
        prev = HashedVersion.zero(name)
        self.assertEqual(prev.next(self.applied.applied_delta_bytes, 2).history_hash,
                         base64.b64decode("f2iKHqPBVOW3b2hTxdvvDm+0qpY="))

    def test_building_the_same_applied_delta_gives_the_same_bytes(self):
        rebuilt = convert.build_applied_delta(
            self.applied.signed_delta, HashedVersion(1234, b""), 2, 1234567890)
        self.assertEqual(rebuilt.applied_delta_bytes, SPEC_APPLIED_DELTA)

    def test_missing_applied_at_means_inner_target_version(self):
        message = pb.ProtocolAppliedWaveletDelta()
        message.ParseFromString(SPEC_APPLIED_DELTA)
        message.ClearField("hashed_version_applied_at")
        message.operations_applied = 0
        data = message.SerializeToString()
        applied = convert.parse_applied_delta(data)
        self.assertEqual(applied.applied_at, HashedVersion(1234, b""))
        self.assertEqual(applied.applied_delta_bytes, data)


class ProtoTwoEncodingTests(SynchronousTestCase):

    def test_version_zero_is_written(self):
        self.assertEqual(convert.serialize_hashed_version(HashedVersion(0, b"")), b"\x08\x00\x12\x00")

    def test_delta_fields_in_number_order(self):
        delta = WaveletDelta("a@b", HashedVersion(0, b""), [NoOp()])
        self.assertEqual(convert.serialize_wavelet_delta(delta),
                         b"\x0a\x04\x08\x00\x12\x00" + b"\x12\x03a@b" + b"\x1a\x02\x20\x01")

    def test_empty_flag_set_only_when_lists_empty(self):
        op = (DocOpBuilder().replace_attributes((), ()).update_attributes(())
              .annotation_boundary((), ()).build())
        message = convert.docop_to_proto(op)
        self.assertTrue(message.component[0].replace_attributes.empty)
        self.assertTrue(message.component[1].update_attributes.empty)
        self.assertTrue(message.component[2].annotation_boundary.empty)
        full = convert.docop_to_proto(every_component_op())
        self.assertFalse(full.component[9].replace_attributes.HasField("empty"))
        self.assertFalse(full.component[10].update_attributes.HasField("empty"))
        self.assertFalse(full.component[0].annotation_boundary.HasField("empty"))

    def test_empty_flag_is_read_first(self):
        message = pb.ProtocolDocumentOperation()
        c = message.component.add()
        c.update_attributes.empty = True
        u = c.update_attributes.attribute_update.add()
        u.key = "ignored"
        c2 = message.component.add()
        c2.retain_item_count = 1
        op = convert.docop_from_proto(message)
        self.assertEqual(op.components[0].updates, ())


class RoundTripTests(SynchronousTestCase):

    def test_delta_with_every_operation_round_trips(self):
        delta = sample_delta()
        data = convert.serialize_wavelet_delta(delta)
        parsed = convert.parse_wavelet_delta(data)
        self.assertEqual(parsed, delta)
        self.assertEqual(convert.serialize_wavelet_delta(parsed), data)

    def test_empty_document_operation_is_still_written(self):
        delta = WaveletDelta("a@b", HashedVersion(0, b""),
                             [MutateDocument("b+1", DocOpBuilder().build())])
        data = convert.serialize_wavelet_delta(delta)
        self.assertTrue(data.endswith(b"\x1a\x09\x1a\x07\x0a\x03b+1\x12\x00"))
        self.assertEqual(convert.parse_wavelet_delta(data), delta)

    def test_null_old_and_new_values_round_trip(self):
        op = convert.docop_from_proto(convert.docop_to_proto(every_component_op()))
        self.assertEqual(op.components[10].updates, (("c", None, "3"), ("d", "4", None)))

    def test_signed_delta_keeps_unknown_fields_in_delta_bytes(self):
        # A peer's serialiser may write things ours would not; the bytes stay.
        inner = convert.serialize_wavelet_delta(sample_delta()) + b"\x78\x05"
        signed = SignedDelta(inner, (Signature(b"sig", b"id"),))
        parsed = convert.parse_signed_delta(convert.serialize_signed_delta(signed))
        self.assertEqual(parsed.delta_bytes, inner)
        self.assertEqual(parsed.signatures, signed.signatures)
        self.assertEqual(parsed.delta, sample_delta())
        applied = convert.build_applied_delta(parsed, HashedVersion(9, b"h"), 4, 1000)
        reparsed = convert.parse_applied_delta(applied.applied_delta_bytes)
        self.assertEqual(reparsed.delta_bytes, inner)
        self.assertEqual(reparsed.resulting_version, applied.resulting_version)
        self.assertEqual(reparsed.resulting_version.version, 13)

    def test_signer_info_round_trips(self):
        info = SignerInfo("a.test", (b"leaf-der", b"ca-der"), "SHA512")
        data = convert.serialize_signer_info(info)
        self.assertEqual(convert.parse_signer_info(data), info)
        self.assertEqual(data[:2], b"\x08\x02")


class BadInputTests(SynchronousTestCase):

    def test_truncated_applied_delta(self):
        e = self.assertRaises(WireError, convert.parse_applied_delta, SPEC_APPLIED_DELTA[:-3])
        self.assertIn("applied delta: truncated or corrupt ProtocolAppliedWaveletDelta", str(e))

    def test_missing_required_field_is_named(self):
        e = self.assertRaises(WireError, convert.parse_wavelet_delta, b"\x12\x03a@b")
        self.assertIn("missing required field(s): hashed_version", str(e))

    def test_empty_bytes_are_not_an_applied_delta(self):
        e = self.assertRaises(WireError, convert.parse_applied_delta, b"")
        self.assertIn("signed_original_delta", str(e))

    def test_inner_delta_garbage_names_where(self):
        signed = SignedDelta(b"\xff\xff\xff")
        e = self.assertRaises(WireError, convert.parse_signed_delta,
                              convert.serialize_signed_delta(signed))
        self.assertIn("signed delta, delta: truncated or corrupt", str(e))

    def test_operation_with_no_field(self):
        message = pb.ProtocolWaveletDelta()
        convert.hashed_version_to_proto(HashedVersion(0, b""), message.hashed_version)
        message.author = "a@b.test"
        message.operation.add()
        e = self.assertRaises(WireError, convert.parse_wavelet_delta, message.SerializeToString())
        self.assertIn("operation 0 must set exactly one field, has none", str(e))

    def test_component_with_two_fields(self):
        message = pb.ProtocolDocumentOperation()
        c = message.component.add()
        c.retain_item_count = 1
        c.characters = "x"
        e = self.assertRaises(WireError, convert.docop_from_proto, message)
        self.assertIn("component 0 must set exactly one field, has characters, retain_item_count",
                      str(e))

    def test_bad_participant_names_the_operation(self):
        message = convert.wavelet_delta_to_proto(sample_delta())
        message.operation[1].remove_participant = "nobody"
        e = self.assertRaises(InvalidParticipantId, convert.parse_wavelet_delta,
                              message.SerializeToString())
        self.assertIn("wavelet delta, operation 1: participant address 'nobody' has no '@'", str(e))

    def test_bad_author(self):
        message = convert.wavelet_delta_to_proto(sample_delta())
        message.author = "bob"
        e = self.assertRaises(InvalidParticipantId, convert.parse_wavelet_delta,
                              message.SerializeToString())
        self.assertIn("author", str(e))

    def test_invalid_utf8_string(self):
        data = b"\x0a\x04\x08\x00\x12\x00" + b"\x12\x05a\xff@bc"
        e = self.assertRaises(WireError, convert.parse_wavelet_delta, data)
        self.assertIn("author: invalid UTF-8 at byte 1", str(e))

    def test_ill_formed_document_operation(self):
        message = convert.wavelet_delta_to_proto(sample_delta())
        message.operation[3].mutate_document.document_operation.component[5].retain_item_count = 0
        e = self.assertRaises(IllFormedOperation, convert.parse_wavelet_delta,
                              message.SerializeToString())
        self.assertIn("operation 3, document 'b+1'", str(e))

    def test_unknown_hash_algorithm_enum(self):
        data = b"\x08\x07\x12\x06a.test\x1a\x01x"
        e = self.assertRaises(WireError, convert.parse_signer_info, data)
        self.assertIn("hash_algorithm", str(e))

    def test_not_bytes(self):
        self.assertRaises(WireError, convert.parse_applied_delta, "text")


class Base64Tests(SynchronousTestCase):

    def test_encode_standard_alphabet_with_padding(self):
        self.assertEqual(convert.b64encode(b"\xfb\xff"), "+/8=")

    def test_decode_strips_whitespace_around_cdata(self):
        self.assertEqual(convert.b64decode("\n  +/8=\n  "), b"\xfb\xff")

    def test_decode_strips_whitespace_inside(self):
        self.assertEqual(convert.b64decode("aGVs\r\nbG8="), b"hello")

    def test_decode_accepts_missing_padding(self):
        self.assertEqual(convert.b64decode("aGVsbG8"), b"hello")

    def test_decode_accepts_bytes(self):
        self.assertEqual(convert.b64decode(b"aGVsbG8="), b"hello")

    def test_garbage_names_the_character(self):
        e = self.assertRaises(WireError, convert.b64decode, "aGV*bG8=", "history-hash")
        self.assertIn("bad base64 in history-hash (character '*' at 3)", str(e))

    def test_url_safe_alphabet_is_garbage(self):
        self.assertRaises(WireError, convert.b64decode, "-_8=")

    def test_impossible_length_is_garbage(self):
        self.assertRaises(WireError, convert.b64decode, "aGVsb")

    def test_non_ascii_is_garbage(self):
        self.assertRaises(WireError, convert.b64decode, "aGVs\u00e9")


EXAMPLES = int(os.environ.get("HYPOTHESIS_EXAMPLES", "1000"))
_PARSERS = (convert.parse_applied_delta, convert.parse_signed_delta,
            convert.parse_wavelet_delta, convert.parse_signer_info, convert.parse_hashed_version)


def _valid_applied_delta():
    signed = SignedDelta(convert.serialize_wavelet_delta(sample_delta()),
                         (Signature(b"sig", b"id"),))
    return convert.build_applied_delta(signed, HashedVersion(7, b"\x01" * 20), 4, 99)


class ParserFuzzTests(SynchronousTestCase):
    """Whatever the bytes, parsing raises a model error or returns a value; nothing else."""

    def parse_all(self, data):
        for parse in _PARSERS:
            try:
                parse(data)
            except ModelError:
                pass

    @settings(max_examples=EXAMPLES, deadline=None)
    @given(st.binary(max_size=200))
    def test_random_bytes_raise_only_model_errors(self, data):
        self.parse_all(data)

    @settings(max_examples=EXAMPLES, deadline=None)
    @given(st.data())
    def test_mutated_applied_delta_raises_only_model_errors(self, data):
        raw = bytearray(_valid_applied_delta().applied_delta_bytes)
        for _ in range(data.draw(st.integers(1, 4))):
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] = data.draw(st.integers(0, 255))
        cut = data.draw(st.integers(0, len(raw)))
        self.parse_all(bytes(raw[:cut]))
        self.parse_all(bytes(raw))

    @settings(max_examples=EXAMPLES, deadline=None)
    @given(st.text(max_size=40))
    def test_random_base64_text_raises_only_wire_errors(self, text):
        try:
            convert.b64decode(text)
        except WireError:
            pass


_names = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True)
_texts = st.text(st.characters(max_codepoint=0xFFFC, blacklist_categories=("Cs",)),
                 min_size=1, max_size=12)
# A participant's domain is a host name: no '_' (wavebox.model.ids.host_name).
_hosts = st.from_regex(r"[a-z][a-z0-9-]{0,5}[a-z0-9]", fullmatch=True)
_participants = st.builds(lambda n, d: f"{n}@{d}.test", _names, _hosts)


@st.composite
def _insertion_ops(draw):
    builder = DocOpBuilder()
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            builder.characters(draw(_texts))
        else:
            attrs = draw(st.dictionaries(_names, _texts, max_size=3))
            builder.element_start(draw(_names), attrs).element_end()
    op = builder.build()
    assume(docop.is_well_formed(op))
    return op


_operations = st.one_of(
    st.builds(AddParticipant, _participants),
    st.builds(RemoveParticipant, _participants),
    st.just(NoOp()),
    st.builds(MutateDocument, st.builds(lambda t: "b+" + t, _names), _insertion_ops()))


class WireRoundTripPropertyTests(SynchronousTestCase):

    @settings(max_examples=EXAMPLES, deadline=None)
    @given(_participants, st.integers(0, 2 ** 63 - 1), st.binary(max_size=24),
           st.lists(_operations, max_size=5))
    def test_random_deltas_round_trip_byte_identically(self, author, version, history_hash, ops):
        delta = WaveletDelta(author, HashedVersion(version, history_hash), ops)
        data = convert.serialize_wavelet_delta(delta)
        parsed = convert.parse_wavelet_delta(data)
        self.assertEqual(parsed, delta)
        self.assertEqual(convert.serialize_wavelet_delta(parsed), data)
