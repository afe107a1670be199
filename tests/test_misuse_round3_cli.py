"""Issue 26, third round, the CLI's part: what a bad-input corpus case cannot express.

- locks: the output lock is keyed by the output's real path in a place every process sees
  (beside the output), so two real processes with DIFFERENT ``TMPDIR`` never both write one
  output; nothing of the lock is left after a run, and a killed holder's file is taken over;
- left-behind: a clean error (a full disk, real under ``RLIMIT_FSIZE`` or a patched write) in
  ``evaluate`` and ``report`` leaves the previous outputs as they were and no empty, partial or
  staging directory;
- interrupt: Ctrl-C (a real SIGINT to a real process) in extract, evaluate, report and vocab
  gives advice that fits the step (never ``train --resume``) and leaves nothing partial;
- unclear: a full disk in ``vocab`` names the file (not "(unknown file)").

The corpus cases of this round are in tests/data/bad_inputs_round3_cli.yaml.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from reliability_workspace import (
    VARIANT,
    Workspace,
    build_workspace,
    child_env,
    extract_params,
    write_videos,
)
from report_fixture import report_config, write_fixture

from dynpath import cli
from dynpath.errors import OutputError, error_message
from dynpath.io import LOCK_SUFFIX, lock_path, output_lock

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """A project with ``dynamic`` trained by the real CLI (best.pt) and evaluated once."""
    ws = build_workspace(tmp_path_factory.mktemp("round3"))
    threads = torch.get_num_threads()
    try:
        assert cli.main(ws.train_argv()) == 0
    finally:
        torch.set_num_threads(threads)
    return ws


def _evaluate_argv(ws: Workspace, out: Path) -> list[str]:
    return [
        "--params", str(ws.params), "evaluate", "--variant", VARIANT, "--vocab", str(ws.vocab),
        "--models", str(ws.models), "--out", str(out),
    ]  # fmt: skip


def _main(argv: list[str]) -> int:
    threads = torch.get_num_threads()
    try:
        return cli.main(argv)
    finally:
        torch.set_num_threads(threads)


def _files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (hidden ones included) with its bytes; directories as b"/"."""
    return {
        str(p.relative_to(root)): (b"/" if p.is_dir() else p.read_bytes())
        for p in sorted(root.rglob("*"))
    }


def _error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ": error: " in ln]
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


# --------------------------------------------------------------------------- locks


class Holder:
    """A child process with its own ``TMPDIR`` holding dynpath's output lock on ``path``."""

    def __init__(self, path: Path, tmpdir: Path) -> None:
        tmpdir.mkdir(parents=True, exist_ok=True)
        code = (
            "import sys\nfrom dynpath.io import output_lock\n"
            f"with output_lock({str(path)!r}):\n    print('locked', flush=True)\n"
            "    sys.stdin.read()\n"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=child_env(TMPDIR=str(tmpdir)),
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "locked"

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _cli(argv: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dynpath.cli", *argv],
        cwd=cwd,
        env=child_env(**env),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_two_trainings_with_different_tmpdirs_into_one_out(ws: Workspace, tmp_path: Path) -> None:
    """The issue's case: a second ``train`` (another TMPDIR) into a held ``--out`` is refused
    at once naming the holder's PID, and writes nothing."""
    out = tmp_path / "models"
    holder = Holder(out / VARIANT, tmp_path / "tmp-a")
    try:
        done = _cli(ws.train_argv(out=out), tmp_path, TMPDIR=str(tmp_path / "tmp-b"))
    finally:
        holder.stop()
    assert done.returncode == 2, done.stderr[-3000:]
    line = _error_line(done.stderr)
    assert f"{out / VARIANT}: in use by PID {holder.proc.pid} " in line, line
    assert not (out / VARIANT).exists()


def test_vocab_with_another_tmpdir_through_a_symlinked_parent(
    ws: Workspace, tmp_path: Path
) -> None:
    """Two spellings of one output (a symlinked parent) and two TMPDIRs: still one lock."""
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    holder = Holder(tmp_path / "real" / "v", tmp_path / "tmp-a")
    try:
        argv = ["--params", str(ws.params), "vocab", "--out", str(tmp_path / "link" / "v")]
        done = _cli(argv, tmp_path, TMPDIR=str(tmp_path / "tmp-b"))
    finally:
        holder.stop()
    assert done.returncode == 2, done.stderr[-3000:]
    assert f"in use by PID {holder.proc.pid} " in _error_line(done.stderr)
    assert not (tmp_path / "real" / "v").exists()


def test_two_holders_with_different_tmpdirs(tmp_path: Path) -> None:
    """The lock itself, between two processes whose TMPDIRs differ."""
    out = tmp_path / "eval" / "dynamic"
    first = Holder(out, tmp_path / "tmp-a")
    try:
        code = (
            "from dynpath.errors import LockedError\nfrom dynpath.io import output_lock\n"
            f"try:\n    with output_lock({str(out)!r}):\n        print('ran')\n"
            "except LockedError as err:\n    print('refused', err)\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code],
            env=child_env(TMPDIR=str(tmp_path / "tmp-b")),
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        first.stop()
    assert done.stdout.startswith(f"refused {out}: in use by PID {first.proc.pid} "), done


def test_nothing_of_the_lock_is_left_in_tmpdir_or_beside_the_output(
    ws: Workspace, tmp_path: Path
) -> None:
    """After a run: no lock file beside the output and nothing in the process's TMPDIR (the
    old lock directory ``$TMPDIR/dynpath-locks-UID`` was left behind by every run)."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    out = tmp_path / "outputs" / "v"
    done = _cli(
        ["--params", str(ws.params), "vocab", "--out", str(out)], tmp_path, TMPDIR=str(tmpdir)
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert list(tmpdir.iterdir()) == []
    assert sorted(p.name for p in out.parent.iterdir()) == ["v"]


def test_lock_file_is_beside_the_real_output(tmp_path: Path) -> None:
    """Where the lock lives: ``.<name>.dynpath-lock`` beside the output's real path, held
    while the block runs, removed after."""
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    expected = tmp_path / "real" / f".out{LOCK_SUFFIX}"
    assert lock_path(tmp_path / "link" / "out") == expected
    with output_lock(tmp_path / "link" / "out"):
        assert expected.read_text().split()[0] == str(os.getpid())
    assert not expected.exists()


def test_a_killed_holders_lock_file_is_taken_over(tmp_path: Path) -> None:
    """SIGKILL leaves the lock file but not the lock: the next writer takes it and removes it."""
    out = tmp_path / "models" / "dynamic"
    holder = Holder(out, tmp_path / "tmp-a")
    holder.proc.kill()
    holder.proc.wait(timeout=60)
    assert lock_path(out).exists()  # flock died with the process; the file stays
    with output_lock(out):
        pass
    assert not lock_path(out).exists()


def test_a_refused_lock_leaves_no_directory(tmp_path: Path) -> None:
    """Directories made to hold the lock file are removed when the step leaves them empty."""
    out = tmp_path / "a" / "b" / "out"
    with pytest.raises(RuntimeError), output_lock(out):
        assert out.parent.is_dir()
        raise RuntimeError("the step failed")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- clean errors

FSIZE = r"""
import resource, signal, sys
from dynpath import cli
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), resource.RLIM_INFINITY))
sys.exit(cli.main(sys.argv[2:]))
"""


def _under_fsize(limit: int, argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``dynpath ARGV`` in a child whose files may not grow past ``limit`` bytes (EFBIG: a
    full disk as any user can make one)."""
    return subprocess.run(
        [sys.executable, "-c", FSIZE, str(limit), *argv],
        cwd=cwd,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


NPY_SAVE = r"""
import resource, signal, sys
import numpy as np
from dynpath.errors import error_message
from dynpath.io import atomic_path
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), resource.RLIM_INFINITY))
try:  # the writer of Vocabulary.save's embeddings.npy
    with atomic_path(sys.argv[2], suffix=".npy") as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.zeros((178, 16), np.float32))
except BaseException as err:
    print(error_message(err, "vocab")[1])
"""


def test_vocab_embeddings_on_a_full_disk_names_the_file(tmp_path: Path) -> None:
    """numpy's short write ("11400 requested and 992 written", an OSError without a file)
    was "(unknown file): ..."; the limit lets the 128-byte header through, not the rows."""
    out = tmp_path / "v" / "embeddings.npy"
    out.parent.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", NPY_SAVE, "1024", str(out)],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = done.stdout.strip()
    assert line.startswith(f"{out}: cannot write ("), (line, done.stderr[-2000:])
    assert "requested" in line and "unknown file" not in line, line
    assert list(out.parent.iterdir()) == []


def test_evaluate_on_a_full_disk_leaves_no_empty_directory(ws: Workspace, tmp_path: Path) -> None:
    """A real EFBIG on predictions.jsonl: no ``eval/dynamic`` (or ``eval``) left behind."""
    out = tmp_path / "eval"
    done = _under_fsize(512, _evaluate_argv(ws, out), tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "predictions.jsonl: cannot write (" in _error_line(done.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == [], list(tmp_path.rglob("*"))


def _old_eval(out: Path) -> dict[str, bytes]:
    """Previous results in ``out/dynamic`` (stand-ins: only their bytes matter)."""
    for name in ("metrics.json", "predictions.jsonl", "val_predictions.jsonl"):
        (out / VARIANT).mkdir(parents=True, exist_ok=True)
        (out / VARIANT / name).write_text(f"old {name}\n")
    (out / VARIANT / "seeds").mkdir()
    return _files(out)


def test_evaluate_failing_at_its_last_file_keeps_the_previous_results(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """metrics.json does not fit (after both predictions files): before, the new predictions
    sat beside the old metrics.json; now every previous file is as it was."""
    from dynpath.steps import evaluate

    out = tmp_path / "eval"
    before = _old_eval(out)
    real = evaluate.write_json

    def full(path: Path, obj: Any) -> None:
        if Path(path).name == "metrics.json":
            raise OutputError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, obj)

    monkeypatch.setattr(evaluate, "write_json", full)
    assert _main(_evaluate_argv(ws, out)) == 2
    assert "metrics.json: cannot write (No space left" in capsys.readouterr().err
    assert _files(out) == before


def test_evaluate_failing_into_a_new_directory_leaves_nothing(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """The validation predictions fail (a clean error after predictions.jsonl was written): no
    partial ``eval/dynamic`` with predictions alone."""
    from dynpath.errors import DataError
    from dynpath.steps import evaluate

    calls = []
    real = evaluate._write_predictions

    def second_fails(path: Path, preds: Any) -> None:
        calls.append(path)
        if len(calls) == 2:  # val_predictions.jsonl, after predictions.jsonl
            raise DataError("non-finite scores on the validation split")
        real(path, preds)

    monkeypatch.setattr(evaluate, "_write_predictions", second_fails)
    assert _main(_evaluate_argv(ws, tmp_path / "eval")) == 2
    assert "non-finite scores" in capsys.readouterr().err
    assert len(calls) == 2
    assert list(tmp_path.iterdir()) == []


def _report_setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    eval_dir, models_dir = write_fixture(tmp_path / "outputs")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(report_config().model_dump(mode="json")), encoding="utf-8")
    return params, eval_dir, models_dir


def _report_argv(params: Path, eval_dir: Path, models_dir: Path, out: Path) -> list[str]:
    return [
        "--params", str(params), "report", "--evals", str(eval_dir), "--models",
        str(models_dir), "--out", str(out),
    ]  # fmt: skip


def test_report_failing_at_summary_keeps_the_previous_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """summary.json does not fit: before, report.html/.md/ablation.csv and the plots were new
    and summary.json old; now the previous report is whole."""
    from dynpath.steps import report

    params, eval_dir, models_dir = _report_setup(tmp_path)
    out = tmp_path / "reports"
    monkeypatch.chdir(tmp_path)
    assert _main(_report_argv(params, eval_dir, models_dir, out)) == 0
    capsys.readouterr()
    # the previous report: marked, so that a rewrite shows
    for p in out.rglob("*"):
        if p.is_file():
            p.write_bytes(b"previous " + p.name.encode())
    before = _files(out)

    def full(path: Path, obj: Any) -> None:
        raise OutputError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(report, "write_json", full)
    assert _main(_report_argv(params, eval_dir, models_dir, out)) == 2
    assert "summary.json: cannot write (No space left" in capsys.readouterr().err
    assert _files(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outputs", "params.yaml", "reports"]


def test_report_failing_into_a_new_directory_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """A full disk at the page itself: no ``reports/`` with plots and no page."""
    from dynpath.steps import report

    params, eval_dir, models_dir = _report_setup(tmp_path)
    monkeypatch.chdir(tmp_path)

    def full(path: Path, text: str) -> None:
        raise OutputError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(report, "write_text", full)
    out = tmp_path / "new" / "reports"
    assert _main(_report_argv(params, eval_dir, models_dir, out)) == 2
    assert "report.html: cannot write (No space left" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


# --------------------------------------------------------------------------- Ctrl-C

PAUSE = r"""
import importlib, signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)
module = importlib.import_module(sys.argv[1])
real = getattr(module, sys.argv[2])
def pause(*args, **kwargs):
    out = real(*args, **kwargs)
    print("READY", flush=True)
    time.sleep(300)
    return out
setattr(module, sys.argv[2], pause)
from dynpath import cli
sys.exit(cli.main(sys.argv[3:]))
"""


def _interrupt(hook: str, argv: list[str], cwd: Path) -> tuple[int, str]:
    """``dynpath ARGV`` in a real process, SIGINT once ``hook`` (``module:function``) has
    returned the first time (the step is part-way: a file written, others not)."""
    module, function = hook.split(":")
    proc = subprocess.Popen(
        [sys.executable, "-c", PAUSE, module, function, *argv],
        cwd=cwd,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.strip() == "READY" or not line:
            break
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert "Traceback" not in stderr, stderr[-3000:]
    return proc.returncode, _error_line(stderr)


def test_ctrl_c_in_evaluate_keeps_the_previous_results(ws: Workspace, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    before = _old_eval(out)
    code, line = _interrupt(
        "dynpath.steps.evaluate:_write_predictions", _evaluate_argv(ws, out), tmp_path
    )
    assert code == 130, line
    assert "evaluate: error: interrupted" in line and "train --resume" not in line, line
    assert "rerun the same command" in line, line
    assert _files(out) == before  # not the new predictions.jsonl beside the old metrics.json


def test_ctrl_c_in_evaluate_into_a_new_directory_leaves_nothing(
    ws: Workspace, tmp_path: Path
) -> None:
    code, line = _interrupt(
        "dynpath.steps.evaluate:_write_predictions", _evaluate_argv(ws, tmp_path / "eval"), tmp_path
    )
    assert code == 130, line
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_in_report_keeps_the_previous_report(tmp_path: Path) -> None:
    params, eval_dir, models_dir = _report_setup(tmp_path)
    out = tmp_path / "reports"
    (out / "plots").mkdir(parents=True)
    for name in ("report.html", "report.md", "summary.json", "ablation.csv", "plots/ablation.png"):
        (out / name).write_text(f"previous {name}")
    before = _files(out)
    code, line = _interrupt(
        "dynpath.steps.report:write_text", _report_argv(params, eval_dir, models_dir, out), tmp_path
    )
    assert code == 130, line
    assert "report: error: interrupted" in line and "train --resume" not in line, line
    assert "rerun the same command" in line, line
    assert _files(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outputs", "params.yaml", "reports"]


def test_ctrl_c_in_extract_says_it_resumes(tmp_path: Path) -> None:
    videos = write_videos(tmp_path / "videos", [16, 16, 16])
    params = extract_params(tmp_path)
    output = tmp_path / "features" / "store.h5"
    argv = ["--params", str(params), "extract", "--videos", str(videos), "--output", str(output)]
    code, line = _interrupt("dynpath.extract.extractor:_write_video", argv, tmp_path)
    assert code == 130, line
    assert "extract: error: interrupted" in line and "train --resume" not in line, line
    assert "resumes from the partial store" in line, line
    assert not output.exists()


def test_ctrl_c_in_vocab_says_rerun(ws: Workspace, tmp_path: Path) -> None:
    argv = ["--params", str(ws.params), "vocab", "--out", str(tmp_path / "v")]
    code, line = _interrupt("dynpath.data.vocab:write_json", argv, tmp_path)
    assert code == 130, line
    assert "vocab: error: interrupted" in line and "train --resume" not in line, line
    assert "rerun the same command" in line, line


@pytest.mark.parametrize("command", ["extract", "evaluate", "report", "vocab", "synth", "bench"])
def test_ctrl_c_advice_fits_the_step(command: str) -> None:
    code, message = error_message(KeyboardInterrupt(), command)
    assert code == 130 and "train --resume" not in message and "rerun" in message, message


def test_ctrl_c_in_train_still_advises_resume() -> None:
    code, message = error_message(KeyboardInterrupt(), "train")
    assert code == 130 and "`train --resume` continues from the last checkpoint" in message
