"""The import graph of src/dynpath, components/ and pipeline/, read from the source with :mod:`ast`
(nothing is imported), for tests/test_import_graph.py (no cycles) and tests/test_dvc_stages.py
(each DVC stage lists the code it runs).

The graph is read from the source, not by importing anything, so that a cycle held together by
function-local imports (which Python tolerates until the day the import order changes) is found as
surely as one at module level. Edges:

- every ``import x`` / ``from x import y`` anywhere in a module, function bodies included
  (``y`` counts as a module when it is one);
- ``importlib.import_module("literal")``: a dynamic import is still an import;
- importing ``a.b.c`` runs ``a/__init__.py`` and ``a/b/__init__.py``, so it depends on them too,
  except a module's own parent packages: by the time ``a.b.c`` runs, ``a.b`` has started already;
- ``from a.b import name`` where ``name`` is not a submodule needs ``a/b/__init__.py`` to have
  run (up to ``name``), so it is an edge to ``a.b`` even from inside ``a.b``: a submodule that
  imports a name from its own package closes a cycle (``a.b`` imports the submodule, which needs
  ``a.b`` finished), the circular ImportError Python raises at import time.

Imports under ``if TYPE_CHECKING:`` never run and are left out: annotations may name any type.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"dynpath": ROOT / "src" / "dynpath", "components": ROOT / "components"}
SOURCES["pipeline"] = ROOT / "pipeline"


def module_files(sources: dict[str, Path]) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under each source root."""
    out: dict[str, Path] = {}
    for package, directory in sources.items():
        for path in sorted(directory.rglob("*.py")):
            parts = [package, *path.relative_to(directory).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """All nodes except those under ``if TYPE_CHECKING:`` (its ``else`` branch does run)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def imported_names(module: str, path: Path, is_package: bool) -> Iterator[str]:
    """Dotted names this module imports at run time: a module, or ``module.attribute`` (which
    needs ``module`` executed)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                prefix = ".".join([*base, *([node.module] if node.module else [])])
            else:
                prefix = node.module or ""
            for alias in node.names:
                yield f"{prefix}.{alias.name}"
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
            == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.args[0].value


def import_graph(sources: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules it makes Python execute when imported or called."""
    files = module_files(sources)
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        for target in imported_names(name, path, path.name == "__init__.py"):
            if target not in files:  # ``module.attribute``: the module must have run
                target = target.rpartition(".")[0]
                if target not in files:
                    continue  # third-party
            if target != name:  # needed executed, even when it is this module's own package
                graph[name].add(target)
            parts = target.split(".")
            for i in range(1, len(parts)):  # the packages above it start first
                dep = ".".join(parts[:i])
                if dep in files and dep != name and not name.startswith(dep + "."):
                    graph[name].add(dep)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One concrete cycle per strongly connected component of more than one module."""
    return [_one_cycle(graph, set(comp)) for comp in strongly_connected(graph)]


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan): every module caught
    in some cycle with the others."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
                components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return components


def _one_cycle(graph: dict[str, set[str]], comp: set[str]) -> list[str]:
    """A shortest path start -> ... -> start inside one strongly connected component."""
    start = min(comp)
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & comp):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if w not in parents:
                    parents[w] = v
                    nxt.append(w)
        frontier = nxt
    return sorted(comp)  # unreachable for a real component


def closure(graph: dict[str, set[str]], entries: Iterable[str]) -> set[str]:
    """Every project module that importing (and calling into) ``entries`` may execute."""
    seen = set(entries)
    todo = list(seen)
    while todo:
        for dep in graph[todo.pop()]:
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen
