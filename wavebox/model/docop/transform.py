"""
Operational transformation of document operations (wave-protocol.md 6.5).

``transform(client, server)`` returns ``(client', server')`` such that
applying client then server' gives the same document as server then client'.
The client is the operation being submitted (or replayed), the server the one
already in the history.  Tie-breaks: at the same position the client's
insertion goes first; on the same attribute or annotation key the client's
value wins; an attribute change to an element the other side deletes vanishes,
and the deletion deletes the changed element.

Every server re-runs this on deltas it receives, so the result must be the
Java reference's exactly, including the annotation values the transformed
operations assert (which decide whether later deltas are valid).  We follow
the reference's construction: each operation is split into its insertions and
the rest (retains, deletions, attribute and annotation changes); the parts are
transformed pairwise in the grid below, and the results composed again::

        ci0     cn0
    si0     si1     si2
        ci1     cn1
    sn0     sn1     sn2
        ci2     cn2

Operations made only of retain/characters/deleteCharacters with at most one
change each (a keystroke) take a direct path with the same result
(``tests/test_docop_properties.py`` checks the two agree).
"""

from wavebox.model.docop.compose import attributes_updated, compose as _compose_ops
from wavebox.model.docop.components import (
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
    COMPONENT_TYPES,
    DELETE_ELEMENT_END,
    input_size,
)
from wavebox.model.docop.normalizer import Normalizer
from wavebox.model.errors import ComposeError, TransformError

__all__ = ["transform", "transform_general", "decompose"]


# --------------------------------------------------------------------------
# Decomposition


def decompose(op):
    """``(insertions, rest)`` with compose(insertions, rest) == op (up to normal form)."""
    ins = Normalizer()
    rest = Normalizer()
    for c in op:
        t = type(c)
        if t is Retain:
            ins.retain(c.count)
            rest.retain(c.count)
        elif t is Characters:
            ins.characters(c.text)
            rest.retain(len(c.text))
        elif t is ElementStart or t is ElementEnd:
            ins.single(c)
            rest.retain(1)
        elif t is AnnotationBoundary:
            rest.boundary(c)
        elif t is DeleteCharacters:
            ins.retain(len(c.text))
            rest.delete_characters(c.text)
        else:
            ins.retain(1)
            rest.single(c)
    return ins.finish(), rest.finish()


def _insertion_size(c):
    return len(c.text) if type(c) is Characters else 1


def _emit_insertion(out, c):
    if type(c) is Characters:
        out.characters(c.text)
    else:
        out.single(c)


# --------------------------------------------------------------------------
# Insertions against insertions


def _transform_insertions(client, server):
    """Both operations only retain and insert; the client's insertion goes first at a tie."""
    c_out = Normalizer()
    s_out = Normalizer()
    cs = iter(client)
    ss = iter(server)
    c = next(cs, None)
    s = next(ss, None)
    c_left = c.count if type(c) is Retain else 0
    s_left = s.count if type(s) is Retain else 0
    while c is not None or s is not None:
        if c is not None and type(c) is not Retain:
            _emit_insertion(c_out, c)
            s_out.retain(_insertion_size(c))
            c = next(cs, None)
            c_left = c.count if type(c) is Retain else 0
        elif s is not None and type(s) is not Retain:
            _emit_insertion(s_out, s)
            c_out.retain(_insertion_size(s))
            s = next(ss, None)
            s_left = s.count if type(s) is Retain else 0
        elif c is None or s is None:
            raise TransformError("operations of different lengths")
        else:
            k = min(c_left, s_left)
            c_out.retain(k)
            s_out.retain(k)
            c_left -= k
            s_left -= k
            if not c_left:
                c = next(cs, None)
                c_left = c.count if type(c) is Retain else 0
            if not s_left:
                s = next(ss, None)
                s_left = s.count if type(s) is Retain else 0
    return c_out.finish(), s_out.finish()


# --------------------------------------------------------------------------
# Insertions against everything else


class _InsertionAgainstRest:
    """
    Transforms an insertion-only operation against an insertion-free one.
    ``gap`` is the insertion cursor minus the other cursor (in the original
    document).  ``pending`` is the part of the other side's current component
    that lies beyond the insertion cursor, and ``depth`` counts the element
    deletions the other side is inside: an insertion there is deleted too.
    """

    def __init__(self):
        self.ins_out = Normalizer()
        self.rest_out = Normalizer()
        self.gap = 0
        self.depth = 0
        self.pending = Retain(0)

    def resolve(self, c, k):
        """Write the first ``k`` items of the other side's component ``c``; return what is left."""
        t = type(c)
        if t is Retain:
            self.rest_out.retain(k)
            self.ins_out.retain(k)
            return c
        if t is DeleteCharacters:
            self.rest_out.delete_characters(c.text[:k])
            return DeleteCharacters(c.text[k:])
        self.rest_out.single(c)
        if t is DeleteElementStart:
            self.depth += 1
        elif t is DeleteElementEnd:
            self.depth -= 1
        else:  # ReplaceAttributes or UpdateAttributes
            self.ins_out.retain(1)
        return c

    # the insertion side

    def insertion_component(self, c):
        t = type(c)
        if t is Retain:
            old = self.gap
            self.gap += c.count
            if self.gap < 0:
                self.pending = self.resolve(self.pending, c.count)
            elif old < 0:
                self.pending = self.resolve(self.pending, -old)
        elif self.depth > 0:
            if t is Characters:
                self.rest_out.delete_characters(c.text)
            elif t is ElementStart:
                self.rest_out.single(DeleteElementStart(c.type, c.attributes))
            else:
                self.rest_out.single(DELETE_ELEMENT_END)
        else:
            _emit_insertion(self.ins_out, c)
            self.rest_out.retain(_insertion_size(c))

    # the other side

    def rest_component(self, c):
        t = type(c)
        if t is AnnotationBoundary:
            self.rest_out.boundary(c)
            return
        size = input_size(c)
        old = -self.gap
        self.gap -= size
        if -self.gap > 0:
            # Ends beyond the insertion cursor: write the part before it, keep the rest.
            if old < 0:
                c = self.resolve(c, -old)
            if t is Retain or old == 0 or t is DeleteCharacters:
                self.pending = c
        else:
            self.resolve(c, size)
            if t is Retain:
                self.pending = c


def _transform_insertion_against_rest(insertions, rest):
    w = _InsertionAgainstRest()
    others = iter(rest)
    for c in insertions:
        w.insertion_component(c)
        while w.gap > 0:
            d = next(others, None)
            if d is None:
                raise TransformError("operations of different lengths")
            w.rest_component(d)
    for d in others:
        w.rest_component(d)
    return w.ins_out.finish(), w.rest_out.finish()


# --------------------------------------------------------------------------
# Everything but insertions, against each other


_INCOMPATIBLE = "Incompatible operations in transformation"


class _Side:
    """
    One side of the insertion-free transform: its output, the part of its
    current component beyond the other cursor (``pending``), the element
    deletions it is inside, and its annotation bookkeeping:

    - ``own``: the update its own boundaries set (what it asks for);
    - ``active``: the update in force in its output;
    - ``changed``: keys whose ``active`` value changed since both sides last
      wrote a common item, with the value before (None: absent);
    - ``saved``: values to restore after a deletion.
    """

    def __init__(self):
        self.out = Normalizer()
        self.pending = Retain(0)
        self.depth = 0
        self.own = {}
        self.active = {}
        self.changed = {}
        self.saved = {}
        self.other = None

    def commit(self, ends, changes):
        """Put ends and changes into force in this side's output."""
        active, changed, out = self.active, self.changed, self.out
        for key in ends:
            if key not in changed:
                changed[key] = active.get(key)
            active.pop(key, None)
            out.close(key)
        for key, old, new in changes:
            value = (old, new)
            if active.get(key) != value:
                if key not in changed:
                    changed[key] = active.get(key)
                active[key] = value
            out.annotate(key, old, new)

    def begin_deletion(self):
        """
        Before this side deletes an item the other side kept: assert, for each
        key the other side changed since the last common item, the values the
        deleted item carries and must be left with.
        """
        other = self.other
        changes = []
        for key, before in other.changed.items():
            mine = self.active.get(key)
            self.saved[key] = mine
            if before is not None:
                if mine is not None:
                    old = mine[0]
                elif key in other.active:
                    old = other.active[key][1]
                else:
                    old = before[0]
                changes.append((key, old, before[1]))
            elif key in other.active:
                current = other.active[key]
                changes.append((key, current[1], mine[1] if mine is not None else current[0]))
        self.commit((), changes)

    def end_deletion(self):
        ends = []
        changes = []
        for key, value in self.saved.items():
            if value is not None:
                changes.append((key, value[0], value[1]))
            else:
                ends.append(key)
        self.changed.clear()
        self.commit(ends, changes)
        self.saved.clear()

    def delete(self, component):
        self.begin_deletion()
        self.out.add(component)
        self.end_deletion()

    def both_write(self):
        self.changed.clear()
        self.other.changed.clear()


def _client_boundary(client, server, b):
    """The client's boundary: on a key both change, the client's new value wins."""
    c_changes = []
    s_ends = []
    s_changes = []
    for key in b.ends:
        theirs = server.own.get(key)
        if theirs is not None:
            s_changes.append((key, theirs[0], theirs[1]))
    for key, old, new in b.changes:
        theirs = server.own.get(key)
        if theirs is not None:
            c_changes.append((key, theirs[1], new))
            s_ends.append(key)
        else:
            c_changes.append((key, old, new))
    client.commit(b.ends, c_changes)
    server.commit(s_ends, s_changes)


def _server_boundary(client, server, b):
    """The server's boundary: where the client changes the key too, only its old value moves."""
    s_ends = []
    s_changes = []
    c_changes = []
    for key in b.ends:
        mine = client.own.get(key)
        if mine is not None:
            c_changes.append((key, mine[0], mine[1]))
        else:
            s_ends.append(key)
    for key, old, new in b.changes:
        mine = client.own.get(key)
        if mine is not None:
            c_changes.append((key, new, mine[1]))
        else:
            s_changes.append((key, old, new))
    server.commit(s_ends, s_changes)
    client.commit((), c_changes)


def _meet(owner, c, other, d, k):
    """
    ``owner``'s component ``c`` reached the cursor first; ``other``'s component
    ``d`` covers its first ``k`` items.  Write both sides' outputs for them and
    return what is left of ``c``.
    """
    tc, td = type(c), type(d)
    if tc is Retain:
        if td is Retain:
            owner.both_write()
            owner.out.retain(k)
            other.out.retain(k)
        elif td is DeleteCharacters:
            other.delete(DeleteCharacters(d.text[:k]))
        elif td is DeleteElementStart:
            other.delete(d)
            other.depth += 1
        elif td is DeleteElementEnd:
            other.delete(d)
            other.depth -= 1
        else:  # an attribute change on an element the owner keeps
            owner.both_write()
            owner.out.retain(1)
            other.out.single(d)
        return c
    if tc is DeleteCharacters:
        if td is Retain:
            owner.delete(DeleteCharacters(c.text[:k]))
        elif td is not DeleteCharacters:
            raise TransformError(_INCOMPATIBLE)
        return DeleteCharacters(c.text[k:])
    if tc is DeleteElementStart:
        if td is Retain:
            owner.delete(c)
        elif td is DeleteElementStart:
            other.depth += 1
        elif td is ReplaceAttributes:
            owner.delete(DeleteElementStart(c.type, d.new))
        elif td is UpdateAttributes:
            owner.delete(DeleteElementStart(c.type, attributes_updated(c.attributes, d.updates)))
        else:
            raise TransformError(_INCOMPATIBLE)
        owner.depth += 1
        return c
    if tc is DeleteElementEnd:
        if td is Retain:
            owner.delete(c)
        elif td is DeleteElementEnd:
            other.depth -= 1
        else:
            raise TransformError(_INCOMPATIBLE)
        owner.depth -= 1
        return c
    if tc is ReplaceAttributes:
        if td is DeleteElementStart:
            other.delete(DeleteElementStart(d.type, c.new))
            other.depth += 1
            return c
        owner.both_write()
        if td is Retain:
            owner.out.single(c)
        elif td is ReplaceAttributes:
            owner.out.single(ReplaceAttributes(d.new, c.new))
        elif td is UpdateAttributes:
            owner.out.single(ReplaceAttributes(attributes_updated(c.old, d.updates), c.new))
        else:
            raise TransformError(_INCOMPATIBLE)
        other.out.retain(1)
        return c
    # UpdateAttributes
    if td is DeleteElementStart:
        other.delete(DeleteElementStart(d.type, attributes_updated(d.attributes, c.updates)))
        other.depth += 1
        return c
    owner.both_write()
    if td is Retain:
        owner.out.single(c)
        other.out.retain(1)
    elif td is ReplaceAttributes:
        owner.out.retain(1)
        other.out.single(ReplaceAttributes(attributes_updated(d.old, c.updates), d.new))
    elif td is UpdateAttributes:
        theirs = {key: new for key, _old, new in d.updates}
        owner.out.single(UpdateAttributes(tuple(
            (key, theirs[key] if key in theirs else old, new) for key, old, new in c.updates)))
        mine = {u[0] for u in c.updates}
        other.out.single(UpdateAttributes(tuple(u for u in d.updates if u[0] not in mine)))
    else:
        raise TransformError(_INCOMPATIBLE)
    return c


class _RestTransform:
    """The walk of two insertion-free operations; ``gap`` = client cursor - server cursor."""

    def __init__(self):
        self.client = _Side()
        self.server = _Side()
        self.client.other = self.server
        self.server.other = self.client
        self.gap = 0

    def component(self, side, c, sign):
        t = type(c)
        if t is AnnotationBoundary:
            for key in c.ends:
                side.own.pop(key, None)
            for key, old, new in c.changes:
                side.own[key] = (old, new)
            if side is self.client:
                _client_boundary(self.client, self.server, c)
            else:
                _server_boundary(self.client, self.server, c)
            return
        other = side.other
        size = input_size(c)
        old = sign * self.gap
        self.gap += sign * size
        now = sign * self.gap
        if now > 0:
            # This component ends beyond the other cursor: settle the part
            # before it against the other side's pending component, and wait
            # with the rest.
            if old < 0:
                other.pending = _meet(other, other.pending, side, _head(c, -old), -old)
                if t is DeleteCharacters:
                    c = DeleteCharacters(c.text[-old:])
            if t is Retain or t is DeleteCharacters or old == 0:
                side.pending = c
        else:
            other.pending = _meet(other, other.pending, side, c, size)
            if t is Retain:
                side.pending = c


def _head(c, k):
    if type(c) is DeleteCharacters:
        return DeleteCharacters(c.text[:k])
    return c


def _transform_rest(client, server):
    w = _RestTransform()
    servers = iter(server)
    for c in client:
        w.component(w.client, c, 1)
        while w.gap > 0:
            d = next(servers, None)
            if d is None:
                raise TransformError("operations of different lengths")
            w.component(w.server, d, -1)
    for d in servers:
        w.component(w.server, d, -1)
    return w.client.out.finish(), w.server.out.finish()


# --------------------------------------------------------------------------
# The whole


def transform_general(client, server):
    """The reference construction, for any pair of operations on the same document."""
    ci0, cn0 = decompose(client)
    si0, sn0 = decompose(server)
    ci1, si1 = _transform_insertions(ci0, si0)
    ci2, sn1 = _transform_insertion_against_rest(ci1, sn0)
    si2, cn1 = _transform_insertion_against_rest(si1, cn0)
    cn2, sn2 = _transform_rest(cn1, sn1)
    return _compose_ops(ci2, cn2), _compose_ops(si2, sn2)


# --------------------------------------------------------------------------
# Keystrokes: at most one insertion or deletion of text, no annotations


def _keystroke(op):
    """
    ``(length, position, kind, text)`` if ``op`` is [retain] [characters or
    deleteCharacters] [retain] with positive retains and non-empty text (kind
    None: a pure retain); otherwise None.
    """
    cs = op.components
    n = len(cs)
    i = 0
    p = 0
    if n and type(cs[0]) is Retain:
        p = cs[0].count
        if type(p) is not int or p <= 0:
            return None
        i = 1
    kind = None
    text = ""
    if i < n:
        t = type(cs[i])
        if t is Characters or t is DeleteCharacters:
            kind = t
            text = cs[i].text
            if not text or type(text) is not str:
                return None
            i += 1
    after = 0
    if i < n:
        if type(cs[i]) is not Retain:
            return None
        after = cs[i].count
        if type(after) is not int or after <= 0 or (kind is None and i):
            return None
        i += 1
    if i != n:
        return None
    length = p + after + (len(text) if kind is DeleteCharacters else 0)
    return length, p, kind, text


_EMPTY = DocOp(())


def _around(before, component, after):
    if before:
        if after:
            return DocOp((Retain(before), component, Retain(after)))
        return DocOp((Retain(before), component))
    if after:
        return DocOp((component, Retain(after)))
    return DocOp((component,))


def _retain_all(n):
    return DocOp((Retain(n),)) if n else _EMPTY


def _split_delete(at, first, kept, second, after):
    parts = [Retain(at)] if at else []
    parts += [DeleteCharacters(first), Retain(kept), DeleteCharacters(second)]
    if after:
        parts.append(Retain(after))
    return DocOp(parts)


def _insert_against_delete(p, ins, q, dele, length):
    """(insertion', deletion') for an insertion at p and a deletion at q, either side."""
    m = len(dele)
    k = len(ins)
    if p <= q:
        return (_around(p, Characters(ins), length - m - p),
                _around(q + k, DeleteCharacters(dele), length - q - m))
    if p >= q + m:
        return (_around(p - m, Characters(ins), length - p),
                _around(q, DeleteCharacters(dele), length - q - m + k))
    # Strictly inside the deleted text: the insertion survives at the deletion
    # point, and the deletion is cut in two around it.
    return (_around(q, Characters(ins), length - q - m),
            _split_delete(q, dele[:p - q], k, dele[p - q:], length - q - m))


def _delete_against_delete(p, mine, q, theirs, length):
    """The deletion at p transformed against a concurrent one at q."""
    m, n = len(mine), len(theirs)
    start, end = max(p, q), min(p + m, q + n)
    if start < end:
        rest = mine[:start - p] + mine[end - p:]
        at = min(p, q)
    else:
        rest = mine
        at = p if p + m <= q else p - n
    if not rest:
        return _retain_all(length - n)
    return _around(at, DeleteCharacters(rest), length - n - at - len(rest))


def _transform_keystrokes(c, s):
    length, p, kc, tc = c
    _length, q, ks, ts = s
    if kc is None:
        grown = length + (len(ts) if ks is Characters else -len(ts))
        return _retain_all(grown), None
    if ks is None:
        grown = length + (len(tc) if kc is Characters else -len(tc))
        return None, _retain_all(grown)
    if kc is Characters:
        if ks is Characters:
            k, j = len(tc), len(ts)
            if p <= q:  # at a tie the client's insertion goes first
                return (_around(p, Characters(tc), length + j - p),
                        _around(q + k, Characters(ts), length - q))
            return (_around(p + j, Characters(tc), length - p),
                    _around(q, Characters(ts), length - q + k))
        return _insert_against_delete(p, tc, q, ts, length)
    if ks is Characters:
        server_t, client_t = _insert_against_delete(q, ts, p, tc, length)
        return client_t, server_t
    return (_delete_against_delete(p, tc, q, ts, length),
            _delete_against_delete(q, ts, p, tc, length))


def transform(client, server):
    if not isinstance(client, DocOp):
        client = DocOp(client)
    if not isinstance(server, DocOp):
        server = DocOp(server)
    c = _keystroke(client)
    if c is not None:
        s = _keystroke(server)
        if s is not None:
            if c[0] != s[0]:
                raise TransformError("operations of different lengths: client applies to %d "
                                     "items, server to %d" % (c[0], s[0]))
            client_t, server_t = _transform_keystrokes(c, s)
            return (client if client_t is None else client_t,
                    server if server_t is None else server_t)
    try:
        for op in (client, server):
            for c in op.components:
                if type(c) not in COMPONENT_TYPES:
                    raise TransformError("not a document operation component: %r" % (c,))
        if client.input_length != server.input_length:
            raise TransformError("operations of different lengths: client applies to %d "
                                 "items, server to %d" % (client.input_length,
                                                          server.input_length))
        return transform_general(client, server)
    except ComposeError as e:
        raise TransformError(str(e))
    except (IndexError, KeyError, TypeError, AttributeError, ValueError) as e:
        raise TransformError("malformed operation: %r" % (e,))
