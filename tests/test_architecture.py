"""The house rules of the import graph, read from the source with ``ast`` (nothing is imported).

The data flow reads top to bottom and imports only run down it (DESIGN.md, "The data flow"):

    yaml_io / paths / logs / registry / structures / weights_io / config / device   (the ground floor)
    -> nn -> data -> engine -> eval -> deploy -> inference -> tools -> api -> cli

A module may import its own room and any room below it, never one above. Imports inside functions
(the lazy ones) count as well: they still tie the lower room to the upper one. And no module may
reach itself through a chain of imports (no import cycles, lazy or not).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "modyolo"

# Room -> floor. Lower numbers are lower in the house; an import may go to the same floor or down.
FLOORS: dict[str, int] = {
    "yaml_io": 0,
    "paths": 0,
    "logs": 0,
    "registry": 0,
    "structures": 0,
    "weights_io": 0,
    "config": 0,
    "device": 0,
    "cfg": 0,
    "nn": 1,
    "data": 2,
    "engine": 3,
    "eval": 4,
    "deploy": 5,
    "inference": 6,
    "tools": 7,
    "api": 8,
    "cli": 9,
    "__main__": 9,
    "__init__": 8,  # the package's lazy public API sits with api.py
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((SRC / PACKAGE).rglob("*.py"))}


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute name a (possibly relative) ``from X import ...`` refers to."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if _is_package(path) else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:`` (they never run: annotations only)."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            found |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return found


def _imports(module: str, path: Path, known: set[str], typing_only: bool = True) -> set[str]:
    """The package modules ``module`` imports, at top level or inside functions alike; with
    ``typing_only=False`` the imports under ``if TYPE_CHECKING:`` are left out."""
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skip = set() if typing_only else _type_checking_nodes(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, path, node)
            # `from pkg import sub` names a submodule when one exists, else an attribute of pkg
            names = [f"{target}.{a.name}" if f"{target}.{a.name}" in known else target for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:  # `import a.b.c` where c is an attribute: walk up
                name = name.rpartition(".")[0]
            if name.startswith(PACKAGE + ".") and name != module:
                found.add(name)
    return found


def import_graph(typing_only: bool = True) -> dict[str, set[str]]:
    """module -> the package modules it imports (``modyolo.nn.model`` style names).

    ``typing_only=False`` leaves out the imports under ``if TYPE_CHECKING:``: they never execute, so
    they cannot close an import cycle (the cycle check uses this graph). A lower room must not even
    name an upper room's types, so the upward check keeps them."""
    modules = _modules()
    known = set(modules)
    return {m: _imports(m, p, known, typing_only) for m, p in modules.items()}


def room(module: str) -> str:
    """``modyolo.nn.blocks.resnet`` -> ``nn``; ``modyolo`` (the package __init__) -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def upward_edges(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for src, targets in graph.items():
        for dst in targets:
            if FLOORS[room(dst)] > FLOORS[room(src)]:
                bad.append(f"{src} -> {dst}  ({room(src)} must not import {room(dst)})")
    return sorted(bad)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def test_every_room_has_a_floor():
    rooms = {room(m) for m in _modules()}
    unplaced = sorted(rooms - set(FLOORS))
    assert not unplaced, f"new top-level module(s) {unplaced}: give them a floor in FLOORS in {__file__}"


# Today's debts, paid off one by one (issue 13). A new entry here is a design decision, not a fix.
KNOWN_CYCLES: set[str] = set()
KNOWN_UPWARD: set[str] = set()


def _check(found: set[str], known: set[str], what: str) -> None:
    new = sorted(found - known)
    assert not new, f"new {what} (break them by moving the shared code down a floor):\n" + "\n".join(new)
    paid = sorted(known - found)
    assert not paid, f"{what} paid off: remove them from the KNOWN list in {__file__}:\n" + "\n".join(paid)


def test_no_import_cycles():
    _check({" <-> ".join(c) for c in cycles(import_graph(typing_only=False))}, KNOWN_CYCLES, "import cycles")


def test_no_upward_imports():
    _check(set(upward_edges(import_graph())), KNOWN_UPWARD, "imports that run up the house")


# The checker itself: it must see what it claims to see.
@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"modyolo.nn.a": {"modyolo.nn.b"}, "modyolo.nn.b": {"modyolo.nn.a"}}, [["modyolo.nn.a", "modyolo.nn.b"]]),
        ({"modyolo.nn.a": {"modyolo.nn.b"}, "modyolo.nn.b": set()}, []),
    ],
)
def test_cycle_finder(graph, expected):
    assert cycles(graph) == expected


def test_upward_edge_finder_and_lazy_imports(tmp_path, monkeypatch):
    pkg = tmp_path / PACKAGE
    (pkg / "nn").mkdir(parents=True)
    (pkg / "engine").mkdir()
    for init in (pkg / "__init__.py", pkg / "nn" / "__init__.py", pkg / "engine" / "__init__.py"):
        init.write_text("")
    (pkg / "engine" / "loop.py").write_text(
        "from typing import TYPE_CHECKING\nfrom ..nn import model\n"
        "if TYPE_CHECKING:\n    from modyolo.engine.hooks import Hook\n"
    )
    (pkg / "engine" / "hooks.py").write_text("from modyolo.engine.loop import Loop\n")
    (pkg / "nn" / "model.py").write_text("def f():\n    from modyolo.engine.loop import x\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path)
    graph = import_graph()
    assert graph["modyolo.engine.loop"] == {"modyolo.nn.model", "modyolo.engine.hooks"}
    assert cycles(graph) == [["modyolo.engine.hooks", "modyolo.engine.loop", "modyolo.nn.model"]]
    runtime = import_graph(typing_only=False)  # the TYPE_CHECKING import never runs: no cycle through it
    assert runtime["modyolo.engine.loop"] == {"modyolo.nn.model"}
    assert cycles(runtime) == [["modyolo.engine.loop", "modyolo.nn.model"]]
    assert graph["modyolo.nn.model"] == {"modyolo.engine.loop"}  # the lazy import is seen
    assert upward_edges(graph) == ["modyolo.nn.model -> modyolo.engine.loop  (nn must not import engine)"]
