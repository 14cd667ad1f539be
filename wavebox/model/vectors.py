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


# --------------------------------------------------------------------------
# Checking cases

_RESULTS = ("VALID", "INVALID_DOCUMENT", "ILL_FORMED")


def case_kind(case):
    """'transform', 'compose' or 'wellformed', from the keys of ``case``."""
    if not isinstance(case, dict):
        raise VectorFormatError("a case is an object, got %r" % (type(case).__name__,))
    if "client" in case and "server" in case:
        return "transform"
    if "a" in case and "b" in case:
        return "compose"
    if "op" in case and "well_formed" in case:
        return "wellformed"
    raise VectorFormatError("cannot tell the kind of case with keys %s" % (sorted(case),))


def _document(ops_json):
    return Document.from_op(op_from_json(ops_json))


def _check_transform(case):
    client = op_from_json(case["client"])
    server = op_from_json(case["server"])
    if case.get("expect") == "error":
        try:
            transform(client, server)
        except TransformError:
            return []
        return ["expected TransformError, got a result"]
    try:
        client_t, server_t = transform(client, server)
    except ModelError as e:
        return ["transform raised %s: %s" % (type(e).__name__, e)]
    failures = []
    if "doc" in case:
        doc = _document(case["doc"])
        try:
            via_client = doc.apply(client).apply(server_t)
        except InvalidOperation as e:
            return ["server' does not apply after client: %s" % (e,)]
        try:
            via_server = doc.apply(server).apply(client_t)
        except InvalidOperation as e:
            return ["client' does not apply after server: %s" % (e,)]
        if via_client != via_server:
            failures.append("the two paths differ: %s vs %s"
                            % (json.dumps(op_to_json(via_client.to_op())),
                               json.dumps(op_to_json(via_server.to_op()))))
        if "result" in case and via_client != _document(case["result"]):
            failures.append("result differs from Java: %s"
                            % (json.dumps(op_to_json(via_client.to_op())),))
    for name, ours in (("client_t", client_t), ("server_t", server_t)):
        if name in case:
            java = op_from_json(case[name])
            if normalize(ours) != normalize(java):
                failures.append("%s differs from Java: ours %s, Java %s"
                                % (name, json.dumps(op_to_json(ours)), json.dumps(case[name])))
    if case.get("reversible"):
        try:
            server_r, client_r = transform(server, client)
        except ModelError as e:
            failures.append("reversed transform raised %s: %s" % (type(e).__name__, e))
        else:
            if (normalize(client_r) != normalize(op_from_json(case["client_t"]))
                    or normalize(server_r) != normalize(op_from_json(case["server_t"]))):
                failures.append("does not hold with client and server swapped")
    return failures


def _check_compose(case):
    a = op_from_json(case["a"])
    b = op_from_json(case["b"])
    try:
        composed = compose(a, b)
    except ModelError as e:
        return ["compose raised %s: %s" % (type(e).__name__, e)]
    failures = []
    if "doc" in case:
        doc = _document(case["doc"])
        try:
            stepwise = doc.apply(a).apply(b)
            at_once = doc.apply(composed)
        except InvalidOperation as e:
            return ["does not apply: %s" % (e,)]
        if at_once != stepwise:
            failures.append("composed(doc) != b(a(doc))")
        if "result" in case and at_once != _document(case["result"]):
            failures.append("result differs from Java: %s"
                            % (json.dumps(op_to_json(at_once.to_op())),))
    if "composed" in case and normalize(composed) != normalize(op_from_json(case["composed"])):
        failures.append("composed differs from Java: ours %s, Java %s"
                        % (json.dumps(op_to_json(composed)), json.dumps(case["composed"])))
    return failures


def _check_wellformed(case):
    op = op_from_json(case["op"])
    doc = _document(case["doc"])
    failures = []
    try:
        check_well_formed(op)
        well_formed = True
    except IllFormedOperation:
        well_formed = False
    try:
        doc.check_valid(op)
        result, reason = "VALID", None
    except IllFormedOperation as e:
        result, reason = "ILL_FORMED", "ill-formed: %s" % (e,)
    except OperationMismatch as e:
        result, reason = "INVALID_DOCUMENT", "invalid operation: %s" % (e,)
    if well_formed != case["well_formed"]:
        failures.append("well_formed: ours %s, Java %s" % (well_formed, case["well_formed"]))
    if (result == "VALID") != case["valid"]:
        failures.append("valid: ours %s, Java %s" % (result == "VALID", case["valid"]))
    if "result" in case and result != case["result"]:
        failures.append("result: ours %s, Java %s" % (result, case["result"]))
    if "reason" in case and reason != case["reason"]:
        failures.append("reason: ours %r, Java %r" % (reason, case["reason"]))
    return failures


_CHECKS = {"transform": _check_transform, "compose": _check_compose,
           "wellformed": _check_wellformed}


def check_case(case):
    """The ways ``case`` disagrees with our implementation (empty: it passes)."""
    try:
        return _CHECKS[case_kind(case)](case)
    except VectorFormatError as e:
        return ["malformed case: %s" % (e,)]
    except KeyError as e:
        return ["malformed case: missing %s" % (e,)]


def _case_name(case, index):
    if isinstance(case, dict):
        for key in ("seed", "name"):
            if key in case:
                return "%s %s" % (key, case[key])
    return "case %d" % (index,)


def run_files(paths):
    """
    Check every case of the vector files.  Returns (passed, failed, lines):
    one line per failure, naming the file and the case.
    """
    passed = failed = 0
    lines = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            cases = json.load(f)
        if isinstance(cases, dict):
            # The section-9 layout: {"cases": [...]} or named groups of them.
            cases = cases.get("cases", cases)
        if not isinstance(cases, list):
            raise VectorFormatError("%s: expected a list of cases" % (path,))
        for index, case in enumerate(cases):
            problems = check_case(case)
            if problems:
                failed += 1
                kind = case.get("params", "") if isinstance(case, dict) else ""
                lines.append("%s: %s%s: %s" % (path, _case_name(case, index),
                                               " (%s)" % kind if kind else "",
                                               "; ".join(problems)))
            else:
                passed += 1
    return passed, failed, lines


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print("usage: python -m wavebox.model.vectors FILE...", file=sys.stderr)
        return 2
    try:
        passed, failed, lines = run_files(argv)
    except (OSError, ValueError, VectorFormatError) as e:
        print("cannot read vectors: %s" % (e,), file=sys.stderr)
        return 2
    for line in lines:
        print(line)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
