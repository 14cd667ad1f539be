"""
Model values to and from the federation protocol buffers (wave protocol
notes section 2; WIAB ``CoreWaveletOperationSerializer``,
``ProtocolHashedVersionFactory``, ``AppliedDeltaUtil``).

Two rules from the protocol shape this module:

* Bytes are the truth.  Parsing an applied delta keeps the exact bytes it
  was given, and the exact inner ``delta`` bytes of its signed delta, so that
  hashes and signatures are always computed over what the peer sent.
  Nothing here re-serialises a received message.
* When *we* build a message we write proto2 the way Java does: a field that
  is set is written even when it is zero (``ProtocolHashedVersion{version:
  0}`` is ``08 00 ...``), and fields come in field-number order.  The
  generated python-protobuf code does both for proto2 messages.

Every parse failure is a ``WireError`` (or the specific model error for a
well-formed message holding a bad value, e.g. ``InvalidParticipantId``)
whose message says what was wrong and where.
"""

import base64
import binascii
import copy

from google.protobuf.message import DecodeError, EncodeError

from wavebox.model import docop
from wavebox.model.delta import (
    SHA1_RSA, AppliedDelta, HashedVersion, Signature, SignedDelta, WaveletDelta)
from wavebox.model.errors import ModelError, WireError
from wavebox.model.ids import ParticipantId
from wavebox.model.operations import AddParticipant, MutateDocument, NoOp, RemoveParticipant
from wavebox.model.signer import SHA256, SHA512, SignerInfo
from wavebox.wire import federation_pb2 as pb

_HASH_ALGORITHMS = {SHA256: pb.ProtocolSignerInfo.SHA256, SHA512: pb.ProtocolSignerInfo.SHA512}
_HASH_ALGORITHM_NAMES = {v: k for k, v in _HASH_ALGORITHMS.items()}
_SIGNATURE_ALGORITHMS = {SHA1_RSA: pb.ProtocolSignature.SHA1_RSA}
_SIGNATURE_ALGORITHM_NAMES = {v: k for k, v in _SIGNATURE_ALGORITHMS.items()}


_B64_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


# --- base64 (Java commons-codec encodeBase64 / lenient decodeBase64) ----------------

def b64encode(data):
    """Standard alphabet, ``=`` padding, no line breaks: what the Java side writes."""
    return base64.b64encode(bytes(data)).decode("ascii")


def b64decode(text, what="base64 data"):
    """
    Decode base64 from XML, leniently as the Java side does about layout:
    whitespace anywhere (the SPEC examples wrap CDATA in newlines) and
    missing ``=`` padding are fine; any other character is a WireError.
    """
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("ascii")
        except UnicodeDecodeError:
            raise WireError(f"bad base64 in {what}: not ASCII") from None
    if not isinstance(text, str):
        raise WireError(f"bad base64 in {what}: expected text, not {type(text).__name__}")
    cleaned = "".join(text.split())
    stripped = cleaned.rstrip("=")
    bad = next((i for i, ch in enumerate(stripped) if ch not in _B64_ALPHABET), None)
    if bad is not None:
        raise WireError(f"bad base64 in {what} (character {stripped[bad]!r} at {bad})")
    if len(stripped) % 4 == 1:
        raise WireError(f"bad base64 in {what}: {len(stripped)} characters cannot be base64")
    if len(cleaned) - len(stripped) > 2:
        raise WireError(f"bad base64 in {what}: too much '=' padding")
    try:
        return base64.b64decode(stripped + "=" * (-len(stripped) % 4), validate=True)
    except (binascii.Error, ValueError) as e:
        raise WireError(f"bad base64 in {what}: {e}") from None


# --- helpers ------------------------------------------------------------------------

def _at(where, error):
    """The same model error, its message prefixed with where it happened."""
    located = copy.copy(error)
    located.args = (f"{where}: {error}",)
    return located


def _parse(message_class, data, what):
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise WireError(f"{what}: expected bytes, not {type(data).__name__}")
    message = message_class()
    try:
        message.ParseFromString(bytes(data))
    except (DecodeError, RuntimeError, ValueError) as e:
        raise WireError(f"{what}: truncated or corrupt {message_class.__name__} "
                        f"({len(data)} bytes): {e}") from None
    if not message.IsInitialized():
        missing = ", ".join(message.FindInitializationErrors())
        raise WireError(f"{what}: {message_class.__name__} is missing required field(s): {missing}")
    return message


def _serialize(message, what):
    try:
        return message.SerializeToString()
    except (EncodeError, ValueError) as e:
        raise WireError(f"cannot serialise {what}: {e}") from None


def _str(value, where):
    """A proto2 string field: python-protobuf hands back bytes when they are not UTF-8."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as e:
            raise WireError(f"{where}: invalid UTF-8 at byte {e.start}") from None
    return value


def _only_field(message, what):
    """The name of the one field set in a 'exactly one of' message."""
    fields = [f.name for f, _ in message.ListFields()]
    if len(fields) != 1:
        raise WireError(f"{what} must set exactly one field, has "
                        f"{', '.join(fields) if fields else 'none'}")
    return fields[0]


# --- hashed versions -------------------------------------------------------------------

def hashed_version_to_proto(hashed_version, message=None):
    message = pb.ProtocolHashedVersion() if message is None else message
    message.version = hashed_version.version
    message.history_hash = hashed_version.history_hash
    return message


def hashed_version_from_proto(message, where="hashed version"):
    try:
        return HashedVersion(message.version, message.history_hash)
    except ModelError as e:
        raise _at(where, e) from None


def serialize_hashed_version(hashed_version):
    return _serialize(hashed_version_to_proto(hashed_version), "hashed version")


def parse_hashed_version(data):
    return hashed_version_from_proto(
        _parse(pb.ProtocolHashedVersion, data, "hashed version"))


# --- document operations ------------------------------------------------------------

def _pairs_to_proto(repeated, pairs):
    for key, value in pairs:
        kv = repeated.add()
        kv.key = key
        kv.value = value


def _updates_to_proto(repeated, updates):
    for key, old, new in updates:
        kvu = repeated.add()
        kvu.key = key
        if old is not None:
            kvu.old_value = old
        if new is not None:
            kvu.new_value = new


def _component_to_proto(component, message):
    if isinstance(component, docop.Retain):
        message.retain_item_count = component.count
    elif isinstance(component, docop.Characters):
        message.characters = component.text
    elif isinstance(component, docop.ElementStart):
        message.element_start.type = component.type
        _pairs_to_proto(message.element_start.attribute, component.attributes)
    elif isinstance(component, docop.ElementEnd):
        message.element_end = True
    elif isinstance(component, docop.DeleteCharacters):
        message.delete_characters = component.text
    elif isinstance(component, docop.DeleteElementStart):
        message.delete_element_start.type = component.type
        _pairs_to_proto(message.delete_element_start.attribute, component.attributes)
    elif isinstance(component, docop.DeleteElementEnd):
        message.delete_element_end = True
    elif isinstance(component, docop.ReplaceAttributes):
        sub = message.replace_attributes
        if not component.old and not component.new:
            sub.empty = True
        _pairs_to_proto(sub.old_attribute, component.old)
        _pairs_to_proto(sub.new_attribute, component.new)
    elif isinstance(component, docop.UpdateAttributes):
        sub = message.update_attributes
        if not component.updates:
            sub.empty = True
        _updates_to_proto(sub.attribute_update, component.updates)
    elif isinstance(component, docop.AnnotationBoundary):
        sub = message.annotation_boundary
        if not component.ends and not component.changes:
            sub.empty = True
        sub.end.extend(component.ends)
        _updates_to_proto(sub.change, component.changes)
    else:
        raise WireError(f"not a document operation component: {component!r}")


def docop_to_proto(op, message=None):
    message = pb.ProtocolDocumentOperation() if message is None else message
    for component in op.components:
        _component_to_proto(component, message.component.add())
    return message


def _pairs(repeated, where):
    return tuple((_str(kv.key, where), _str(kv.value, where)) for kv in repeated)


def _updates(repeated, where):
    return tuple((_str(u.key, where),
                  _str(u.old_value, where) if u.HasField("old_value") else None,
                  _str(u.new_value, where) if u.HasField("new_value") else None)
                 for u in repeated)


def docop_from_proto(message, where="document operation"):
    """A DocOp from its protobuf; checks it is well-formed (protocol notes 6.3)."""
    builder = docop.DocOpBuilder()
    for i, c in enumerate(message.component):
        at = f"{where}, component {i}"
        kind = _only_field(c, at)
        if kind == "retain_item_count":
            builder.retain(c.retain_item_count)
        elif kind == "characters":
            builder.characters(_str(c.characters, at))
        elif kind == "element_start":
            builder.element_start(_str(c.element_start.type, at),
                                  _pairs(c.element_start.attribute, at))
        elif kind == "element_end":
            builder.element_end()
        elif kind == "delete_characters":
            builder.delete_characters(_str(c.delete_characters, at))
        elif kind == "delete_element_start":
            builder.delete_element_start(_str(c.delete_element_start.type, at),
                                         _pairs(c.delete_element_start.attribute, at))
        elif kind == "delete_element_end":
            builder.delete_element_end()
        elif kind == "replace_attributes":
            # `empty` is read first, as the Java deserialiser does.
            sub = c.replace_attributes
            if sub.empty:
                builder.replace_attributes((), ())
            else:
                builder.replace_attributes(_pairs(sub.old_attribute, at),
                                           _pairs(sub.new_attribute, at))
        elif kind == "update_attributes":
            sub = c.update_attributes
            builder.update_attributes(() if sub.empty else _updates(sub.attribute_update, at))
        elif kind == "annotation_boundary":
            sub = c.annotation_boundary
            if sub.empty:
                builder.annotation_boundary((), ())
            else:
                builder.annotation_boundary(tuple(_str(e, at) for e in sub.end),
                                            _updates(sub.change, at))
    try:
        op = builder.build()
        docop.check_well_formed(op)
    except ModelError as e:
        raise _at(where, e) from None
    except (TypeError, ValueError) as e:
        raise WireError(f"{where}: {e}") from None
    return op


# --- wavelet operations ---------------------------------------------------------------

def operation_to_proto(op, message=None):
    message = pb.ProtocolWaveletOperation() if message is None else message
    if isinstance(op, AddParticipant):
        message.add_participant = op.participant.address
    elif isinstance(op, RemoveParticipant):
        message.remove_participant = op.participant.address
    elif isinstance(op, NoOp):
        message.no_op = True
    elif isinstance(op, MutateDocument):
        message.mutate_document.document_id = op.document_id
        # Present even with no components: the field is required.
        message.mutate_document.document_operation.SetInParent()
        docop_to_proto(op.operation, message.mutate_document.document_operation)
    else:
        raise WireError(f"not a wavelet operation: {op!r}")
    return message


def operation_from_proto(message, where="wavelet operation"):
    kind = _only_field(message, where)
    try:
        if kind == "add_participant":
            return AddParticipant(ParticipantId(_str(message.add_participant, where)))
        if kind == "remove_participant":
            return RemoveParticipant(ParticipantId(_str(message.remove_participant, where)))
        if kind == "no_op":
            return NoOp()
        mutation = message.mutate_document
        document_id = _str(mutation.document_id, f"{where}, document id")
        return MutateDocument(document_id, docop_from_proto(
            mutation.document_operation, f"{where}, document {document_id!r}"))
    except ModelError as e:
        if str(e).startswith(where):
            raise
        raise _at(where, e) from None


# --- deltas -------------------------------------------------------------------------------

def wavelet_delta_to_proto(delta, message=None):
    message = pb.ProtocolWaveletDelta() if message is None else message
    hashed_version_to_proto(delta.hashed_version, message.hashed_version)
    message.author = delta.author.address
    for op in delta.operations:
        operation_to_proto(op, message.operation.add())
    message.address_path.extend(delta.address_path)
    return message


def serialize_wavelet_delta(delta):
    """The bytes to sign, hash and send: done once, when the delta is first submitted."""
    return _serialize(wavelet_delta_to_proto(delta), "wavelet delta")


def wavelet_delta_from_proto(message, where="wavelet delta"):
    try:
        author = ParticipantId(_str(message.author, f"{where}, author"))
    except ModelError as e:
        raise _at(f"{where}, author", e) from None
    version = hashed_version_from_proto(message.hashed_version, f"{where}, hashed version")
    ops = [operation_from_proto(op, f"{where}, operation {i}")
           for i, op in enumerate(message.operation)]
    path = tuple(_str(a, f"{where}, address path") for a in message.address_path)
    return WaveletDelta(author, version, ops, path)


def parse_wavelet_delta(data, where="wavelet delta"):
    return wavelet_delta_from_proto(_parse(pb.ProtocolWaveletDelta, data, where), where)


# --- signed deltas ---------------------------------------------------------------------

def _signature_to_proto(signature, message):
    message.signature_bytes = signature.signature_bytes
    message.signer_id = signature.signer_id
    try:
        message.signature_algorithm = _SIGNATURE_ALGORITHMS[signature.algorithm]
    except KeyError:
        raise WireError(f"unknown signature algorithm {signature.algorithm!r}") from None


def signed_delta_to_proto(signed_delta, message=None):
    message = pb.ProtocolSignedDelta() if message is None else message
    message.delta = signed_delta.delta_bytes
    for signature in signed_delta.signatures:
        _signature_to_proto(signature, message.signature.add())
    return message


def serialize_signed_delta(signed_delta):
    return _serialize(signed_delta_to_proto(signed_delta), "signed delta")


def signed_delta_from_proto(message, where="signed delta"):
    """The signed delta, its ``delta_bytes`` exactly as carried, and the parsed delta."""
    delta = parse_wavelet_delta(message.delta, f"{where}, delta")
    signatures = tuple(
        Signature(s.signature_bytes, s.signer_id,
                  _SIGNATURE_ALGORITHM_NAMES[s.signature_algorithm])
        for s in message.signature)
    return SignedDelta(message.delta, signatures, delta)


def parse_signed_delta(data, where="signed delta"):
    return signed_delta_from_proto(_parse(pb.ProtocolSignedDelta, data, where), where)


# --- applied deltas -----------------------------------------------------------------

def build_applied_delta(signed_delta, applied_at, operations_applied, application_timestamp):
    """
    Serialise a new applied delta (host side) and return it as an
    AppliedDelta holding those bytes: the history hash chains over them.
    ``hashed_version_applied_at`` is always written, as FedOne and WIAB do.
    """
    message = pb.ProtocolAppliedWaveletDelta()
    signed_delta_to_proto(signed_delta, message.signed_original_delta)
    hashed_version_to_proto(applied_at, message.hashed_version_applied_at)
    message.operations_applied = operations_applied
    message.application_timestamp = application_timestamp
    data = _serialize(message, "applied delta")
    return AppliedDelta(signed_delta, applied_at, operations_applied, application_timestamp, data)


def parse_applied_delta(data, where="applied delta"):
    """
    An AppliedDelta keeping ``data`` as its ``applied_delta_bytes`` and the
    inner signed delta's ``delta`` bytes exactly as received.  A missing
    ``hashed_version_applied_at`` means the inner delta's target version.
    """
    message = _parse(pb.ProtocolAppliedWaveletDelta, data, where)
    signed = signed_delta_from_proto(message.signed_original_delta,
                                     f"{where}, signed original delta")
    if message.HasField("hashed_version_applied_at"):
        applied_at = hashed_version_from_proto(message.hashed_version_applied_at,
                                               f"{where}, hashed version applied at")
    else:
        applied_at = signed.delta.hashed_version
    if message.operations_applied < 0:
        raise WireError(f"{where}: negative operations_applied {message.operations_applied}")
    return AppliedDelta(signed, applied_at, message.operations_applied,
                        message.application_timestamp, bytes(data))


# --- signer info --------------------------------------------------------------------

def signer_info_to_proto(info, message=None):
    message = pb.ProtocolSignerInfo() if message is None else message
    message.hash_algorithm = _HASH_ALGORITHMS[info.hash_algorithm]
    message.domain = info.domain
    message.certificate.extend(info.certificates)
    return message


def serialize_signer_info(info):
    return _serialize(signer_info_to_proto(info), "signer info")


def signer_info_from_proto(message, where="signer info"):
    try:
        return SignerInfo(_str(message.domain, f"{where}, domain"), tuple(message.certificate),
                          _HASH_ALGORITHM_NAMES[message.hash_algorithm])
    except ModelError as e:
        raise _at(where, e) from None


def parse_signer_info(data, where="signer info"):
    return signer_info_from_proto(_parse(pb.ProtocolSignerInfo, data, where), where)

