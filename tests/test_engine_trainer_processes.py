"""Trainer runs in processes of their own: a real SIGKILL then ``--resume``, DDP over two CPU
processes with torchrun, and the ``train.compile`` option. The child script is
tests/trainer_double.py.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
import trainer_double
from trainer_double import assert_same_weights, build_trainer, strip_timing, weights

from dynpath.engine.checkpoint import load_checkpoint
from dynpath.engine.trainer import (
    HISTORY,
    LAST,
)

# --------------------------------------------------------------------------- subprocess tests

SCRIPT = Path(trainer_double.__file__).resolve()


def _child(out: Path, *extra: str) -> list[str]:
    return [sys.executable, str(SCRIPT), str(out), *extra]


def _read_until(proc: subprocess.Popen[str], wanted: str, timeout: float) -> None:
    """Read the child's stdout until the line ``wanted``; fail (and kill it) if the child exits
    first or the line does not come within ``timeout`` seconds (a reader thread, so a child
    that hangs without printing cannot hang the test)."""
    assert proc.stdout is not None
    seen = threading.Event()
    lines: list[str] = []

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip())
            if line.strip() == wanted:
                seen.set()
                return

    threading.Thread(target=reader, daemon=True).start()
    if not seen.wait(timeout):
        proc.kill()
        proc.wait(timeout=60)
        raise AssertionError(
            f"the child never printed {wanted!r} within {timeout}s "
            f"(exit {proc.returncode}); its last lines: {lines[-5:]}"
        )


@pytest.mark.slow
def test_sigkill_and_resume_matches_uninterrupted(tmp_path: Path) -> None:
    """A real SIGKILL mid-run, then ``--resume``.

    The child blocks in the step callback after step 7 (``--block-at 7``) and the parent kills it
    once it has read "step 7": the kill lands after step 7's update, which is lost (the last
    checkpoint is the one of step 6, mid-epoch 2), however slow the machine is. The uninterrupted
    reference runs in a child process too: floats are compared exactly, and only two fresh
    processes with the same settings are promised the same kernels (the pytest process may have
    picked others)."""
    reference = tmp_path / "reference"
    subprocess.run(_child(reference), check=True, timeout=300, stdout=subprocess.DEVNULL)
    tmp_path = tmp_path / "killed"
    proc = subprocess.Popen(_child(tmp_path, "--block-at", "7"), stdout=subprocess.PIPE, text=True)
    _read_until(proc, "step 7", timeout=300)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    progress = load_checkpoint(tmp_path / LAST)["progress"]
    assert (progress["global_step"], progress["epoch"], progress["batches_done"]) == (6, 1, 1)
    subprocess.run(_child(tmp_path, "--resume"), check=True, timeout=300)
    a = strip_timing(json.loads((reference / HISTORY).read_text()))
    b = strip_timing(json.loads((tmp_path / HISTORY).read_text()))
    assert a == b
    assert_same_weights(reference / LAST, tmp_path / LAST)


@pytest.mark.slow
def test_torchrun_two_processes_gloo(tmp_path: Path) -> None:
    """DDP over 2 CPU processes: same global batch, same metrics as one process.

    With no dropout/Gumbel noise, two ranks of 4 samples compute the same averaged gradient as
    one process with the 8-sample batch (DistributedSampler interleaves the same permutation),
    so losses agree to float tolerance and the validation metrics are identical.
    """
    if shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists():
        pytest.skip("torchrun not installed")
    torchrun = str(Path(sys.executable).parent / "torchrun")
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    build_trainer(single, stochastic=False, epochs=2).fit()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [
            torchrun,
            "--standalone",  # its rendezvous store binds a port the OS picks: no fixed port
            "--nproc_per_node=2",
            str(SCRIPT),
            str(ddp),
            "--deterministic-model",
            "--epochs",
            "2",
        ],
        check=True,
        timeout=300,
        env=env,
    )
    a = json.loads((single / HISTORY).read_text())
    b = json.loads((ddp / HISTORY).read_text())
    assert len(a) == len(b) == 2
    for ea, eb in zip(a, b, strict=True):
        assert ea["step"] == eb["step"]  # same number of optimizer steps per epoch
        for k in ea:
            if k.startswith("val_"):
                assert ea[k] == eb[k], k
            elif k.startswith("train_"):
                assert math.isclose(ea[k], eb[k], rel_tol=1e-4), (k, ea[k], eb[k])
    wa, wb = weights(single / LAST), weights(ddp / LAST)
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-4), k
    assert load_checkpoint(ddp / LAST)["world_size"] == 2


@pytest.mark.slow
def test_torch_compile_option(tmp_path: Path) -> None:
    """train.compile: the compiled module trains; checkpoints hold the plain module's keys."""
    result = build_trainer(tmp_path, epochs=1, compile_model=True).fit()
    assert math.isfinite(result.history[0]["train_loss"])
    assert not any(k.startswith("_orig_mod") for k in weights(tmp_path / LAST))
