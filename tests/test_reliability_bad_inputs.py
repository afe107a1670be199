"""A corpus of bad inputs, each run through the real CLI: a specific clear error or a reported skip.

Every case builds its bad input in a fresh directory beside a small real project (annotations,
features, vocabulary, a model trained by ``dynpath train``), runs one ``dynpath`` command
in-process (``dynpath.cli.main``; a few run as real subprocesses because their input is the
process's own argv or must not be trusted in-process) and checks:

- the exit code: 2 (a one-line ``dynpath <cmd>: error: ...``, never a traceback) for an input the
  command cannot use, 0 for a record the readers skip and report (``data-stats`` lists the line
  and its reason) or an input that is accepted as documented (a very long query is truncated);
- the specific message (a regex over stderr and the log, or over the skip report);
- no partial output: the files the command would have written do not exist, inputs it must not
  touch are byte-identical, and no temp file is left anywhere in the case directory.

Unit tests of each reader/loader live with their modules (tests/test_data_*, test_extract_*,
test_config); this corpus checks what a user sees at the command line. The cases live by kind of
input in tests/bad_inputs_data.py and tests/bad_inputs_models.py (what a case is:
tests/bad_inputs.py); this file runs them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from bad_inputs import Case, Ctx
from bad_inputs_data import ANNOTATIONS, FEATURES, VIDEOS
from bad_inputs_models import CHECKPOINTS, PARAMS, QUERIES
from reliability_workspace import (
    Workspace,
    build_workspace,
    child_env,
)

from dynpath import cli

pytestmark = pytest.mark.slow

CASES = ANNOTATIONS + FEATURES + VIDEOS + CHECKPOINTS + PARAMS + QUERIES


# --------------------------------------------------------------------------- runner


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """The base project, with ``dynamic`` trained by the real CLI (best.pt, last.pt)."""
    ws = build_workspace(tmp_path_factory.mktemp("bad_inputs"))
    threads = torch.get_num_threads()
    try:
        assert cli.main(ws.train_argv()) == 0
    finally:
        torch.set_num_threads(threads)
    return ws


def _report_lines(stdout: str) -> str:
    """The data-stats skip report as ``file:line: reason`` lines plus ``kept <split> <n>``."""
    report = json.loads(stdout)
    lines = [f"{Path(e['file']).name}:{e['line']}: {e['reason']}" for e in report["skipped_lines"]]
    lines += [f"kept {split} {s['kept']}" for split, s in report["splits"].items()]
    return "\n".join(lines)


def _command(argv: list[str]) -> str:
    return argv[2] if argv[0] == "--params" else argv[0]


def _run(case: Case, argv: list[str], cwd: Path, capsys: Any, caplog: Any) -> tuple[int, str, str]:
    if case.subprocess:
        env = child_env(LC_ALL="C.UTF-8")
        # str -> bytes with surrogate escapes undone: the child gets the original raw bytes
        args = [sys.executable, "-m", "dynpath.cli", *argv]
        done = subprocess.run(
            [os.fsencode(a) for a in args], cwd=cwd, env=env, capture_output=True, timeout=300
        )
        out, err = done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
        return done.returncode, out, err.replace("\r", "\n")
    capsys.readouterr()
    caplog.clear()
    threads = torch.get_num_threads()
    old = Path.cwd()
    os.chdir(cwd)  # nothing may land in the working directory either
    try:
        code = cli.main(argv)
    finally:
        os.chdir(old)
        torch.set_num_threads(threads)
    out, err = capsys.readouterr()
    return code, out, (err + "\n" + caplog.text).replace("\r", "\n")  # tqdm's \r: new lines


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(
    case: Case, ws: Workspace, tmp_path: Path, capsys: Any, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = Ctx(ws=ws, dir=tmp_path)
    argv = case.make(ctx)
    before = sorted(p.name for p in ws.model_dir().iterdir())
    code, out, err = _run(case, argv, tmp_path, capsys, caplog)
    assert code == case.code, f"exit {code}, expected {case.code}\n{out[-2000:]}\n{err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]
    if code == 2:  # one line from the CLI, naming the command
        # (not anchored at a line start: an interrupted progress bar leaves no newline behind)
        assert f"dynpath {_command(argv)}: error: " in err, err[-2000:]
        assert re.search(case.message, err, re.MULTILINE), f"{case.message!r} not in:\n{err}"
    elif "data-stats" in argv:
        assert re.search(case.message, _report_lines(out), re.MULTILINE), _report_lines(out)
    else:
        assert re.search(case.message, out), out[-2000:]
    for path in ctx.absent:
        assert not path.exists(), f"{path} was written"
    for path, digest in ctx.unchanged.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, f"{path} changed"
    leftovers = [p for p in tmp_path.rglob(".*") if p.is_file()]
    assert leftovers == [], leftovers
    assert sorted(p.name for p in ws.model_dir().iterdir()) == before  # the base is untouched
