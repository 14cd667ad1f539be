"""
Random documents and random operations valid against them, for the property
tests of the document operation model.  Plain ``random.Random`` drives the
generators (fast enough for thousands of examples); Hypothesis supplies the
seeded Random and the size.

The operation generator walks the document left to right and keeps what the
validator (Java's DocOpAutomaton) requires true at every step:

- a retained or attribute-changed item is under an update whose old values
  are that item's values;
- an insertion is under an update whose old values are those of the input
  item left of the cursor;
- a deletion is under an update that takes every value where the deleted item
  differs from the last item produced to that item's value.
"""

from wavebox.model.docop import (
    AnnotationBoundary,
    Characters,
    DeleteCharacters,
    DeleteElementStart,
    DocOp,
    Document,
    ElementEnd,
    ElementStart,
    ReplaceAttributes,
    Retain,
    UpdateAttributes,
    DELETE_ELEMENT_END,
    ELEMENT_END,
)

TEXT = "abcdeXYé中"
TYPES = ("p", "line", "b")
ATTRIBUTE_NAMES = ("i", "t", "x")
ATTRIBUTE_VALUES = ("1", "2", "ü")
KEYS = ("a", "b", "link/manual", "style/fontWeight")
VALUES = (None, "1", "2")


def random_text(r, longest=4):
    return "".join(r.choice(TEXT) for _ in range(r.randint(1, longest)))


def random_attributes(r):
    return {k: r.choice(ATTRIBUTE_VALUES) for k in ATTRIBUTE_NAMES if r.random() < 0.3}


class _OpWriter:
    """Builds an operation, writing a boundary before an item only when the update changes."""

    def __init__(self):
        self.components = []
        self.update = {}

    def item(self, component, wanted):
        update = self.update
        ends = tuple(sorted(k for k in update if k not in wanted))
        changes = tuple(sorted((k,) + v for k, v in wanted.items() if update.get(k) != v))
        if ends or changes:
            self.components.append(AnnotationBoundary(ends, changes))
        self.update = dict(wanted)
        self.components.append(component)

    def finish(self):
        if self.update:
            self.components.append(AnnotationBoundary(tuple(sorted(self.update)), ()))
        return DocOp(self.components)


def _updated(annotations, update):
    result = dict(annotations)
    for k, (_old, new) in update.items():
        if new is None:
            result.pop(k, None)
        else:
            result[k] = new
    return result


def random_op(r, doc, annotate=True, attributes=True, structure=True, size=8, grow=0.3):
    """An operation valid against ``doc``; ``grow``: how likely it goes on inserting at the end."""
    items = [i.value for i in doc.items()]
    anns = [dict(i.annotations) for i in doc.items()]
    out = _OpWriter()
    plan = {}           # key -> the new value retained and inserted items get
    target = {}         # what a deletion must leave in force (validator's view)
    pos = 0
    length = len(items)
    p_plan = 0.25 if annotate and r.random() < 0.6 else 0.0

    def change_plan():
        k = r.choice(KEYS)
        if k in plan and r.random() < 0.4:
            del plan[k]
        else:
            plan[k] = r.choice(VALUES)

    def keep_update(ann):
        return {k: (ann.get(k), v) for k, v in plan.items()}

    def insert_update():
        left = anns[pos - 1] if pos else {}
        return left, {k: (left.get(k), v) for k, v in plan.items()}

    def delete_update(ann):
        keys = set(plan) | {k for k in set(ann) | set(target) if ann.get(k) != target.get(k)}
        return {k: (ann.get(k), target.get(k)) for k in keys}

    def insert_subtree(depth):
        nonlocal target
        left, update = insert_update()
        out.item(ElementStart(r.choice(TYPES), random_attributes(r) if attributes else {}),
                 update)
        for _ in range(r.randint(0, 2)):
            if p_plan and r.random() < p_plan:
                change_plan()
                left, update = insert_update()
            if depth < 2 and r.random() < 0.3:
                insert_subtree(depth + 1)
                left, update = insert_update()
            else:
                out.item(Characters(random_text(r)), update)
        left, update = insert_update()
        out.item(ELEMENT_END, update)
        target = _updated(left, update)

    steps = 0
    while pos < length or (steps == 0 or r.random() < grow):
        steps += 1
        if steps > 4 * size + length:
            # Enough changes: keep the rest as it is.
            if pos < length:
                while pos < length:
                    update = keep_update(anns[pos])
                    out.item(Retain(1), update)
                    target = _updated(anns[pos], update)
                    pos += 1
            break
        at_end = pos >= length
        here = None if at_end else items[pos]
        roll = r.random()
        if p_plan and r.random() < p_plan:
            change_plan()
        if at_end:
            roll *= 0.2
        if roll < 0.12:
            left, update = insert_update()
            out.item(Characters(random_text(r)), update)
            target = _updated(left, update)
        elif roll < 0.2 and structure:
            insert_subtree(0)
        elif roll < 0.32 and type(here) is str:
            for _ in range(r.randint(1, 3)):
                if pos >= length or type(items[pos]) is not str:
                    break
                out.item(DeleteCharacters(items[pos]), delete_update(anns[pos]))
                pos += 1
        elif roll < 0.38 and type(here) is ElementStart and structure:
            depth = 0
            while True:
                v = items[pos]
                if type(v) is ElementStart:
                    component = DeleteElementStart(v.type, v.attributes)
                    depth += 1
                elif type(v) is ElementEnd:
                    component = DELETE_ELEMENT_END
                    depth -= 1
                else:
                    component = DeleteCharacters(v)
                out.item(component, delete_update(anns[pos]))
                pos += 1
                if depth == 0:
                    break
        elif roll < 0.46 and type(here) is ElementStart and attributes:
            update = keep_update(anns[pos])
            current = dict(here.attributes)
            if r.random() < 0.5:
                out.item(ReplaceAttributes(current, random_attributes(r)), update)
            else:
                changes = {}
                for k in ATTRIBUTE_NAMES:
                    if r.random() < 0.4:
                        new = r.choice(ATTRIBUTE_VALUES + (None,))
                        changes[k] = (current.get(k), new)
                out.item(UpdateAttributes(changes), update)
            target = _updated(anns[pos], update)
            pos += 1
        else:
            for _ in range(r.randint(1, 4)):
                if pos >= length:
                    break
                update = keep_update(anns[pos])
                out.item(Retain(1), update)
                target = _updated(anns[pos], update)
                pos += 1
    return out.finish()


def random_document(r, ops=3, size=8, **kwargs):
    """A document made by 1..ops random operations from the empty one."""
    doc = Document().apply(random_op(r, Document(), size=size, grow=0.85, **kwargs))
    for _ in range(r.randint(0, ops - 1)):
        doc = doc.apply(random_op(r, doc, size=size, **kwargs))
    return doc


def random_text_document(r, longest=12):
    return Document.from_op(DocOp([Characters(random_text(r, longest))]))


def random_keystroke(r, doc):
    """[retain] [insert or delete some text] [retain] on a text-only document."""
    text = doc.text()
    n = len(text)
    kind = r.choice(("retain", "insert", "delete"))
    if kind == "retain" or (kind == "delete" and n == 0):
        return DocOp([Retain(n)] if n else [])
    p = r.randint(0, n - 1 if kind == "delete" else n)
    if kind == "insert":
        middle = Characters(random_text(r, 3))
        rest = n - p
    else:
        m = r.randint(1, min(3, n - p))
        middle = DeleteCharacters(text[p:p + m])
        rest = n - p - m
    parts = ([Retain(p)] if p else []) + [middle] + ([Retain(rest)] if rest else [])
    return DocOp(parts)


def mutated(r, op):
    """``op`` damaged in one of the ways a faulty or hostile peer might."""
    cs = list(op.components)
    how = r.randrange(9)
    if how == 0 and cs:
        del cs[r.randrange(len(cs))]
    elif how == 1 and cs:
        i = r.randrange(len(cs))
        cs.insert(i, cs[i])
    elif how == 2 and len(cs) > 1:
        i = r.randrange(len(cs) - 1)
        cs[i], cs[i + 1] = cs[i + 1], cs[i]
    elif how == 3:
        retains = [i for i, c in enumerate(cs) if type(c) is Retain]
        if retains:
            i = r.choice(retains)
            cs[i] = Retain(cs[i].count + r.choice((-2, -1, 1, 5)))
    elif how == 4:
        cs.insert(r.randint(0, len(cs)), r.choice((
            Retain(r.randint(-1, 3)), Characters(r.choice(("", "x", "\ud800", "\U0001F600"))),
            DeleteCharacters(r.choice(("a", "zz", ""))), ELEMENT_END, DELETE_ELEMENT_END,
            ElementStart(r.choice(("p", "1p", "")), (("t", "1"), ("i", "2"))),
            DeleteElementStart("p", {}), UpdateAttributes({"x": ("9", None)}),
            ReplaceAttributes({"q": "1"}, {}),
            AnnotationBoundary(("a",), ()), AnnotationBoundary((), (("k@", None, "1"),)),
            AnnotationBoundary((), (("b", "1", None), ("a", None, None))))))
    elif how == 5:
        texts = [i for i, c in enumerate(cs) if type(c) in (DeleteCharacters, Characters)]
        if texts:
            i = r.choice(texts)
            cs[i] = type(cs[i])(random_text(r))
    elif how == 6:
        bounds = [i for i, c in enumerate(cs) if type(c) is AnnotationBoundary]
        if bounds:
            i = r.choice(bounds)
            b = cs[i]
            cs[i] = AnnotationBoundary(b.ends, tuple((k, r.choice(VALUES), n)
                                                     for k, _o, n in b.changes))
    elif how == 7:
        cs = cs[:r.randint(0, len(cs))]
    else:
        r.shuffle(cs)
    return DocOp(cs)
