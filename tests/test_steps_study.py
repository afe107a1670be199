"""``dynpath study``: the DAG of a profile in its own directory, finished stages skipped, a failed
stage resumed, a params.yaml edited since a stage finished refused. The stage commands go to a
stand-in ``dynpath`` that logs its arguments (the real commands run in the DVC and CLI tests)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dynpath.errors import DynpathError
from dynpath.steps import study

FAKE = """
import sys, pathlib
args = sys.argv[1:]
pathlib.Path("calls.log").open("a").write(" ".join(args) + "\\n")
fail = pathlib.Path("fail_on")
if fail.exists() and fail.read_text().strip() in " ".join(args):
    sys.exit(3)
"""


def _fake(tmp_path: Path) -> tuple[str, ...]:
    script = tmp_path / "fake_dynpath.py"
    script.write_text(FAKE)
    return (sys.executable, str(script))


def _calls(workdir: Path) -> list[str]:
    return (workdir / "calls.log").read_text().splitlines()


def test_runs_the_dag_in_order_then_skips_what_finished(tmp_path: Path) -> None:
    work = tmp_path / "s"
    result = study.run(work, "tiny", dynpath=_fake(tmp_path))
    calls = _calls(work)
    assert calls[0] == "--params params.yaml data"
    assert calls[1] == "--params params.yaml extract"
    assert calls[2] == "--params params.yaml vocab --out outputs/vocab"
    assert calls[3].startswith("--params params.yaml train --variant dynamic ")
    assert calls[3].endswith("--resume")
    assert calls[4].startswith("--params params.yaml evaluate --variant dynamic ")
    assert calls[-1].startswith("--params params.yaml report ")
    assert len(calls) == 3 + 2 * 10 + 1  # the ten variants of the tiny profile
    assert (work / "params.yaml").read_text().startswith("# dynpath params: profile 'tiny'")
    assert result["skipped"] == []
    again = study.run(work, "tiny", dynpath=_fake(tmp_path))
    assert _calls(work)[len(calls) :] == [calls[-1]]  # only the report reruns
    assert len(again["skipped"]) == len(calls) - 1


def test_a_failed_stage_stops_and_the_rerun_resumes_from_it(tmp_path: Path) -> None:
    work = tmp_path / "s"
    work.mkdir()
    (work / "fail_on").write_text("train --variant soft_dynamic")
    with pytest.raises(DynpathError, match=r"'train@soft_dynamic' failed \(exit 3\).*resume"):
        study.run(work, "tiny", dynpath=_fake(tmp_path))
    n = len(_calls(work))
    (work / "fail_on").unlink()
    study.run(work, "tiny", dynpath=_fake(tmp_path))
    resumed = _calls(work)[n:]
    assert resumed[0].startswith("--params params.yaml train --variant soft_dynamic")


def test_an_edited_params_file_is_refused(tmp_path: Path) -> None:
    work = tmp_path / "s"
    study.run(work, "tiny", dynpath=_fake(tmp_path))
    params = work / "params.yaml"
    params.write_text(params.read_text().replace("epochs: 2", "epochs: 3"))
    with pytest.raises(DynpathError, match=r"params.yaml: changed since stage 'data' finished"):
        study.run(work, "tiny", dynpath=_fake(tmp_path))


def test_an_existing_params_file_is_kept_not_rewritten_from_the_profile(tmp_path: Path) -> None:
    work = tmp_path / "s"
    study.prepare(work, "tiny")
    text = (work / "params.yaml").read_text() + "# a note\n"
    (work / "params.yaml").write_text(text)
    study.prepare(work, "synthetic")
    assert (work / "params.yaml").read_text() == text


SLOW_STAGE = """
import os, signal, sys, time, pathlib
args = sys.argv[1:]
if "data" in args:
    def stop(signum, frame):
        pathlib.Path("stage_got").write_text(signal.Signals(signum).name)
        sys.exit(130)
    # as the trainer does (engine/trainer.py): Ctrl-C is deferred only where it is not ignored
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, stop)
    pathlib.Path("stage_pid").write_text(str(os.getpid()))
    time.sleep(60)
"""


def test_sigterm_of_the_study_is_a_ctrl_c_for_its_running_stage(tmp_path: Path) -> None:
    """The running stage gets SIGINT (the trainer checkpoints on it), the study exits 130, and
    no stage process is left running, also when the study itself was started with SIGINT
    ignored, as a shell's background job is."""
    work = tmp_path / "s"
    fake = tmp_path / "slow_dynpath.py"
    fake.write_text(SLOW_STAGE)
    code = (
        "import sys; from pathlib import Path; from dynpath.steps import study\n"
        f"study.run(Path({str(work)!r}), 'tiny', dynpath=(sys.executable, {str(fake)!r}))"
    )
    # started as `nohup dynpath study &` starts it: SIGINT ignored (inherited across exec)
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        deadline = time.monotonic() + 60
        while not (work / "stage_pid").exists():
            assert time.monotonic() < deadline, "the stage never started"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) != 0
        assert (work / "stage_got").read_text() == "SIGINT"
    finally:  # never leave the study or its stand-in stage behind, even on failure
        proc.kill()
        if (work / "stage_pid").exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int((work / "stage_pid").read_text()), signal.SIGKILL)
    assert not (work / ".study" / "data.done").exists()  # the stopped stage is not marked done
