"""
The house's arrows (docs/design.md): no import circles anywhere in wavebox,
counting imports inside functions too (a lazy import is still an arrow), and
the pure model importing nothing of the rest of wavebox or of Twisted.
"""

import ast
import os

from twisted.trial import unittest

import wavebox

PACKAGE = os.path.dirname(os.path.abspath(wavebox.__file__))


def module_name(path):
    relative = os.path.relpath(path, os.path.dirname(PACKAGE))[:-3].replace(os.sep, ".")
    return relative[:-len(".__init__")] if relative.endswith(".__init__") else relative


def modules():
    for directory, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py") and not name.endswith("_pb2.py"):
                path = os.path.join(directory, name)
                yield module_name(path), path


def imports_of(name, path, known):
    """The wavebox modules ``name`` imports, wherever in the file."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = parent + ("." + base if base else "")
            targets = [base] + ["%s.%s" % (base, alias.name) for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def all_imports(path):
    """Every module a file imports by absolute name, wherever in the file."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names.append(node.module)
    return names


def graph():
    table = dict(modules())
    return {name: imports_of(name, path, table) for name, path in table.items()}


def cycles(edges):
    """Every strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on_stack, result = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                result.append(frozenset(component))
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return set(result)


class LayerTests(unittest.SynchronousTestCase):

    def test_no_import_circles(self):
        self.assertEqual(cycles(graph()), set())

    def test_the_model_imports_nothing_above_it_and_no_twisted(self):
        edges = graph()
        for name, targets in edges.items():
            if name.startswith("wavebox.model"):
                above = [t for t in targets if not t.startswith("wavebox.model")]
                self.assertEqual(above, [], name)
                self.assertEqual([m for m in all_imports(dict(modules())[name])
                                  if m.split(".")[0] in ("twisted", "zope")], [], name)

    def test_the_server_core_imports_nothing_above_it(self):
        above = ("wavebox.config", "wavebox.service", "wavebox.cli", "wavebox.admin",
                 "wavebox.metrics", "wavebox.console", "wavebox.web", "wavebox.federation",
                 "wavebox.xmpp")
        for name, targets in graph().items():
            if name.startswith("wavebox.server"):
                self.assertEqual(sorted(t for t in targets if t.startswith(above)), [], name)

    def test_the_cycle_finder_finds_a_lazy_circle(self):
        self.assertEqual(cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}),
                         {frozenset("abc")})
