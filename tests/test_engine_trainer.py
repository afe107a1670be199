"""Trainer: determinism, exact kill-and-resume on CPU (Ctrl-C included), LR schedule, checkpoint
checks, progress. The model is the test double of tests/trainer_double.py; the tests that need
processes of their own (SIGKILL, torchrun, torch.compile) are in
tests/test_engine_trainer_processes.py.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import math
import os
import shutil
import signal
import sys
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from trainer_double import (
    Killed,
    assert_same_weights,
    build_trainer,
    kill_at,
    strip_timing,
    weights,
)

from dynpath.data.batch import Batch
from dynpath.engine.checkpoint import load_checkpoint
from dynpath.engine.trainer import (
    BEST,
    HISTORY,
    LAST,
    linear_decay,
)
from dynpath.errors import CheckpointError


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted run that the other tests compare against."""
    out = tmp_path_factory.mktemp("reference")
    build_trainer(out).fit()
    return out


def test_outputs_and_history(reference: Path) -> None:
    history = json.loads((reference / HISTORY).read_text())
    assert [e["epoch"] for e in history] == [1, 2, 3]
    assert {
        "train_loss",
        "train_loss_bound",
        "train_loss_inner",
        "val_r1_iou0.5",
        "val_miou",
        "lr",
        "seconds",
        "samples_per_s",
        "step",
    } <= set(history[0])
    assert history[-1]["lr"] == 0.0  # linear decay ends at 0
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    best = load_checkpoint(reference / BEST)["progress"]
    last = load_checkpoint(reference / LAST)["progress"]
    assert last["epoch"] == 3 and last["batches_done"] == 0 and last["global_step"] == 15
    vals = [e["val_r1_iou0.5"] for e in history]
    assert best["best_epoch"] == 1 + vals.index(max(vals))


def test_same_seed_same_metrics(reference: Path, tmp_path: Path) -> None:
    build_trainer(tmp_path).fit()
    a = strip_timing(json.loads((reference / HISTORY).read_text()))
    b = strip_timing(json.loads((tmp_path / HISTORY).read_text()))
    assert a == b
    assert_same_weights(reference / LAST, tmp_path / LAST)


def assert_same_run(reference: Path, out: Path) -> None:
    """A resumed run ends where the uninterrupted one did: same history, same weights."""
    a = strip_timing(json.loads((reference / HISTORY).read_text()))
    b = strip_timing(json.loads((out / HISTORY).read_text()))
    assert a == b
    assert_same_weights(reference / LAST, out / LAST)
    assert_same_weights(reference / BEST, out / BEST)


@pytest.mark.parametrize(
    ("kill_step", "resumed_at"),
    # 5 steps per epoch, mid-epoch checkpoints every 2 steps, epoch-end checkpoints at 5, 10, 15:
    # killed between checkpoints (3, 7), in the last batch of an epoch before its end-of-epoch
    # checkpoint (5), right after an epoch-end checkpoint (11), right after a mid-epoch one (14).
    [(3, 2), (5, 4), (7, 6), (11, 10), (14, 14)],
)
def test_kill_and_resume_is_exact(
    reference: Path, tmp_path: Path, kill_step: int, resumed_at: int
) -> None:
    with pytest.raises(Killed):
        build_trainer(tmp_path, on_step=kill_at(kill_step)).fit()
    result = build_trainer(tmp_path).fit(resume=True)
    assert result.resumed_from is not None
    assert result.resumed_from["global_step"] == resumed_at
    assert_same_run(reference, tmp_path)


def test_resume_of_finished_run_is_a_no_op(reference: Path, tmp_path: Path) -> None:
    shutil.copytree(reference, tmp_path, dirs_exist_ok=True)
    result = build_trainer(tmp_path).fit(resume=True)
    assert result.global_step == 15 and len(result.history) == 3
    assert_same_weights(reference / LAST, tmp_path / LAST)


def test_resume_refuses_another_variant(reference: Path, tmp_path: Path) -> None:
    shutil.copy(reference / LAST, tmp_path / LAST)
    with pytest.raises(CheckpointError, match=r"'tiny'.*'other'"):
        build_trainer(tmp_path, variant="other").fit(resume=True)


@pytest.fixture
def sigint_raises() -> Iterable[None]:
    """Python's own Ctrl-C handler for the test, whatever pytest was started with (in the
    background of a script, ``cmd &``, SIGINT is ignored and the trainer leaves it so)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def ctrl_c_at(step: int, times: int = 1, reached: list[int] | None = None) -> Any:
    """A step hook that sends this process a real SIGINT ``times`` times after ``step``; each
    send that returns (the Ctrl-C was deferred, not raised) is appended to ``reached``."""

    def hook(global_step: int) -> None:
        if global_step == step:
            for i in range(times):
                os.kill(os.getpid(), signal.SIGINT)
                if reached is not None:
                    reached.append(i + 1)

    return hook


@pytest.mark.parametrize(
    ("step", "written"),
    # 5 steps per epoch, periodic checkpoints every 2 steps: Ctrl-C between periodic checkpoints
    # (3, 7), right after one (4), in an epoch's last step (5: the epoch
    # ends, validation and all, and its checkpoint is the one).
    [(3, 3), (4, 4), (5, 5), (7, 7)],
)
@pytest.mark.usefixtures("sigint_raises")
def test_ctrl_c_checkpoints_the_steps_done_and_resume_is_exact(
    reference: Path, tmp_path: Path, step: int, written: int
) -> None:
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        build_trainer(tmp_path, on_step=ctrl_c_at(step)).fit()
    assert signal.getsignal(signal.SIGINT) is before  # the previous handler is back
    progress = load_checkpoint(tmp_path / LAST)["progress"]
    assert progress["global_step"] == written
    assert progress["epoch"] * 5 + progress["batches_done"] == written
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    result = build_trainer(tmp_path).fit(resume=True)
    assert result.resumed_from is not None
    assert result.resumed_from["global_step"] == written
    assert_same_run(reference, tmp_path)


@pytest.mark.usefixtures("sigint_raises")
def test_second_ctrl_c_interrupts_at_once(tmp_path: Path) -> None:
    """The first Ctrl-C is deferred to the end of the step; the second raises where it lands
    (inside the hook here), so no checkpoint of step 3 is written: last.pt is step 2's."""
    reached: list[int] = []
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        build_trainer(tmp_path, on_step=ctrl_c_at(3, times=2, reached=reached)).fit()
    assert reached == [1]
    assert signal.getsignal(signal.SIGINT) is before
    assert load_checkpoint(tmp_path / LAST)["progress"]["global_step"] == 2


def test_fit_outside_the_main_thread_leaves_sigint_alone(tmp_path: Path) -> None:
    """Only the main thread may install signal handlers: elsewhere fit trains as before."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            build_trainer(tmp_path, epochs=1).fit()
        except BaseException as err:  # reported to the main thread below
            errors.append(err)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=300)
    assert not thread.is_alive() and errors == []
    assert load_checkpoint(tmp_path / LAST)["progress"]["epoch"] == 1


def test_autocast_path_keeps_losses_finite(tmp_path: Path) -> None:
    """The AMP code path (CUDA in production) exercised with bf16 autocast on CPU: the forward
    runs in low precision, losses and decoding in float32, checkpoints stay loadable."""
    trainer = build_trainer(tmp_path, epochs=1)
    trainer.amp_dtype = torch.bfloat16
    result = trainer.fit()
    assert all(math.isfinite(v) for k, v in result.history[0].items() if k.startswith("train_"))
    assert all(t.dtype == torch.float32 for t in weights(tmp_path / LAST).values())


def test_determinism_flag_is_restored(tmp_path: Path) -> None:
    before = torch.are_deterministic_algorithms_enabled()
    build_trainer(tmp_path, epochs=1).fit()
    assert torch.are_deterministic_algorithms_enabled() == before


def test_linear_decay_schedule() -> None:
    f = linear_decay(total_steps=10, warmup_steps=2)
    assert [f(s) for s in range(2)] == [0.5, 1.0]
    assert f(2) == 1.0 and math.isclose(f(6), 0.5) and f(10) == 0.0
    g = linear_decay(total_steps=4, warmup_steps=0)
    assert [g(s) for s in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]


class _FakeClock:
    """Seconds that move only when the test says so (batches and checkpoint saves below)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_samples_per_s_counts_checkpoints_and_is_not_reset_by_them(tmp_path: Path) -> None:
    """Each batch takes 1 s and each checkpoint save 5 s on an injected clock: the bar's rate is
    the epoch's samples over the epoch's seconds, saves included, before and after the mid-epoch
    checkpoints (the bug: the clock restarted at a checkpoint but the sample count did not, so
    the rate jumped to all samples / the few seconds since the save)."""
    trainer = build_trainer(tmp_path, epochs=1, every=2)  # 40 samples, batches of 8, 5 steps
    clock = _FakeClock()
    trainer.clock = clock
    load, save = trainer.loader_fn, trainer._save

    def timed_loader(indices: Sequence[int], local_batch: int) -> Iterable[Batch]:
        for batch in load(indices, local_batch):
            clock.now += 1.0
            yield batch

    def timed_save(names: Sequence[str]) -> None:
        clock.now += 5.0
        save(names)

    rates: list[float | None] = []
    trainer.loader_fn = timed_loader
    trainer._save = timed_save  # type: ignore[method-assign]
    trainer.on_step = lambda step: rates.append(trainer.samples_per_s)
    result = trainer.fit()
    # steps at t = 1, 2 | save 2->7 | 8, 9 | save 9->14 | 15: samples 8, 16, 24, 32, 40
    assert rates == pytest.approx([8 / 1, 16 / 2, 24 / 8, 32 / 9, 40 / 15])
    assert result.history[0]["seconds"] == pytest.approx(15.0)
    assert result.history[0]["samples_per_s"] == pytest.approx(40 / 15)


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize("tty", [False, True])
def test_progress_bar_only_on_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tty: bool
) -> None:
    """With progress on, the per-step bar is drawn on a terminal only; in a log (dvc repro, a
    pod) the one summary line per epoch is all there is."""
    trainer = build_trainer(tmp_path, epochs=2)
    trainer.opt = dataclasses.replace(trainer.opt, progress=True)
    stream = _Stream(tty)
    monkeypatch.setattr(sys, "stderr", stream)
    with caplog.at_level(logging.INFO, logger="dynpath.engine.trainer"):
        trainer.fit()
    drawn = stream.getvalue()
    assert ("epoch 1/2" in drawn and "epoch 2/2" in drawn) if tty else drawn == ""
    summaries = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    assert len(summaries) == 2 and "samples/s" in summaries[0]
