"""
The server model's operations and deltas to and from the JSON the web
client speaks on its WebSocket (docs/web.rst, "Live typing: the client's
OT").  The shape follows the model one to one: each object has the fields of
its model class under the same names, and document operations use the
component notation of the protocol notes' vectors (wave-protocol.md 9),
which the browser's OT (``static/ot/``) works on directly.

JSON objects are unordered (RFC 8259), so attribute and annotation maps
are read back in Java order whatever order their keys came in; everything
else (component order, values) is kept exactly, and a document operation
must be well-formed.  Anything else is a :class:`JsonShapeError` naming
where it went wrong, e.g. ``operations[1].mutate_document.operation[3]``.
"""

from wavebox.model import docop
from wavebox.model.delta import HashedVersion, TransformedDelta, WaveletDelta
from wavebox.model.errors import ModelError
from wavebox.model.ids import ParticipantId
from wavebox.model.operations import AddParticipant, MutateDocument, NoOp, RemoveParticipant
from wavebox.model.vectors import op_to_json
from wavebox.wire.convert import b64decode, b64encode

__all__ = [
    "JsonShapeError",
    "docop_to_json", "docop_from_json",
    "hashed_version_to_json", "hashed_version_from_json",
    "operation_to_json", "operation_from_json",
    "delta_to_json", "delta_from_json",
    "transformed_delta_to_json", "transformed_delta_from_json",
    "submit_result_to_json", "wavelet_to_json",
]


class JsonShapeError(ModelError):
    """JSON from a web client that is not the shape of an operation or delta."""


def _fail(where, message):
    raise JsonShapeError(f"{where}: {message}" if where else message)


def _object(value, where, fields, optional=()):
    if not isinstance(value, dict):
        _fail(where, f"expected an object, not {_json_type(value)}")
    missing = [f for f in fields if f not in value]
    if missing:
        _fail(where, f"missing {', '.join(missing)}")
    extra = sorted(set(value) - set(fields) - set(optional))
    if extra:
        _fail(where, f"unknown field(s) {', '.join(extra)}")
    return value


def _json_type(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _string(value, where):
    if not isinstance(value, str):
        _fail(where, f"expected a string, not {_json_type(value)}")
    return value


def _optional_string(value, where):
    return None if value is None else _string(value, where)


def _integer(value, where):
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(where, f"expected an integer, not {_json_type(value)}")
    return value


def _list(value, where):
    if not isinstance(value, list):
        _fail(where, f"expected a list, not {_json_type(value)}")
    return value


def _participant(value, where):
    try:
        return ParticipantId(_string(value, where))
    except ModelError as e:
        _fail(where, str(e))


# --- document operations --------------------------------------------------------------

def docop_to_json(op):
    """The components of ``op`` in the vectors' notation (maps with keys in Java order)."""
    return op_to_json(op)


def _attributes(value, where):
    if not isinstance(value, dict):
        _fail(where, f"expected an object of attributes, not {_json_type(value)}")
    return {_string(k, where): _string(v, f"{where}.{k}") for k, v in value.items()}


def _updates(value, where):
    if not isinstance(value, dict):
        _fail(where, f"expected an object of [old, new] updates, not {_json_type(value)}")
    out = {}
    for key, pair in value.items():
        here = f"{where}.{key}"
        if not isinstance(pair, list) or len(pair) != 2:
            _fail(here, "expected [old, new]")
        out[key] = (_optional_string(pair[0], here), _optional_string(pair[1], here))
    return out


def _element(value, where):
    if not isinstance(value, list) or len(value) != 2:
        _fail(where, "expected [type, {attributes}]")
    return _string(value[0], where), _attributes(value[1], where)


def _component(value, where):
    if not isinstance(value, dict) or len(value) != 1:
        _fail(where, "a component is an object with exactly one key")
    (kind, body), = value.items()
    here = f"{where}.{kind}"
    if kind == "r":
        return docop.Retain(_integer(body, here))
    if kind == "c":
        return docop.Characters(_string(body, here))
    if kind == "dc":
        return docop.DeleteCharacters(_string(body, here))
    if kind == "es":
        return docop.ElementStart(*_element(body, here))
    if kind == "des":
        return docop.DeleteElementStart(*_element(body, here))
    if kind in ("ee", "dee"):
        if body is not True:
            _fail(here, "expected true")
        return docop.ELEMENT_END if kind == "ee" else docop.DELETE_ELEMENT_END
    if kind == "ra":
        if not isinstance(body, list) or len(body) != 2:
            _fail(here, "expected [{old attributes}, {new attributes}]")
        return docop.ReplaceAttributes(_attributes(body[0], f"{here}[0]"),
                                       _attributes(body[1], f"{here}[1]"))
    if kind == "ua":
        return docop.UpdateAttributes(_updates(body, here))
    if kind == "ab":
        _object(body, here, (), ("end", "change"))
        ends = [_string(k, f"{here}.end") for k in _list(body.get("end", []), f"{here}.end")]
        if len(set(ends)) != len(ends):
            _fail(f"{here}.end", "a key is ended twice")
        return docop.AnnotationBoundary(tuple(sorted(ends, key=docop.utf16_key)),
                                        _updates(body.get("change", {}), f"{here}.change"))
    _fail(where, f"unknown component kind {kind!r}")


def docop_from_json(value, where="operation"):
    """A well-formed DocOp from its JSON list of components."""
    components = [_component(c, f"{where}[{i}]") for i, c in enumerate(_list(value, where))]
    op = docop.DocOp(components)
    try:
        docop.check_well_formed(op)
    except ModelError as e:
        _fail(where, str(e))
    return op


# --- hashed versions ----------------------------------------------------------------

def hashed_version_to_json(hashed_version):
    return {"version": hashed_version.version,
            "history_hash": b64encode(hashed_version.history_hash)}


def hashed_version_from_json(value, where="hashed_version"):
    _object(value, where, ("version", "history_hash"))
    text = _string(value["history_hash"], f"{where}.history_hash")
    version = _integer(value["version"], f"{where}.version")
    try:
        return HashedVersion(version, b64decode(text, f"{where}.history_hash"))
    except ModelError as e:
        _fail(where, str(e))


# --- wavelet operations --------------------------------------------------------------

def operation_to_json(op):
    if isinstance(op, AddParticipant):
        return {"add_participant": op.participant.address}
    if isinstance(op, RemoveParticipant):
        return {"remove_participant": op.participant.address}
    if isinstance(op, NoOp):
        return {"no_op": True}
    if isinstance(op, MutateDocument):
        return {"mutate_document": {"document_id": op.document_id,
                                    "operation": docop_to_json(op.operation)}}
    raise JsonShapeError(f"not a wavelet operation: {op!r}")


def operation_from_json(value, where="operation"):
    if not isinstance(value, dict) or len(value) != 1:
        _fail(where, "a wavelet operation is an object with exactly one key")
    (kind, body), = value.items()
    here = f"{where}.{kind}"
    if kind == "add_participant":
        return AddParticipant(_participant(body, here))
    if kind == "remove_participant":
        return RemoveParticipant(_participant(body, here))
    if kind == "no_op":
        if body is not True:
            _fail(here, "expected true")
        return NoOp()
    if kind == "mutate_document":
        _object(body, here, ("document_id", "operation"))
        document_id = _string(body["document_id"], f"{here}.document_id")
        if not document_id:
            _fail(f"{here}.document_id", "a document id is not empty")
        return MutateDocument(document_id, docop_from_json(body["operation"], f"{here}.operation"))
    _fail(where, f"unknown wavelet operation {kind!r}")


def _operations(value, where):
    return tuple(operation_from_json(op, f"{where}[{i}]")
                 for i, op in enumerate(_list(value, where)))


# --- deltas ---------------------------------------------------------------------------

def delta_to_json(delta):
    """A WaveletDelta as a client submits it (its address path is always empty)."""
    if delta.address_path:
        raise JsonShapeError("a web client's delta has no address path")
    return {"author": delta.author.address,
            "hashed_version": hashed_version_to_json(delta.hashed_version),
            "operations": [operation_to_json(op) for op in delta.operations]}


def delta_from_json(value, where="delta"):
    """The WaveletDelta a web client submits."""
    _object(value, where, ("author", "hashed_version", "operations"))
    return WaveletDelta(_participant(value["author"], f"{where}.author"),
                        hashed_version_from_json(value["hashed_version"],
                                                 f"{where}.hashed_version"),
                        _operations(value["operations"], f"{where}.operations"))


def transformed_delta_to_json(delta):
    """A delta as it changed the wavelet: what every client of the wavelet is sent."""
    return {"author": delta.author.address,
            "applied_at": hashed_version_to_json(delta.applied_at),
            "resulting_version": hashed_version_to_json(delta.resulting_version),
            "operations": [operation_to_json(op) for op in delta.operations],
            "application_timestamp": delta.application_timestamp}


def transformed_delta_from_json(value, where="delta"):
    _object(value, where, ("author", "applied_at", "resulting_version", "operations",
                           "application_timestamp"))
    try:
        return TransformedDelta(
            _participant(value["author"], f"{where}.author"),
            hashed_version_from_json(value["applied_at"], f"{where}.applied_at"),
            hashed_version_from_json(value["resulting_version"], f"{where}.resulting_version"),
            _operations(value["operations"], f"{where}.operations"),
            _integer(value["application_timestamp"], f"{where}.application_timestamp"))
    except JsonShapeError:
        raise
    except ModelError as e:
        _fail(where, str(e))


def submit_result_to_json(result):
    """The answer to the submitter (wavebox.server.interfaces.SubmitResult)."""
    return {"operations_applied": result.operations_applied,
            "hashed_version_after": hashed_version_to_json(result.hashed_version_after),
            "timestamp_ms": result.timestamp_ms,
            "duplicate": result.duplicate}


def wavelet_to_json(state):
    """What a client starts from: participants, documents and the hashed version."""
    return {"hashed_version": hashed_version_to_json(state.hashed_version),
            "participants": [p.address for p in state.participants],
            "documents": {doc_id: docop_to_json(doc.to_op())
                          for doc_id, doc in sorted(state.documents.items())}}
