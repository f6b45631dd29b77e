"""The layers of DESIGN.md, checked on the source: every import (ast, inside functions too) runs downwards.

symbols/ imports no project code; common/ imports common/ and symbols/; data/ imports data/, common/, symbols/;
tools/ imports tools/, common/, symbols/; the top-level scripts import common/, symbols/ and data/, never tools/
or each other; benchmarks/ import benchmarks/, common/, symbols/, data/. No circle between project modules.
"""

import ast

import pytest

from tests.conftest import REPO

PACKAGES = ("symbols", "common", "data", "tools", "benchmarks")
ALLOWED = {
    "symbols": {"symbols"},
    "common": {"common", "symbols"},
    "data": {"data", "common", "symbols"},
    "tools": {"tools", "common", "symbols"},
    "script": {"common", "symbols", "data"},
    "benchmarks": {"benchmarks", "common", "symbols", "data"},
}


def project_modules(root=REPO):
    """{dotted module name: path} of every project source file (tests excluded)."""
    mods = {}
    for path in sorted(root.glob("*.py")):
        if path.name != "setup.py":
            mods[path.stem] = path
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            mods[name] = path
    return mods


def layer(name):
    """The layer a module belongs to: its package, or 'script' for a top-level file."""
    head = name.split(".")[0]
    return head if head in PACKAGES else "script"


def imports_of(name, path, mods):
    """[(line, imported project module)] for every import statement in the file, at any depth."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(p for p in [*parts, base] if p)
            # `from pkg import mod` imports the submodule pkg.mod where there is one
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in mods:  # `import a.b.c` of a module a.b: the deepest project module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.append((node.lineno, target))
    return found


def graph(root=REPO):
    """{module: [(line, imported module)]} over the project."""
    mods = project_modules(root)
    return {name: imports_of(name, path, mods) for name, path in mods.items()}


def layer_violations(edges):
    """Lines 'a.py:12 imports b (layer x may not import layer y)'."""
    bad = []
    for name, targets in edges.items():
        for line, target in targets:
            if layer(target) not in ALLOWED[layer(name)]:
                bad.append(f"{name}:{line} imports {target} ({layer(name)} may not import {layer(target)})")
    return bad


def circles(edges):
    """Every import circle between modules, as lists of module names (strongly connected components > 1)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):  # Tarjan's algorithm; the graph is a few hundred nodes, so recursion depth is no concern
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for _, w in edges.get(v, []):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    return out


def test_imports_run_down_the_layers():
    assert layer_violations(graph()) == []


def test_no_import_circle():
    assert circles(graph()) == []


def write(root, files):
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.mark.parametrize(
    "files, expected",
    [
        ({"symbols/__init__.py": "", "symbols/a.py": "from common.util import x\n", "common/__init__.py": ""}, 1),
        ({"common/__init__.py": "", "common/a.py": "def f():\n    import score\n", "score.py": ""}, 1),
        ({"common/__init__.py": "", "common/a.py": "from tools import launch\n", "tools/launch.py": ""}, 1),
        ({"predict.py": "from score import read_synset\n", "score.py": ""}, 1),
        ({"train.py": "from tools.export import q\n", "tools/__init__.py": "", "tools/export.py": ""}, 1),
        ({"common/__init__.py": "", "common/a.py": "from common import b\nimport symbols\n", "common/b.py": ""}, 0),
    ],
)
def test_layer_check_catches_an_upward_import(tmp_path, files, expected):
    write(tmp_path, {"symbols/__init__.py": "", **files})
    assert len(layer_violations(graph(tmp_path))) == expected


def test_circle_check_catches_a_loop_hidden_in_a_function(tmp_path):
    write(
        tmp_path,
        {
            "common/__init__.py": "",
            "common/data.py": "from common.augment import G\n",
            "common/dali.py": "def f():\n    from common.data import ImageIter\n",
            "common/augment.py": "from . import dali\n",
        },
    )
    assert circles(graph(tmp_path)) == [["common.augment", "common.dali", "common.data"]]
