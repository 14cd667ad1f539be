"""
The components of document operations (wave-protocol.md 6.2), strings as
Java counts and orders them (UTF-16 code units), and operations as sequences
of components.  The bottom of :mod:`wavebox.model.docop`: it imports nothing
else of it.
"""

import re
from dataclasses import dataclass

# --------------------------------------------------------------------------
# Strings as Java sees them (UTF-16 code units, String.compareTo order)

_NON_BMP_OR_SURROGATE = re.compile("[\ud800-\udfff\U00010000-\U0010ffff]")


def utf16_key(s):
    """Sort key giving Java's ``String.compareTo`` order (UTF-16 code units)."""
    if s.isascii():
        return s
    return s.encode("utf-16-be", "surrogatepass").decode("latin-1")


def utf16_length(s):
    """Length of ``s`` in UTF-16 code units."""
    if s.isascii():
        return len(s)
    return len(s.encode("utf-16-le", "surrogatepass")) // 2


def _code_points(s):
    """Yield the code points of the UTF-16 form of ``s``; -1 for an unpaired surrogate."""
    units = s.encode("utf-16-le", "surrogatepass")
    n = len(units) // 2
    i = 0
    while i < n:
        c = units[2 * i] | (units[2 * i + 1] << 8)
        if 0xD800 <= c <= 0xDFFF:
            if c <= 0xDBFF and i + 1 < n:
                c2 = units[2 * i + 2] | (units[2 * i + 3] << 8)
                if 0xDC00 <= c2 <= 0xDFFF:
                    yield 0x10000 + ((c - 0xD800) << 10) + (c2 - 0xDC00)
                    i += 2
                    continue
            yield -1
        else:
            yield c
        i += 1


def has_surrogate(s):
    return not s.isascii() and _NON_BMP_OR_SURROGATE.search(s) is not None


def _is_noncharacter(cp):
    return (cp & 0xFFFF) >= 0xFFFE or 0xFDD0 <= cp <= 0xFDEF


def is_valid_utf16(s):
    """No unpaired surrogates and no noncharacters (Java ``Utf16Util.isValidUtf16``)."""
    if s.isascii():
        return True
    for cp in _code_points(s):
        if cp < 0 or _is_noncharacter(cp):
            return False
    return True


def _is_name_start(cp):
    return (cp == 0x3A or 0x41 <= cp <= 0x5A or cp == 0x5F or 0x61 <= cp <= 0x7A
            or 0xC0 <= cp <= 0xD6 or 0xD8 <= cp <= 0xF6 or 0xF8 <= cp <= 0x2FF
            or 0x370 <= cp <= 0x37D or 0x37F <= cp <= 0x1FFF
            or 0x200C <= cp <= 0x200D or 0x2070 <= cp <= 0x218F
            or 0x2C00 <= cp <= 0x2FEF or 0x3001 <= cp <= 0xD7FF
            or 0xF900 <= cp <= 0xFDCF or 0xFDF0 <= cp <= 0xFFFD
            or (0x10000 <= cp <= 0xEFFFF and not _is_noncharacter(cp)))


def _is_name_char(cp):
    if _is_noncharacter(cp):
        return False
    return (_is_name_start(cp) or cp == 0x2D or cp == 0x2E or 0x30 <= cp <= 0x39
            or cp == 0xB7 or 0x300 <= cp <= 0x36F or 0x203F <= cp <= 0x2040)


_ASCII_NAME = re.compile(r"[:A-Z_a-z][-.0-9:A-Z_a-z]*\Z")


def is_xml_name(s):
    """An XML 1.0 Name made of valid Unicode (Java ``Utf16Util.isXmlName``)."""
    if not isinstance(s, str) or not s:
        return False
    if s.isascii():
        return _ASCII_NAME.match(s) is not None
    first = True
    for cp in _code_points(s):
        if cp < 0:
            return False
        if first:
            if not _is_name_start(cp):
                return False
            first = False
        elif not _is_name_char(cp):
            return False
    return True


def java_str(value):
    return "null" if value is None else value


# --------------------------------------------------------------------------
# Components


def _attribute_tuple(attributes):
    """Attributes as a tuple of (name, value) pairs.

    A mapping is sorted by name; a sequence is kept in the order given, so an
    operation read from the wire keeps any ordering fault for the
    well-formedness check to report.
    """
    if attributes is None:
        return ()
    if isinstance(attributes, tuple) and all(
            isinstance(p, tuple) and len(p) == 2 for p in attributes):
        return attributes
    if hasattr(attributes, "items"):
        return tuple(sorted(((k, v) for k, v in attributes.items()),
                            key=lambda p: utf16_key(p[0])))
    return tuple((k, v) for k, v in attributes)


def _update_tuple(updates):
    """Updates as a tuple of (key, old, new); a mapping {key: (old, new)} is sorted."""
    if updates is None:
        return ()
    if isinstance(updates, tuple) and all(
            isinstance(u, tuple) and len(u) == 3 for u in updates):
        return updates
    if hasattr(updates, "items"):
        return tuple(sorted(((k, v[0], v[1]) for k, v in updates.items()),
                            key=lambda u: utf16_key(u[0])))
    return tuple((k, o, n) for k, o, n in updates)


def _element_attributes_as_pairs(self):
    """An element start's (or its deletion's) attributes given as a mapping become sorted pairs."""
    a = self.attributes
    if type(a) is not tuple or (a and type(a[0]) is not tuple):
        object.__setattr__(self, "attributes", _attribute_tuple(a))


@dataclass(frozen=True, slots=True)
class Retain:
    """Keep ``count`` items, applying the current annotation update to them."""
    count: int


@dataclass(frozen=True, slots=True)
class Characters:
    """Insert text."""
    text: str


@dataclass(frozen=True, slots=True)
class ElementStart:
    """Insert an element start; in a document it is also the start item itself."""
    type: str
    attributes: tuple = ()

    __post_init__ = _element_attributes_as_pairs

    def attribute_map(self):
        return dict(self.attributes)


@dataclass(frozen=True, slots=True)
class ElementEnd:
    """Insert an element end; in a document it is also the end item itself."""


@dataclass(frozen=True, slots=True)
class DeleteCharacters:
    """Delete text, which must match the document."""
    text: str


@dataclass(frozen=True, slots=True)
class DeleteElementStart:
    """Delete an element start whose type and attributes must match."""
    type: str
    attributes: tuple = ()

    __post_init__ = _element_attributes_as_pairs


@dataclass(frozen=True, slots=True)
class DeleteElementEnd:
    """Delete an element end."""


@dataclass(frozen=True, slots=True)
class ReplaceAttributes:
    """Replace all attributes of the element start under the cursor."""
    old: tuple = ()
    new: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "old", _attribute_tuple(self.old))
        object.__setattr__(self, "new", _attribute_tuple(self.new))


@dataclass(frozen=True, slots=True)
class UpdateAttributes:
    """Change some attributes of the element start under the cursor (None = absent)."""
    updates: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "updates", _update_tuple(self.updates))


@dataclass(frozen=True, slots=True)
class AnnotationBoundary:
    """Change the annotation update in force: close ``ends``, then set ``changes``."""
    ends: tuple = ()
    changes: tuple = ()

    def __post_init__(self):
        if type(self.ends) is not tuple:
            object.__setattr__(self, "ends", tuple(self.ends))
        object.__setattr__(self, "changes", _update_tuple(self.changes))


ELEMENT_END = ElementEnd()
DELETE_ELEMENT_END = DeleteElementEnd()

COMPONENT_TYPES = frozenset((
    Retain, Characters, ElementStart, ElementEnd, DeleteCharacters, DeleteElementStart,
    DeleteElementEnd, ReplaceAttributes, UpdateAttributes, AnnotationBoundary))


def input_size(c):
    t = type(c)
    if t is Retain:
        return c.count
    if t is DeleteCharacters:
        return len(c.text)
    if t is Characters or t is ElementStart or t is ElementEnd or t is AnnotationBoundary:
        return 0
    return 1


def output_size(c):
    t = type(c)
    if t is Retain:
        return c.count
    if t is Characters:
        return len(c.text)
    if t is DeleteCharacters or t is DeleteElementStart or t is DeleteElementEnd \
            or t is AnnotationBoundary:
        return 0
    return 1


# --------------------------------------------------------------------------
# Operations


class DocOp:
    """An immutable sequence of components."""

    __slots__ = ("components", "_hash")

    def __init__(self, components=()):
        self.components = tuple(components)
        self._hash = None

    def __iter__(self):
        return iter(self.components)

    def __len__(self):
        return len(self.components)

    def __getitem__(self, index):
        return self.components[index]

    def __eq__(self, other):
        if not isinstance(other, DocOp):
            return NotImplemented
        return self.components == other.components

    def __hash__(self):
        h = self._hash
        if h is None:
            h = self._hash = hash(self.components)
        return h

    def __repr__(self):
        return "DocOp(%r)" % (list(self.components),)

    @property
    def input_length(self):
        """Number of items of the document this operation applies to."""
        return sum(input_size(c) for c in self.components)

    @property
    def output_length(self):
        """Number of items of the document it produces."""
        return sum(output_size(c) for c in self.components)


class DocOpBuilder:
    """Appends components one by one; ``build`` keeps them exactly as given."""

    __slots__ = ("_components",)

    def __init__(self):
        self._components = []

    def retain(self, n):
        self._components.append(Retain(n))
        return self

    def characters(self, s):
        self._components.append(Characters(s))
        return self

    def element_start(self, type, attrs=None):
        self._components.append(ElementStart(type, _attribute_tuple(attrs)))
        return self

    def element_end(self):
        self._components.append(ELEMENT_END)
        return self

    def delete_characters(self, s):
        self._components.append(DeleteCharacters(s))
        return self

    def delete_element_start(self, type, attrs=None):
        self._components.append(DeleteElementStart(type, _attribute_tuple(attrs)))
        return self

    def delete_element_end(self):
        self._components.append(DELETE_ELEMENT_END)
        return self

    def replace_attributes(self, old, new):
        self._components.append(ReplaceAttributes(old, new))
        return self

    def update_attributes(self, updates):
        self._components.append(UpdateAttributes(updates))
        return self

    def annotation_boundary(self, ends=(), changes=()):
        self._components.append(AnnotationBoundary(tuple(ends), changes))
        return self

    def build(self):
        return DocOp(self._components)


