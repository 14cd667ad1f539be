"""
Well-formedness of document operations (wave-protocol.md 6.3) and the
document they apply to (6.1), with application.
"""

from itertools import chain

from wavebox.model.docop.components import (
    AnnotationBoundary, Characters, DeleteCharacters, DeleteElementEnd, DeleteElementStart,
    DocOp, ElementEnd, ElementStart, ReplaceAttributes, Retain, UpdateAttributes,
    has_surrogate, is_valid_utf16, is_xml_name, java_str, utf16_key,
)
from wavebox.model.docop.normalizer import Normalizer
from wavebox.model.errors import IllFormedOperation, InvalidOperation, OperationMismatch

# --------------------------------------------------------------------------
# Well-formedness (wave-protocol.md 6.3, Java DocOpAutomaton's "ill-formed" checks)


class _Walk:
    """
    Cursor state shared by the well-formedness and validity walks: positions
    in the original and the resulting document (for messages in the Java
    wording), nesting depths and the annotation update in force.
    """

    __slots__ = ("pos", "rpos", "ins_depth", "del_depth", "update", "after_boundary")

    def __init__(self):
        self.pos = 0
        self.rpos = 0
        self.ins_depth = 0
        self.del_depth = 0
        self.update = {}
        self.after_boundary = False

    def where(self):
        return " at original document position %d / resulting document position %d" % (
            self.pos, self.rpos)


def _ill(walk, index, rule, description):
    raise IllFormedOperation(description + walk.where(), index, rule)


def _check_text(walk, index, text, kind):
    if not isinstance(text, str):
        _ill(walk, index, "characters_null", "characters is null")
    if not text:
        _ill(walk, index, "characters_empty", "characters is empty")
    if has_surrogate(text):
        _ill(walk, index, "surrogate", kind + " component contains surrogate")
    if not is_valid_utf16(text):
        _ill(walk, index, "invalid_unicode", kind + " component contains invalid unicode")


def _check_key_order(walk, index, previous, key, kind):
    """Keys of one component strictly increase (``kind``: attribute or annotation)."""
    if previous is not None and utf16_key(previous) >= utf16_key(key):
        _ill(walk, index, kind + "_keys_not_sorted",
             "%s keys not strictly monotonic: %s >= %s" % (kind, previous, key))


def _check_optional_values(walk, index, values, kind):
    """Old and new values of an update: each absent (None) or valid UTF-16."""
    for value in values:
        if value is not None and (not isinstance(value, str) or not is_valid_utf16(value)):
            _ill(walk, index, kind + "_value_not_utf16",
                 "%s value is not valid UTF-16" % (kind,))


def _check_attribute_name(walk, index, key):
    if key is None:
        _ill(walk, index, "attribute_key_null", "attribute key is null")
    if not is_xml_name(key):
        _ill(walk, index, "attribute_name_not_xml_name",
             'attribute name is not an XML Name: "%s"' % (key,))


def _check_attributes(walk, index, attributes):
    if not isinstance(attributes, tuple):
        _ill(walk, index, "attributes_null", "attributes is null")
    previous = None
    for pair in attributes:
        if not isinstance(pair, tuple) or len(pair) != 2:
            _ill(walk, index, "attributes_null", "attributes is null")
        key, value = pair
        _check_attribute_name(walk, index, key)
        if value is None:
            _ill(walk, index, "attribute_value_null", "attribute value is null")
        if not isinstance(value, str) or not is_valid_utf16(value):
            _ill(walk, index, "attribute_value_not_utf16", "attribute value is not valid UTF-16")
        _check_key_order(walk, index, previous, key, "attribute")
        previous = key


def _check_attribute_updates(walk, index, updates):
    if not isinstance(updates, tuple):
        _ill(walk, index, "attributes_update_null", "attributes update is null")
    previous = None
    for u in updates:
        if not isinstance(u, tuple) or len(u) != 3:
            _ill(walk, index, "attributes_update_null", "attributes update is null")
        key, old, new = u
        _check_attribute_name(walk, index, key)
        _check_key_order(walk, index, previous, key, "attribute")
        _check_optional_values(walk, index, (old, new), "attribute")
        previous = key


def _check_element(walk, index, c):
    """The type and attributes of an element start, inserted or deleted."""
    if c.type is None:
        _ill(walk, index, "element_type_null", "element type is null")
    if not is_xml_name(c.type):
        _ill(walk, index, "element_type_not_xml_name",
             'element type is not an XML Name: "%s"' % (c.type,))
    _check_attributes(walk, index, c.attributes)


def _check_annotation_key(walk, index, key):
    if not isinstance(key, str):
        _ill(walk, index, "annotation_key_null", "annotation key is null")
    if "?" in key or "@" in key:
        _ill(walk, index, "annotation_key_invalid_character",
             "invalid character in annotation key: " + key)
    if not is_valid_utf16(key):
        _ill(walk, index, "annotation_key_not_utf16", "annotation key is not valid UTF-16")


def _check_boundary(walk, index, b):
    if walk.after_boundary:
        _ill(walk, index, "adjacent_annotation_boundaries", "adjacent annotation boundaries")
    ends = b.ends
    previous = None
    for key in ends:
        _check_annotation_key(walk, index, key)
        _check_key_order(walk, index, previous, key, "annotation")
        previous = key
        if key not in walk.update:
            _ill(walk, index, "annotation_end_not_open",
                 "annotation of key %s ends without having started" % (key,))
    previous = None
    for change in b.changes:
        if not isinstance(change, tuple) or len(change) != 3:
            _ill(walk, index, "annotation_key_null", "annotation key is null")
        key, old, new = change
        _check_annotation_key(walk, index, key)
        _check_optional_values(walk, index, (old, new), "annotation")
        _check_key_order(walk, index, previous, key, "annotation")
        previous = key
        if key in ends:
            _ill(walk, index, "annotation_duplicate_key",
                 "annotation boundary contains duplicate key " + key)


def _check_component(walk, index, c):
    """Check one component and advance ``walk`` past it."""
    t = type(c)
    if t is Retain:
        n = c.count
        if type(n) is not int or n <= 0:
            _ill(walk, index, "retain_not_positive", "retain item count not positive")
        if walk.ins_depth or walk.del_depth:
            _ill(walk, index, "retain_inside_insert_or_delete", "retain inside insert or delete")
        walk.pos += n
        walk.rpos += n
    elif t is Characters:
        _check_text(walk, index, c.text, "characters")
        if walk.del_depth:
            _ill(walk, index, "insertion_inside_deletion", "insertion inside deletion")
        walk.rpos += len(c.text)
    elif t is ElementStart:
        _check_element(walk, index, c)
        if walk.del_depth:
            _ill(walk, index, "insertion_inside_deletion", "insertion inside deletion")
        walk.ins_depth += 1
        walk.rpos += 1
    elif t is ElementEnd:
        if walk.del_depth:
            _ill(walk, index, "insertion_inside_deletion", "insertion inside deletion")
        if not walk.ins_depth:
            _ill(walk, index, "unmatched_element_end", "elementEnd with no matching elementStart")
        walk.ins_depth -= 1
        walk.rpos += 1
    elif t is DeleteCharacters:
        _check_text(walk, index, c.text, "delete characters")
        if walk.ins_depth:
            _ill(walk, index, "deletion_inside_insertion", "deletion inside insertion")
        walk.pos += len(c.text)
    elif t is DeleteElementStart:
        _check_element(walk, index, c)
        if walk.ins_depth:
            _ill(walk, index, "deletion_inside_insertion", "deletion inside insertion")
        walk.del_depth += 1
        walk.pos += 1
    elif t is DeleteElementEnd:
        if walk.ins_depth:
            _ill(walk, index, "deletion_inside_insertion", "deletion inside insertion")
        if not walk.del_depth:
            _ill(walk, index, "unmatched_delete_element_end",
                 "deleteElementEnd with no matching deleteElementStart")
        walk.del_depth -= 1
        walk.pos += 1
    elif t is UpdateAttributes:
        _check_attribute_updates(walk, index, c.updates)
        if walk.del_depth or walk.ins_depth:
            _ill(walk, index, "attribute_change_inside_insert_or_delete",
                 "attribute change inside insert or delete")
        walk.pos += 1
        walk.rpos += 1
    elif t is ReplaceAttributes:
        _check_attributes(walk, index, c.old)
        _check_attributes(walk, index, c.new)
        if walk.del_depth or walk.ins_depth:
            _ill(walk, index, "attribute_change_inside_insert_or_delete",
                 "attribute change inside insert or delete")
        walk.pos += 1
        walk.rpos += 1
    elif t is AnnotationBoundary:
        if not isinstance(c.ends, tuple) or not isinstance(c.changes, tuple):
            _ill(walk, index, "annotation_key_null", "annotation key is null")
        _check_boundary(walk, index, c)
        update = walk.update
        for key in c.ends:
            del update[key]
        for key, old, new in c.changes:
            update[key] = (old, new)
        walk.after_boundary = True
        return
    else:
        _ill(walk, index, "unknown_component", "unknown component %r" % (c,))
    walk.after_boundary = False


def _check_finish(walk, index):
    if walk.ins_depth:
        _ill(walk, index, "unclosed_element", "elementStart with no matching elementEnd")
    if walk.del_depth:
        _ill(walk, index, "unclosed_delete_element",
             "deleteElementStart with no matching deleteElementEnd")
    if walk.update:
        key = min(walk.update, key=utf16_key)
        _ill(walk, index, "annotation_not_closed",
             "annotation of key %s starts but never ends" % (key,))


def check_well_formed(op):
    """
    Raise IllFormedOperation (with the component index and the rule) unless
    ``op`` is well-formed whatever the document.  Messages use the Java
    wording and positions, so they can be compared with the reference.
    """
    walk = _Walk()
    components = op.components if isinstance(op, DocOp) else tuple(op)
    for index, c in enumerate(components):
        _check_component(walk, index, c)
    _check_finish(walk, len(components))


def is_well_formed(op):
    try:
        check_well_formed(op)
    except IllFormedOperation:
        return False
    return True


# --------------------------------------------------------------------------
# Documents (wave-protocol.md 6.1)

_NO_ANNOTATIONS = {}


class Item(tuple):
    """
    One item of a document: ``value`` is a one-character string, an
    ElementStart (type and attributes) or ElementEnd; ``annotations`` maps
    key to value (absent keys are null).
    """

    __slots__ = ()

    def __new__(cls, value, annotations):
        return tuple.__new__(cls, (value, annotations))

    @property
    def value(self):
        return self[0]

    @property
    def annotations(self):
        return self[1]

    @property
    def is_text(self):
        return type(self[0]) is str

    @property
    def is_element_start(self):
        return type(self[0]) is ElementStart

    @property
    def is_element_end(self):
        return type(self[0]) is ElementEnd

    def __repr__(self):
        return "Item(%r, %r)" % (self[0], dict(self[1]))


def _updated_annotations(base, update, memo):
    """``base`` with each (old, new) of ``update`` applied (new None removes the key)."""
    key = id(base)
    got = memo.get(key)
    if got is not None and got[0] is base:
        return got[1]
    result = dict(base)
    for k, (_old, new) in update.items():
        if new is None:
            result.pop(k, None)
        else:
            result[k] = new
    if result == base:
        result = base
    memo[key] = (base, result)
    return result


def _mismatch(walk, index, description):
    raise OperationMismatch(description + walk.where(), index)


class Document:
    """
    An immutable wave document: items (characters, element starts with their
    attributes, element ends), each with an annotation map.  ``apply`` returns
    a new document and leaves this one untouched.
    """

    __slots__ = ("_items", "_anns", "_hash")

    def __init__(self, _items=(), _anns=()):
        self._items = _items
        self._anns = _anns
        self._hash = None

    @classmethod
    def from_op(cls, op):
        """The document an insertion-only operation builds from the empty one."""
        return cls().apply(op)

    @property
    def size(self):
        return len(self._items)

    def __len__(self):
        return len(self._items)

    def __eq__(self, other):
        if not isinstance(other, Document):
            return NotImplemented
        return self._items == other._items and self._anns == other._anns

    def __hash__(self):
        h = self._hash
        if h is None:
            h = self._hash = hash((self._items, len(self._anns)))
        return h

    def __repr__(self):
        return "Document(%r)" % (self.to_op(),)

    def items(self):
        """The items in order, each an Item(value, annotations)."""
        views = {}
        result = []
        for v, a in zip(self._items, self._anns):
            view = views.get(id(a))
            if view is None:
                view = views[id(a)] = _ReadOnly(a)
            result.append(Item(v, view))
        return tuple(result)

    def element_range(self, type, start=0):
        """
        ``(start, end)``: the positions of the start and of the matching end
        item of the first element of ``type`` at or after ``start``; None if
        there is none.  Inserting at ``end`` puts content last in the element.
        """
        items = self._items
        for pos in range(start, len(items)):
            v = items[pos]
            if v.__class__ is ElementStart and v.type == type:
                depth = 0
                for end in range(pos, len(items)):
                    w = items[end].__class__
                    if w is ElementStart:
                        depth += 1
                    elif w is ElementEnd:
                        depth -= 1
                        if not depth:
                            return pos, end
        return None

    def item(self, pos):
        if not 0 <= pos < len(self._items):
            raise InvalidOperation("no item at position %d of %d" % (pos, len(self._items)))
        return Item(self._items[pos], _ReadOnly(self._anns[pos]))

    def annotations_at(self, pos):
        if not 0 <= pos < len(self._items):
            raise InvalidOperation("no item at position %d of %d" % (pos, len(self._items)))
        return dict(self._anns[pos])

    def text(self):
        """The characters of the document, without markup."""
        return "".join(v for v in self._items if type(v) is str)

    def to_xml(self):
        """Elements and text as XML (annotations are not shown)."""
        out = []
        stack = []
        for v in self._items:
            t = type(v)
            if t is str:
                out.append(_xml_escape(v))
            elif t is ElementStart:
                stack.append(v.type)
                attrs = "".join(' %s="%s"' % (k, _xml_escape(val, True))
                                for k, val in v.attributes)
                out.append("<%s%s>" % (v.type, attrs))
            else:
                out.append("</%s>" % (stack.pop(),))
        return "".join(out)

    def to_op(self):
        """
        The canonical insertion-only operation that builds this document:
        text merged, a boundary only where the annotations change, old
        values null, a key that becomes null ended, every key ended at the end.
        """
        n = Normalizer()
        previous = _NO_ANNOTATIONS
        for v, ann in zip(self._items, self._anns):
            if ann is not previous and ann != previous:
                for k in previous:
                    if k not in ann:
                        n.close(k)
                for k, val in ann.items():
                    if previous.get(k) != val:
                        n.annotate(k, None, val)
                previous = ann
            if type(v) is str:
                n.characters(v)
            else:
                n.single(v)
        return n.finish(close_all=True)

    def check_valid(self, op):
        """Raise IllFormedOperation or OperationMismatch unless ``op`` applies here."""
        self.apply(op)

    def is_valid(self, op):
        try:
            self.apply(op)
        except InvalidOperation:
            return False
        return True

    def apply(self, op):
        """
        The document ``op`` produces from this one.  Raises IllFormedOperation
        if ``op`` is ill-formed and OperationMismatch if it does not fit this
        document (the Java DocOpValidator's checks, in its order and wording).
        """
        if not isinstance(op, DocOp):
            op = DocOp(op)
        check_well_formed(op)
        return self._apply_well_formed(op)

    def _apply_well_formed(self, op):
        items, anns = self._items, self._anns
        length = len(items)
        walk = _Walk()
        update = walk.update
        # The annotations a deletion must leave behind: those of the last item
        # produced (Java's targetAnnotationsForDeletion).
        target = _NO_ANNOTATIONS
        # The result is built from chunks (slices of this document, inserted
        # runs) joined once at the end: a keystroke costs two slices and a join.
        out_items = []
        out_anns = []
        memo = {}
        for index, c in enumerate(op.components):
            t = type(c)
            pos = walk.pos
            if t is Retain:
                n = c.count
                if n > length - pos:
                    _mismatch(walk, index, "retain past end of document, document length %d, "
                              "retain item count %d" % (length, n))
                end = pos + n
                out_items.append(items[pos:end])
                if update:
                    _check_retained_annotations(walk, index, anns, pos, end, update)
                    kept = tuple(_updated_annotations(a, update, memo) for a in anns[pos:end])
                else:
                    kept = anns[pos:end]
                out_anns.append(kept)
                walk.pos = end
                walk.rpos += n
                target = kept[-1]
            elif t is Characters or t is ElementStart or t is ElementEnd:
                left = anns[pos - 1] if pos else _NO_ANNOTATIONS
                if update:
                    for k in sorted(update, key=utf16_key):
                        old = update[k][0]
                        if old != left.get(k):
                            _old_annotation_differs(walk, index, k, old, left.get(k))
                    target = _updated_annotations(left, update, memo)
                else:
                    target = left
                if t is Characters:
                    out_items.append(tuple(c.text))
                    out_anns.append((target,) * len(c.text))
                    walk.rpos += len(c.text)
                else:
                    out_items.append((c,))
                    out_anns.append((target,))
                    walk.rpos += 1
            elif t is DeleteCharacters:
                text = c.text
                for offset, ch in enumerate(text):
                    if pos + offset >= length or type(items[pos + offset]) is not str:
                        _mismatch(walk, index, "cannot delete %d characters, only %d available"
                                  % (len(text), offset))
                    if items[pos + offset] != ch:
                        _mismatch(walk, index, "attempt to delete character %s when the actual "
                                  "character is %s" % (ch, items[pos + offset]))
                _check_deleted_annotations(walk, index, anns, pos, pos + len(text), update,
                                           target)
                walk.pos += len(text)
            elif t is DeleteElementStart:
                here = items[pos] if pos < length else None
                if type(here) is not ElementStart:
                    _mismatch(walk, index, "no element start to delete here")
                if here.type != c.type:
                    _mismatch(walk, index, "old element type differs from document")
                if dict(c.attributes) != dict(here.attributes):
                    _mismatch(walk, index, "old attributes differ from document")
                _check_deleted_annotations(walk, index, anns, pos, pos + 1, update, target)
                walk.pos += 1
            elif t is DeleteElementEnd:
                if pos >= length or type(items[pos]) is not ElementEnd:
                    _mismatch(walk, index, "no element end to delete here")
                _check_deleted_annotations(walk, index, anns, pos, pos + 1, update, target)
                walk.pos += 1
            elif t is ReplaceAttributes or t is UpdateAttributes:
                here = items[pos] if pos < length else None
                if type(here) is not ElementStart:
                    _mismatch(walk, index, "no element start to change attributes here")
                attrs = dict(here.attributes)
                if t is ReplaceAttributes:
                    if attrs != dict(c.old):
                        _mismatch(walk, index, "old attributes differ from document")
                    new_attrs = dict(c.new)
                else:
                    for k, old, new in c.updates:
                        if attrs.get(k) != old:
                            _mismatch(walk, index, "old attributes differ from document")
                    new_attrs = _attributes_updated(attrs, c.updates)
                if update:
                    _check_retained_annotations(walk, index, anns, pos, pos + 1, update)
                    ann = _updated_annotations(anns[pos], update, memo)
                else:
                    ann = anns[pos]
                out_items.append((ElementStart(here.type, new_attrs),))
                out_anns.append((ann,))
                walk.pos += 1
                walk.rpos += 1
                target = ann
            else:  # AnnotationBoundary (well-formed, so nothing else is left)
                for key in c.ends:
                    del update[key]
                for key, old, new in c.changes:
                    update[key] = (old, new)
                memo = {}
        if walk.pos != length:
            _mismatch(walk, len(op.components), "operation shorter than document, document "
                      "length %d, length of input of operation %d" % (length, walk.pos))
        return Document(_joined(out_items), _joined(out_anns))


def _joined(chunks):
    """
    One tuple of ``chunks``: a keystroke's result is a slice of the document,
    the inserted run and another slice, and each item is copied once into a
    list and once into the tuple (adding tuples one by one copied the whole
    document again for every chunk: four times for an append to a manifest).
    """
    if len(chunks) == 1:
        return chunks[0]
    if len(chunks) <= 8 and sum(len(c) for c in chunks) <= 64:
        result = ()
        for chunk in chunks:
            result += chunk
        return result
    out = []
    for chunk in chunks:
        out.extend(chunk)
    return tuple(out)


def _attributes_updated(attrs, updates):
    result = dict(attrs)
    for k, _old, new in updates:
        if new is None:
            result.pop(k, None)
        else:
            result[k] = new
    return result


def _old_annotation_differs(walk, index, key, old, actual):
    _mismatch(walk, index, "old annotations differ from document: purported old value "
              "for key %s is %s, actual value in document is %s"
              % (key, java_str(old), java_str(actual)))


def _check_old_annotation(walk, index, anns, start, end, key, old):
    """Every item in [start, end) has the value ``old`` for ``key``, as the update asserts."""
    for j in range(start, end):
        if anns[j].get(key) != old:
            _old_annotation_differs(walk, index, key, old, anns[j].get(key))


def _check_retained_annotations(walk, index, anns, start, end, update):
    for k in sorted(update, key=utf16_key):
        _check_old_annotation(walk, index, anns, start, end, k, update[k][0])


def _check_deleted_annotations(walk, index, anns, start, end, update, target):
    """
    A deletion asserts the old values of the deleted items, and must leave the
    annotations of the last item produced in force: every key where a deleted
    item differs from that item is in the update, with that item's value as new.
    """
    for k in sorted(update, key=utf16_key):
        old, new = update[k]
        _check_old_annotation(walk, index, anns, start, end, k, old)
        if new != target.get(k):
            _mismatch(walk, index, "new annotation value incorrect for deletion")
    for j in range(start, end):
        here = anns[j]
        if here is target:
            continue
        for k in sorted(set(here) | set(target), key=utf16_key):
            if here.get(k) != target.get(k) and k not in update:
                _mismatch(walk, index, "deletion does not reset value for key %s from %s to %s"
                          % (k, java_str(here.get(k)), java_str(target.get(k))))


class _ReadOnly(dict):
    """A dict that refuses changes, handed out so callers cannot alter a document."""

    __slots__ = ()

    def _refuse(self, *args, **kwargs):
        raise TypeError("document annotations are read-only")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _refuse


def _xml_escape(s, attribute=False):
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if attribute:
        s = s.replace('"', "&quot;")
    return s


def apply(document, op):
    """The document ``op`` makes of ``document`` (see Document.apply)."""
    return document.apply(op)

