"""No import cycles in src/dynpath, components/ or pipeline/ (docs/design.md, "Import rules").

How the graph is built (function-level and dynamic imports included, TYPE_CHECKING left out):
tests/import_graph.py.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from import_graph import (
    ROOT,
    SOURCES,
    find_cycles,
    import_graph,
    module_files,
    strongly_connected,
)


def test_no_import_cycles() -> None:
    graph = import_graph(SOURCES)
    cycles = find_cycles(graph)
    assert not cycles, "import cycles (break them; see docs/design.md):\n" + "\n".join(
        f"{' -> '.join(c)}\n  (all modules caught in it: {', '.join(m)})"
        for c, m in zip(cycles, strongly_connected(graph), strict=True)
    )


def test_the_graph_sees_function_level_and_dynamic_imports(tmp_path: Path) -> None:
    """The detector itself: a cycle closed only inside a function, one closed only through
    ``importlib.import_module`` and one through a package ``__init__`` are all found; an import
    under TYPE_CHECKING is not an edge."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg import b\n")
    (pkg / "b.py").write_text("def f():\n    from pkg.a import x\n")
    (pkg / "c.py").write_text("import importlib\nimportlib.import_module('pkg.d')\n")
    (pkg / "d.py").write_text("from . import c\n")
    (pkg / "sub" / "__init__.py").write_text("from pkg.e import y\n")
    (pkg / "e.py").write_text("from pkg.sub.f import z\n")
    (pkg / "sub" / "f.py").write_text("")
    (pkg / "g.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.h import T\n"
    )
    (pkg / "h.py").write_text("from pkg.g import U\n")
    cycles = find_cycles(import_graph({"pkg": pkg}))
    assert sorted(tuple(sorted(set(c))) for c in cycles) == [
        ("pkg.a", "pkg.b"),
        ("pkg.c", "pkg.d"),
        ("pkg.e", "pkg.sub"),
    ]
    for cycle in cycles:
        assert cycle[0] == cycle[-1]


def test_the_graph_sees_a_submodule_importing_from_its_own_package(tmp_path: Path) -> None:
    """The planted fault of issue 25: ``from dynpath.data.synthetic import generate`` inside
    ``data/synthetic/planner.py`` is a cycle (the package imports the planner, which needs the
    package finished: a circular ImportError). Importing a sibling submodule through the package
    (``from pkg.sub import other``), or the package starting first, is not."""
    sub = tmp_path / "pkg" / "sub"
    sub.mkdir(parents=True)
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (sub / "__init__.py").write_text("from pkg.sub.planner import plan\n\ndef generate(): ...\n")
    (sub / "planner.py").write_text("from pkg.sub import grammar\n\ndef plan(): ...\n")
    (sub / "grammar.py").write_text("from . import render\n")
    (sub / "render.py").write_text("import pkg.data\n")
    (tmp_path / "pkg" / "data.py").write_text("")
    assert find_cycles(import_graph({"pkg": tmp_path / "pkg"})) == []
    (sub / "planner.py").write_text("from pkg.sub import generate, grammar\n\ndef plan(): ...\n")
    graph = import_graph({"pkg": tmp_path / "pkg"})
    assert "pkg.sub" in graph["pkg.sub.planner"]
    assert find_cycles(graph) == [["pkg.sub", "pkg.sub.planner", "pkg.sub"]]
    (sub / "planner.py").write_text("from . import generate\n")  # relative: the same fault
    assert find_cycles(import_graph({"pkg": tmp_path / "pkg"})) == [
        ["pkg.sub", "pkg.sub.planner", "pkg.sub"]
    ]


#: docs/design.md, "Import rules": the layers, lowest first; a module imports from its own layer
#: or below. The longest matching prefix decides (``dynpath.kfp`` is above ``dynpath``).
LAYERS: tuple[tuple[str, ...], ...] = (
    (
        "dynpath",
        "dynpath.errors",
        "dynpath.io",
        "dynpath.strict_yaml",
        "dynpath.registry",
        "dynpath.config",
        "dynpath.variants",
        "dynpath.stages",
        "dynpath.schemas",
        "dynpath.device",
        "dynpath.timing",
        "dynpath.torch_files",
        "dynpath.seeds",
        "dynpath.s3",
        "dynpath.profiles",
    ),
    ("dynpath.data", "dynpath.extract", "dynpath.model"),
    ("dynpath.engine",),
    ("dynpath.inference", "dynpath.tracking"),
    ("dynpath.steps", "dynpath.report", "dynpath.bench"),
    ("dynpath.cli", "dynpath.demo", "dynpath.kfp", "components", "pipeline"),
)


def layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None
    for i, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and (
                best is None or len(name) > best[1]
            ):
                best = (i, len(name))
    return None if best is None else best[0]


def test_every_module_has_a_layer_and_imports_downwards() -> None:
    graph = import_graph(SOURCES)
    unplaced = sorted(m for m in graph if layer_of(m) is None)
    assert not unplaced, f"place these modules in a layer (docs/design.md): {unplaced}"
    upward = [
        f"{a} -> {b}"
        for a, deps in sorted(graph.items())
        for b in sorted(deps)
        if (layer_of(b) or 0) > (layer_of(a) or 0)
    ]
    assert not upward, "imports from a higher layer (docs/design.md, Import rules):\n" + "\n".join(
        upward
    )


def design_layers(text: str) -> list[list[str]]:
    """The layers docs/design.md names ("The layers, lowest first: `a`, `b` → `c` ..."), as
    module names (``dynpath.`` added, except the top-level ``components`` and ``pipeline``)."""
    sentence = text.split("The layers, lowest first:", 1)[1].split(". A module", 1)[0]
    top = ("components", "pipeline")
    return [
        [n if n in top else f"dynpath.{n}" for n in re.findall(r"`([\w.]+)`", layer)]
        for layer in sentence.split("→")
    ]


def test_the_design_names_the_layers_of_this_test() -> None:
    """docs/design.md's layer list is the reader's copy of LAYERS: a module placed here and not
    there (``seeds``, ``s3``, ``profiles`` once) leaves the design wrong."""
    text = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    expected = [[n for n in layer if n != "dynpath"] for layer in LAYERS]
    assert design_layers(text) == expected
    planted = text.replace("`seeds`, `s3`, `profiles`", "`seeds`")
    assert design_layers(planted) != expected


@pytest.mark.parametrize(
    "name", ["dynpath.config", "dynpath.kfp.components.train", "components", "pipeline"]
)
def test_every_source_root_is_in_the_graph(name: str) -> None:
    assert name in import_graph(SOURCES)


#: Private names a package re-exports for its own tests (``generate`` looks ``_render_one`` up
#: in the package, so a test can replace it there).
PRIVATE_REEXPORTS = {
    ("dynpath.data.synthetic", "dynpath.data.synthetic.planner", "_moves_ok"),
    ("dynpath.data.synthetic", "dynpath.data.synthetic.render", "_render_one"),
}


def private_imports(files: dict[str, Path]) -> set[tuple[str, str, str]]:
    """(importer, module, name) of every ``from dynpath... import _name`` in ``files``."""
    found = set()
    for module, path in files.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dynpath"):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        found.add((module, str(node.module), alias.name))
    return found


def test_no_module_imports_another_modules_private_names(tmp_path: Path) -> None:
    """docs/design.md, Import rules: what two modules share has a public name and a home (a step
    once imported the train step's ``_helpers``); the check itself catches a planted import."""
    found = private_imports(module_files(SOURCES)) - PRIVATE_REEXPORTS
    assert not found, "private names imported across modules (give them a public home):\n" + (
        "\n".join(f"{a} imports {n} from {m}" for a, m, n in sorted(found))
    )
    planted = tmp_path / "m.py"
    planted.write_text("from dynpath.steps.train import _run\n")
    assert private_imports({"m": planted}) == {("m", "dynpath.steps.train", "_run")}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_class_attributes(files: dict[str, Path]) -> dict[str, set[str]]:
    """``_name`` -> the modules whose classes define it: methods and class-level assignments in a
    class body, and ``self._name = ...`` in its methods."""
    owners: dict[str, set[str]] = {}
    for module, path in files.items():
        for cls in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(cls, ast.ClassDef):
                continue
            names: list[str] = []
            for stmt in cls.body:
                if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
                    names.append(stmt.name)
                elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                    names.append(stmt.target.id)
                elif isinstance(stmt, ast.Assign):
                    names.extend(t.id for t in stmt.targets if isinstance(t, ast.Name))
            for node in ast.walk(cls):
                if (
                    isinstance(node, ast.Attribute)
                    and isinstance(node.ctx, ast.Store)
                    and isinstance(node.value, ast.Name)
                    and node.value.id == "self"
                ):
                    names.append(node.attr)
            for name in filter(_is_private, names):
                owners.setdefault(name, set()).add(module)
    return owners


def private_attribute_uses(files: dict[str, Path]) -> set[tuple[str, int, str]]:
    """(module, line, expression) of every ``obj._name`` whose ``_name`` only classes of OTHER
    modules define (``self._x`` / ``cls._x`` are a class's own business and never counted).

    Read by name, not by type (nothing is imported), so a private name that a module's own classes
    also define is left to that module; torch's and the standard library's private names are not
    dynpath's and are not counted.
    """
    owners = private_class_attributes(files)
    found = set()
    for module, path in files.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in owners
                and module not in owners[node.attr]
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            ):
                found.add((module, node.lineno, ast.unparse(node)))
    return found


def test_no_module_reaches_into_another_modules_private_attributes(tmp_path: Path) -> None:
    """docs/design.md, Import rules: a private method or attribute of a dynpath class is used only
    by its own module (the benchmark once timed ``trainer._train_step``; the step is now the
    public ``Trainer.train_step``). The check itself catches a planted call and leaves a class's
    own ``self._x`` alone."""
    found = private_attribute_uses(module_files(SOURCES))
    assert not found, "private attributes of another module's class (make them public):\n" + (
        "\n".join(f"{m}:{line}: {expr}" for m, line, expr in sorted(found))
    )
    owner, user = tmp_path / "owner.py", tmp_path / "user.py"
    owner.write_text(
        "class T:\n    _n: int = 0\n    def __init__(self):\n        self._x = 1\n"
        "    def _step(self):\n        return self._x\n"
    )
    user.write_text("def f(t, u):\n    return t._step(), u._x, t._n, t.__dict__, t._other\n")
    assert private_attribute_uses({"owner": owner, "user": user}) == {
        ("user", 2, "t._step"),
        ("user", 2, "u._x"),
        ("user", 2, "t._n"),
    }
