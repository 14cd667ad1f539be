"""
Document operation speed: transform of two single-keystroke operations on a
10,000-character document (the fast path and, as baseline, the general Java
construction), compose of two keystrokes, and applying a keystroke to the
document.  Prints rates; asserts nothing.

    python benchmarks/bench_ot.py [--seconds S]
"""

import argparse
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from wavebox.model.docop import (  # noqa: E402
    Characters,
    DeleteCharacters,
    DocOp,
    Document,
    Retain,
    compose,
    transform,
)
from wavebox.model.docop.transform import transform_general  # noqa: E402

SIZE = 10000


def keystroke(r, text):
    """Type one character, or delete one, at a random place."""
    p = r.randrange(len(text))
    if r.random() < 0.7:
        return DocOp([Retain(p), Characters("x"), Retain(len(text) - p)])
    return DocOp([Retain(p), DeleteCharacters(text[p]), Retain(len(text) - p - 1)])


def rate(label, fn, items, seconds):
    """Call fn on items round-robin for about ``seconds``; print calls per second."""
    n = len(items)
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for i in range(n):
            fn(items[i])
        done += n
        now = time.perf_counter()
        if now >= deadline:
            break
    per_second = done / (now - start)
    print("%-58s %12.0f /s  (%6.2f us each)" % (label, per_second, 1e6 / per_second))
    return per_second


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    args = parser.parse_args(argv)

    r = random.Random(42)
    text = "".join(r.choice("abcdefghij ") for _ in range(SIZE))
    doc = Document.from_op(DocOp([Characters(text)]))
    pairs = [(keystroke(r, text), keystroke(r, text)) for _ in range(1000)]
    print("document: %d characters; %d distinct keystroke pairs (70%% inserts)" % (
        doc.size, len(pairs)))

    fast = rate("transform, keystroke pair (fast path)",
                lambda p: transform(p[0], p[1]), pairs, args.seconds)
    general = rate("transform, keystroke pair (general construction, baseline)",
                   lambda p: transform_general(p[0], p[1]), pairs, args.seconds)
    print("%-58s %12.1fx" % ("fast path speed-up", fast / general))

    def from_components(p):
        a, b = p
        transform(DocOp(a.components), DocOp(b.components))
    rate("transform incl. building both DocOps", from_components, pairs, args.seconds)

    sequences = []
    for a, _ in pairs[:200]:
        after = doc.apply(a)
        sequences.append((a, keystroke(r, after.text())))
    rate("compose, keystroke then keystroke", lambda p: compose(p[0], p[1]), sequences,
         args.seconds)
    rate("apply a keystroke to the 10k-character document (incl. checks)",
         lambda p: doc.apply(p[0]), pairs[:200], args.seconds)


if __name__ == "__main__":
    main()
