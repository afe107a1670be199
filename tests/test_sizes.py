"""Size limits of the code (CONTRIBUTING, "Size limits"): no source or test file over 600 lines,
no function of src/ over 80 lines.

A file past 600 lines holds more than one concern (split it by concern into modules with one
obvious home); a function past 80 lines does several things a reader must keep in mind at once
(split it into named helpers). Read with :mod:`ast` (nothing is imported); a function is measured
from its ``def`` line to its last line, docstring included, nested functions counted in their
parent too.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 80


def python_files(*roots: Path) -> list[Path]:
    return sorted(p for root in roots for p in root.rglob("*.py"))


def long_files(paths: list[Path], root: Path = ROOT, limit: int = MAX_FILE_LINES) -> list[str]:
    """``path: N lines`` of every file with more than ``limit`` lines."""
    out = []
    for path in paths:
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > limit:
            out.append(f"{path.relative_to(root)}: {n} lines")
    return out


def long_functions(
    paths: list[Path], root: Path = ROOT, limit: int = MAX_FUNCTION_LINES
) -> list[str]:
    """``path:line name: N lines`` of every function (or method) longer than ``limit`` lines."""
    out = []
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > limit:
                    out.append(f"{path.relative_to(root)}:{node.lineno} {node.name}: {n} lines")
    return sorted(out)


def test_no_source_or_test_file_is_over_600_lines() -> None:
    found = long_files(python_files(ROOT / "src", ROOT / "tests"))
    assert not found, f"split these files by concern (at most {MAX_FILE_LINES} lines): {found}"


def test_no_function_of_src_is_over_80_lines() -> None:
    found = long_functions(python_files(ROOT / "src"))
    assert not found, (
        f"split these functions into named helpers (at most {MAX_FUNCTION_LINES} lines): {found}"
    )


def test_the_checks_catch_a_planted_long_file_and_function(tmp_path: Path) -> None:
    """The checks themselves: a 601-line file and an 81-line function (nested in a class) are
    named; 600 and 80 lines pass."""
    body = "\n".join(f"    x{i} = {i}" for i in range(79))
    ok = tmp_path / "ok.py"
    ok.write_text("def f() -> None:\n" + body + "\n" + "\n" * (600 - 80))
    bad = tmp_path / "bad.py"
    bad.write_text(
        "class C:\n    def g(self) -> None:\n"
        + "\n".join(f"        x{i} = {i}" for i in range(80))
        + "\n"
        + "\n" * (601 - 82)
    )
    assert len(ok.read_text().splitlines()) == 600
    assert long_files([ok], tmp_path) == [] and long_functions([ok], tmp_path) == []
    assert long_files([bad], tmp_path) == ["bad.py: 601 lines"]
    assert long_functions([bad], tmp_path) == ["bad.py:2 g: 81 lines"]
