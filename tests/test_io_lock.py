"""The advisory output lock (dynpath.io.output_lock): a second writer is refused naming the
holder's PID, a killed holder frees the lock (flock dies with the process), nothing is written
into the output, and nested use within one process does not lock itself out."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dynpath.errors import DynpathError, LockedError, OutputError
from dynpath.io import check_writable, output_lock


def _holder(path: Path) -> subprocess.Popen[str]:
    code = (
        "import sys\nfrom dynpath.io import output_lock\n"
        f"with output_lock({str(path)!r}):\n    print('locked', flush=True)\n    sys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_second_writer_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    out = tmp_path / "models" / "dynamic"
    proc = _holder(out)
    try:
        with (
            pytest.raises(LockedError, match=rf"dynamic: in use by PID {proc.pid} ") as info,
            output_lock(out),
        ):
            pass
        assert isinstance(info.value, DynpathError)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=60)
    with output_lock(out):  # released when the holder exits
        pass
    assert not out.exists() and list(tmp_path.iterdir()) == []  # nothing written for the lock


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    out = tmp_path / "eval"
    proc = _holder(out)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    with output_lock(out):
        pass


def test_nested_locks_in_one_process_and_other_outputs(tmp_path: Path) -> None:
    with output_lock(tmp_path / "a"), output_lock(tmp_path / "a"), output_lock(tmp_path / "b"):
        pass


def test_an_output_under_a_file_is_refused_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match=r"file/out: cannot write \(a part of the path is a file"):
        check_writable(tmp_path / "file" / "out")
    with pytest.raises(OutputError), output_lock(tmp_path / "file" / "out"):
        pytest.fail("the block must not run")
