"""
The normal form of document operations: the one the Java reference emits,
shared by building (normalize), composition and transformation.
"""

from wavebox.model.docop.components import (
    AnnotationBoundary, Characters, DeleteCharacters, DocOp, Retain, utf16_key,
)

class Normalizer:
    """
    Collects components into the normal form the Java reference emits: runs of
    retain, characters and deleteCharacters are merged, empty ones dropped,
    and annotation boundaries are replaced by one boundary before each item
    whose effective update differs from the one in force.

    ``annotate``/``close`` set the update wanted from the next item on; the
    boundary is only written when an item follows (or at ``finish``).
    """

    __slots__ = ("_out", "_current", "_wanted", "_dirty", "_run_type", "_run")

    def __init__(self):
        self._out = []
        self._current = {}    # key -> (old, new) as last written
        self._wanted = {}     # key -> (old, new) wanted for the next item
        self._dirty = False
        self._run_type = None  # Retain, Characters or DeleteCharacters
        self._run = None       # int, or list of str

    # annotation state

    def annotate(self, key, old, new):
        self._wanted[key] = (old, new)
        self._dirty = True

    def close(self, key):
        if key in self._wanted:
            del self._wanted[key]
            self._dirty = True

    def boundary(self, b):
        for key, old, new in b.changes:
            self._wanted[key] = (old, new)
        for key in b.ends:
            self._wanted.pop(key, None)
        self._dirty = True

    def wanted(self):
        return self._wanted

    def _flush_run(self):
        t = self._run_type
        if t is not None:
            if t is Retain:
                self._out.append(Retain(self._run))
            else:
                self._out.append(t("".join(self._run)))
            self._run_type = None

    def _flush_annotations(self):
        self._dirty = False
        current, wanted = self._current, self._wanted
        if current == wanted:
            return
        ends = [k for k in current if k not in wanted]
        changes = [k for k, v in wanted.items() if current.get(k, _MISSING) != v]
        if not ends and not changes:
            return
        self._flush_run()
        ends.sort(key=utf16_key)
        changes.sort(key=utf16_key)
        self._out.append(AnnotationBoundary(
            tuple(ends), tuple((k,) + wanted[k] for k in changes)))
        self._current = dict(wanted)

    # items

    def retain(self, n):
        if n > 0:
            if self._dirty:
                self._flush_annotations()
            if self._run_type is Retain:
                self._run += n
            else:
                self._flush_run()
                self._run_type = Retain
                self._run = n

    def _text(self, t, s):
        if s:
            if self._dirty:
                self._flush_annotations()
            if self._run_type is t:
                self._run.append(s)
            else:
                self._flush_run()
                self._run_type = t
                self._run = [s]

    def characters(self, s):
        self._text(Characters, s)

    def delete_characters(self, s):
        self._text(DeleteCharacters, s)

    def single(self, component):
        """Any one-item component (element, attribute change, element deletion)."""
        if self._dirty:
            self._flush_annotations()
        self._flush_run()
        self._out.append(component)

    def add(self, c):
        """Add any component, boundaries included."""
        t = type(c)
        if t is Retain:
            self.retain(c.count)
        elif t is Characters:
            self._text(Characters, c.text)
        elif t is DeleteCharacters:
            self._text(DeleteCharacters, c.text)
        elif t is AnnotationBoundary:
            self.boundary(c)
        else:
            self.single(c)

    def finish(self, close_all=False):
        if close_all:
            self._wanted = {}
            self._dirty = True
        if self._dirty:
            self._flush_annotations()
        self._flush_run()
        return DocOp(self._out)


_MISSING = object()


def normalize(op):
    """
    The normal form of ``op``: adjacent retain / characters / deleteCharacters
    merged, a boundary only where the effective annotation update changes
    (entries asserting old == new are kept: they are checked), and every key
    closed at the end.  Two operations with the same normal form have the same
    effect and the same validity on every document.
    """
    n = Normalizer()
    for c in op:
        n.add(c)
    return n.finish(close_all=True)


