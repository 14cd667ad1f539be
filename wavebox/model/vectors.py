"""
The JSON notation of document operations used by the differential vectors
(wave-protocol.md section 9, tests/data/README of the Java vectors), and a
runner that checks our operations against the Java reference's:

    python -m wavebox.model.vectors tests/data/ot-*.json

Each case is recognised by its keys: ``client``/``server`` (transform),
``a``/``b`` (compose) or ``op``/``well_formed`` (well-formedness and
validity).  One line is printed per failure, then ``N passed, M failed``.
"""

import json
import sys

from wavebox.model.docop import (
    AnnotationBoundary,
    Characters,
    DeleteCharacters,
    DeleteElementEnd,
    DeleteElementStart,
    DocOp,
    Document,
    ElementEnd,
    ElementStart,
    Retain,
    ReplaceAttributes,
    UpdateAttributes,
    DELETE_ELEMENT_END,
    ELEMENT_END,
    check_well_formed,
    compose,
    normalize,
    transform,
)
from wavebox.model.errors import (
    ComposeError,
    IllFormedOperation,
    InvalidOperation,
    ModelError,
    OperationMismatch,
    TransformError,
)

__all__ = ["op_from_json", "op_to_json", "check_case", "run_files", "main"]


class VectorFormatError(ModelError):
    """A vector file or component does not follow the notation."""


def _pairs(obj):
    if not isinstance(obj, dict):
        raise VectorFormatError("expected an object of attributes, got %r" % (obj,))
    return tuple((k, v) for k, v in obj.items())


def _updates(obj):
    if not isinstance(obj, dict):
        raise VectorFormatError("expected an object of updates, got %r" % (obj,))
    out = []
    for k, v in obj.items():
        if not isinstance(v, list) or len(v) != 2:
            raise VectorFormatError("expected [old, new] for %r, got %r" % (k, v))
        out.append((k, v[0], v[1]))
    return tuple(out)


def component_from_json(obj):
    """One component from its JSON object; orders inside are kept as written."""
    if not isinstance(obj, dict) or len(obj) != 1:
        raise VectorFormatError("a component is an object with one key, got %r" % (obj,))
    (kind, value), = obj.items()
    try:
        if kind == "r":
            return Retain(value)
        if kind == "c":
            return Characters(value)
        if kind == "dc":
            return DeleteCharacters(value)
        if kind == "es":
            return ElementStart(value[0], _pairs(value[1]))
        if kind == "ee":
            return ELEMENT_END
        if kind == "des":
            return DeleteElementStart(value[0], _pairs(value[1]))
        if kind == "dee":
            return DELETE_ELEMENT_END
        if kind == "ra":
            return ReplaceAttributes(_pairs(value[0]), _pairs(value[1]))
        if kind == "ua":
            return UpdateAttributes(_updates(value))
        if kind == "ab":
            return AnnotationBoundary(tuple(value.get("end", ())),
                                      _updates(value.get("change", {})))
    except (TypeError, IndexError, KeyError, AttributeError) as e:
        raise VectorFormatError("malformed component %r: %s" % (obj, e))
    raise VectorFormatError("unknown component kind %r" % (kind,))


def op_from_json(components):
    """A DocOp from its JSON list of components."""
    if not isinstance(components, list):
        raise VectorFormatError("an operation is a list of components, got %r" % (components,))
    return DocOp(component_from_json(c) for c in components)


def component_to_json(c):
    t = type(c)
    if t is Retain:
        return {"r": c.count}
    if t is Characters:
        return {"c": c.text}
    if t is DeleteCharacters:
        return {"dc": c.text}
    if t is ElementStart:
        return {"es": [c.type, dict(c.attributes)]}
    if t is ElementEnd:
        return {"ee": True}
    if t is DeleteElementStart:
        return {"des": [c.type, dict(c.attributes)]}
    if t is DeleteElementEnd:
        return {"dee": True}
    if t is ReplaceAttributes:
        return {"ra": [dict(c.old), dict(c.new)]}
    if t is UpdateAttributes:
        return {"ua": {k: [o, n] for k, o, n in c.updates}}
    if t is AnnotationBoundary:
        return {"ab": {"end": list(c.ends),
                       "change": {k: [o, n] for k, o, n in c.changes}}}
    raise VectorFormatError("not a component: %r" % (c,))


def op_to_json(op):
    """The JSON list of components of ``op``."""
    return [component_to_json(c) for c in op]
