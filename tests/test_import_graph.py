"""No import cycles in src/dynpath, components/ or pipeline/ (docs/design.md, "Import rules").

How the graph is built (function-level and dynamic imports included, TYPE_CHECKING left out):
tests/import_graph.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from import_graph import SOURCES, find_cycles, import_graph, strongly_connected


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


@pytest.mark.parametrize("name", ["dynpath.config", "components.train", "pipeline.dag"])
def test_every_source_root_is_in_the_graph(name: str) -> None:
    assert name in import_graph(SOURCES)
