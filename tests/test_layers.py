"""The layout's rules, checked on the source: arrows point down, no import cycles, core stays light.

Every import counts, function-local ones included (they hide cycles as well as module-level
ones do); only imports under `if TYPE_CHECKING:` are skipped, since they never run.
"""

from __future__ import annotations

import ast
import functools
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "recbatch"

STAGES = {"prep", "train", "evaluate", "score"}
# Above the stages: wiring, commands and benchmarks, which may use any stage.
TOP = {"cli", "cron", "pipeline", "summary", "bench", "synth", "__main__"}
# Below the stages: what every stage may share; none of these may import a stage or the top.
LOWER = {
    "core",
    "artifacts",
    "io",
    "models",
    "ops",
    "config",
    "config_doc",
    "errors",
    "faults",
    "layout",
    "session",
    "session_settings",
    "storage",
}
CORE_THIRD_PARTY = {"numpy", "pyarrow"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Absolute names of every module imported at run time, anywhere in the file."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.add(name)
            # `from recbatch.x import y` may import the submodule recbatch.x.y.
            found.update(f"{name}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


@functools.cache
def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        imported = _imports(ast.parse(path.read_text(encoding="utf-8")), name, path.name == "__init__.py")
        graph[name] = {m for m in imported if m in modules and m != name}
    return graph


def _external(path: Path) -> set[str]:
    name = _module_name(path)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {m.split(".")[0] for m in _imports(tree, name, path.name == "__init__.py") if m}


def _unit(module: str) -> str:
    """recbatch.score.engine -> score; recbatch.cli -> cli; recbatch -> recbatch."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def _unit_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    units: dict[str, set[str]] = {}
    for module, imported in graph.items():
        units.setdefault(_unit(module), set()).update(
            _unit(m) for m in imported if _unit(m) != _unit(module) and m != "recbatch"
        )
    return units


def test_every_unit_is_in_a_layer():
    units = {_unit(m) for m in _graph()} - {"recbatch"}
    assert units - STAGES - TOP - LOWER == set(), "a new module or package: add it to a layer here"


def test_no_import_cycle_between_modules():
    assert _cycles(_graph()) == []


def test_no_import_cycle_between_packages():
    assert _cycles(_unit_graph(_graph())) == []


@pytest.mark.parametrize("unit", sorted(LOWER))
def test_lower_layers_import_no_stage(unit):
    bad = sorted((STAGES | TOP) & _unit_graph(_graph()).get(unit, set()))
    assert bad == [], f"recbatch.{unit} imports {bad}: move the shared piece down instead"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stages_import_no_sibling_stage(stage):
    bad = sorted(((STAGES - {stage}) | TOP) & _unit_graph(_graph()).get(stage, set()))
    assert bad == [], f"recbatch.{stage} imports {bad}: let pipeline.py wire the stages together"


def test_core_uses_only_numpy_pyarrow_and_itself():
    for path in (PACKAGE / "core").rglob("*.py"):
        graph_units = {_unit(m) for m in _graph()[_module_name(path)]}
        assert graph_units <= {"core"}, f"{path.name} imports {graph_units - {'core'}}"
        external = _external(path) - set(sys.stdlib_module_names) - {"recbatch", "__future__"}
        assert external <= CORE_THIRD_PARTY, f"{path.name} imports {external - CORE_THIRD_PARTY}"


def test_the_checker_finds_a_hidden_cycle(tmp_path):
    """The checks above cannot pass vacuously: a function-local cycle is found."""
    graph = {"a": {"b"}, "b": set()}
    tree = ast.parse("def f():\n    from recbatch.a import x\n")
    graph["b"] |= {m.split(".")[-1] for m in _imports(tree, "recbatch.b", False) if m == "recbatch.a"}
    assert _cycles(graph) == [["a", "b"]]
    guarded = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from recbatch import a\n")
    assert "recbatch.a" not in _imports(guarded, "recbatch.b", False)
