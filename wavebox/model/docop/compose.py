"""
Composition of document operations (wave-protocol.md 6.4): ``compose(a, b)``
is one operation with the effect of ``a`` then ``b``.

The walk pairs each item ``a`` produces with the item ``b`` consumes.  What
the composed operation asserts about annotations follows the Java Composer:
``a``'s boundaries take effect when ``a`` deletes something or an item is
paired, ``b``'s when ``b`` inserts something or an item is paired, and an
item under both updates of a key asserts ``a``'s old value and ``b``'s new one.
"""

from wavebox.model.docop.components import (
    COMPONENT_TYPES,
    AnnotationBoundary,
    Characters,
    DeleteCharacters,
    DeleteElementEnd,
    DeleteElementStart,
    DocOp,
    ElementEnd,
    ElementStart,
    ReplaceAttributes,
    Retain,
    UpdateAttributes,
    utf16_key,
)
from wavebox.model.docop.normalizer import Normalizer
from wavebox.model.errors import ComposeError

__all__ = ["compose"]


class AttributeMismatch(ValueError):
    """An attribute update's old value does not match (Java's IllegalArgumentException)."""


def attributes_updated(attributes, updates):
    """``attributes`` (pairs) changed by ``updates`` (triples), each old value checked."""
    result = dict(attributes)
    for key, old, new in updates:
        if result.get(key) != old:
            raise AttributeMismatch("attribute %s is %r, update expects %r"
                                    % (key, result.get(key), old))
        if new is None:
            result.pop(key, None)
        else:
            result[key] = new
    return tuple(sorted(result.items(), key=lambda p: utf16_key(p[0])))


def inverted(updates):
    return tuple((key, new, old) for key, old, new in updates)


def updates_composed(first, second):
    """One attribute update with the effect of ``first`` then ``second``."""
    merged = {u[0]: u for u in first}
    for key, old, new in second:
        earlier = merged.get(key)
        if earlier is None:
            merged[key] = (key, old, new)
        else:
            if earlier[2] != old:
                raise AttributeMismatch("attribute %s: %r then %r" % (key, earlier, (old, new)))
            merged[key] = (key, earlier[1], new)
    return tuple(merged[k] for k in sorted(merged, key=utf16_key))


_ILLEGAL = "Illegal composition"


class _Composition:
    """The walk of ``compose``; ``out`` collects the composed operation."""

    def __init__(self):
        self.out = Normalizer()
        self.first = {}         # key -> (old, new): the first operation's update in force
        self.second = {}        # the same for the second operation
        self.first_queue = []   # boundaries of the first op not yet in force
        self.second_queue = []

    # annotations

    def _take_effect(self, queue, update):
        touched = set()
        for b in queue:
            for key in b.ends:
                update.pop(key, None)
                touched.add(key)
            for key, old, new in b.changes:
                update[key] = (old, new)
                touched.add(key)
        del queue[:]
        out, first, second = self.out, self.first, self.second
        for key in touched:
            f = first.get(key)
            s = second.get(key)
            if f is not None and s is not None:
                out.annotate(key, f[0], s[1])
            elif f is not None:
                out.annotate(key, f[0], f[1])
            elif s is not None:
                out.annotate(key, s[0], s[1])
            else:
                out.close(key)

    def first_takes_effect(self):
        if self.first_queue:
            self._take_effect(self.first_queue, self.first)

    def second_takes_effect(self):
        if self.second_queue:
            self._take_effect(self.second_queue, self.second)

    def both_take_effect(self):
        self.first_takes_effect()
        self.second_takes_effect()

    # pairing an item the first op produces with what the second does to it;
    # each returns (rest of the first's component, rest of the second's)

    def pair(self, a, b):
        """
        ``a`` produces items (not a deletion); ``b`` consumes them (not an
        insertion).  Either may be what is left of a partly paired component.
        """
        self.both_take_effect()
        out = self.out
        ta, tb = type(a), type(b)
        if ta is Retain:
            n = a.count
            if tb is Retain:
                m = b.count
                out.retain(min(n, m))
                return (Retain(n - m) if n > m else None), (Retain(m - n) if m > n else None)
            if tb is DeleteCharacters:
                s = b.text
                if len(s) <= n:
                    out.delete_characters(s)
                    return (Retain(n - len(s)) if n > len(s) else None), None
                out.delete_characters(s[:n])
                return None, DeleteCharacters(s[n:])
            out.single(b)
            return (Retain(n - 1) if n > 1 else None), None
        if ta is Characters:
            s = a.text
            if tb is Retain:
                m = b.count
                if m <= len(s):
                    out.characters(s[:m])
                    return (Characters(s[m:]) if m < len(s) else None), None
                out.characters(s)
                return None, Retain(m - len(s))
            if tb is DeleteCharacters:
                t = b.text
                if len(t) <= len(s):
                    return (Characters(s[len(t):]) if len(t) < len(s) else None), None
                return None, DeleteCharacters(t[len(s):])
            raise ComposeError(_ILLEGAL)
        if tb is Retain:
            out.single(a)
            return None, (Retain(b.count - 1) if b.count > 1 else None)
        if ta is ElementStart:
            if tb is DeleteElementStart:
                return None, None
            if tb is ReplaceAttributes:
                out.single(ElementStart(a.type, b.new))
                return None, None
            if tb is UpdateAttributes:
                out.single(ElementStart(a.type, attributes_updated(a.attributes, b.updates)))
                return None, None
            raise ComposeError(_ILLEGAL)
        if ta is ElementEnd:
            if tb is DeleteElementEnd:
                return None, None
            raise ComposeError(_ILLEGAL)
        if ta is ReplaceAttributes:
            if tb is DeleteElementStart:
                out.single(DeleteElementStart(b.type, a.old))
            elif tb is ReplaceAttributes:
                out.single(ReplaceAttributes(a.old, b.new))
            elif tb is UpdateAttributes:
                out.single(ReplaceAttributes(a.old, attributes_updated(a.new, b.updates)))
            else:
                raise ComposeError(_ILLEGAL)
            return None, None
        if ta is UpdateAttributes:
            if tb is DeleteElementStart:
                out.single(DeleteElementStart(
                    b.type, attributes_updated(b.attributes, inverted(a.updates))))
            elif tb is ReplaceAttributes:
                out.single(ReplaceAttributes(
                    attributes_updated(b.old, inverted(a.updates)), b.new))
            elif tb is UpdateAttributes:
                out.single(UpdateAttributes(updates_composed(a.updates, b.updates)))
            else:
                raise ComposeError(_ILLEGAL)
            return None, None
        raise ComposeError(_ILLEGAL)


_DELETIONS = (DeleteCharacters, DeleteElementStart, DeleteElementEnd)
_INSERTIONS = (Characters, ElementStart, ElementEnd)


def compose(a, b):
    """
    One operation with the effect of ``a`` then ``b``.  Raises ComposeError if
    ``b`` does not apply to what ``a`` produces.
    """
    if not isinstance(a, DocOp):
        a = DocOp(a)
    if not isinstance(b, DocOp):
        b = DocOp(b)
    try:
        for op in (a, b):
            for c in op.components:
                if type(c) not in COMPONENT_TYPES:
                    raise ComposeError("not a document operation component: %r" % (c,))
        if a.output_length != b.input_length:
            raise ComposeError("Document size mismatch: op1 resulting length=%d, op2 initial "
                               "length=%d" % (a.output_length, b.input_length))
        return _compose(a.components, b.components)
    except AttributeMismatch as e:
        raise ComposeError("Illegal composition: %s" % (e,))
    except (IndexError, KeyError, TypeError, AttributeError, ValueError) as e:
        raise ComposeError("Illegal composition (malformed operation): %r" % (e,))


def _compose(first, second):
    w = _Composition()
    out = w.out
    bs = iter(second)
    # What is left of a component that is only partly paired: either an item
    # run of the first op waiting for the second, or a retain/deleteCharacters
    # of the second waiting for the first.
    first_rest = None
    second_rest = None
    for c in first:
        t = type(c)
        if t is AnnotationBoundary:
            w.first_queue.append(c)
            continue
        if t in _DELETIONS:
            w.first_takes_effect()
            out.add(c)
            continue
        if second_rest is not None:
            first_rest, second_rest = w.pair(c, second_rest)
        else:
            first_rest = c
        while first_rest is not None:
            d = next(bs, None)
            if d is None:
                raise ComposeError("Document size mismatch")
            td = type(d)
            if td is AnnotationBoundary:
                w.second_queue.append(d)
            elif td in _INSERTIONS:
                w.second_takes_effect()
                out.add(d)
            else:
                first_rest, second_rest = w.pair(first_rest, d)
    if second_rest is not None:
        raise ComposeError("Document size mismatch")
    for d in bs:
        td = type(d)
        if td is AnnotationBoundary:
            w.second_queue.append(d)
        elif td in _INSERTIONS:
            w.second_takes_effect()
            out.add(d)
        else:
            raise ComposeError(_ILLEGAL)
    w.both_take_effect()
    return out.finish()
