"""Trainer: determinism, exact kill-and-resume on CPU, LR schedule, checkpoint checks, torchrun.

The model here is a small test double that obeys the model contract (``forward(video,
video_mask, words, word_mask) -> ModelOutput``) and, like the dynamic model, draws Gumbel noise
and dropout masks from the global torch RNG and skips one of two branches per sample, so RNG
handling and DDP's unused parameters are exercised. Data goes through the real ``collate``.

This file doubles as the child script of the subprocess tests (SIGKILL, torchrun):
``python tests/test_engine_trainer.py OUT_DIR [--block-at STEP] [--resume]``.
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
import subprocess
import sys
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from dynpath.data.batch import Batch
from dynpath.data.dataset import collate
from dynpath.engine.checkpoint import load_checkpoint, make_meta
from dynpath.engine.evaluator import predict, score
from dynpath.engine.trainer import (
    BEST,
    HISTORY,
    LAST,
    Trainer,
    TrainOptions,
    init_distributed,
    linear_decay,
    shutdown_distributed,
)
from dynpath.errors import CheckpointError
from dynpath.model.output import ModelOutput

D, VOCAB = 6, 20
TIMING_KEYS = {"seconds", "samples_per_s"}


def make_items(n: int, seed: int) -> list[dict[str, Any]]:
    """Videos whose ground truth is visible in the features (channel 0 marks the moment)."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        t = int(rng.integers(8, 14))
        duration = float(rng.uniform(6.0, 12.0))
        s_idx = int(rng.integers(0, t - 2))
        e_idx = int(rng.integers(s_idx, t))
        video = rng.normal(0, 0.3, size=(t, D)).astype(np.float32)
        video[s_idx : e_idx + 1, 0] += 1.5
        words = rng.integers(2, VOCAB, size=int(rng.integers(2, 6))).astype(np.int64)
        items.append(
            {
                "video": video,
                "words": words,
                "start": s_idx * duration / t + 0.01,
                "end": (e_idx + 1) * duration / t - 0.01,
                "duration": duration,
                "qid": f"q{i}",
                "vid": f"v{i}",
                "query": "a person does something",
            }
        )
    return items


class TinyPathwayModel(nn.Module):
    """A two-branch localizer: a Gumbel selector routes each sample to one branch."""

    def __init__(self, stochastic: bool = True) -> None:
        super().__init__()
        self.stochastic = stochastic
        self.embed = nn.Embedding(VOCAB, 8, padding_idx=0)
        self.proj = nn.Linear(D, 8)
        self.select = nn.Linear(8, 2)
        self.branches = nn.ModuleList([nn.Linear(16, 8), nn.Linear(16, 8)])
        # no bias: a bias on start/end logits is softmax-shift-invariant (zero gradient up to
        # float noise, which Adam amplifies to +-lr steps), which would make runs incomparable
        self.head = nn.Linear(8, 3, bias=False)
        self.drop = nn.Dropout(0.2 if stochastic else 0.0)

    def forward(
        self, video: Tensor, video_mask: Tensor, words: Tensor, word_mask: Tensor
    ) -> ModelOutput:
        w = self.embed(words) * word_mask.unsqueeze(-1)
        sent = w.sum(1) / word_mask.sum(1, keepdim=True).clamp(min=1)
        logits = self.select(sent)
        if self.training and self.stochastic:
            logits = logits - torch.log(-torch.log(torch.rand_like(logits).clamp(1e-9, 1 - 1e-9)))
        route = logits.argmax(-1)
        v = self.drop(torch.relu(self.proj(video)))
        x = torch.cat([v, sent.unsqueeze(1).expand_as(v)], -1)
        h = torch.zeros_like(v)
        for r, branch in enumerate(self.branches):
            sel = route == r
            if bool(sel.any()):  # only the selected branch runs (unused params under DDP)
                h[sel] = torch.relu(branch(x[sel]))
        # straight-through weight of the chosen route (1 forward, selector gradient backward)
        p = logits.softmax(-1).gather(1, route.unsqueeze(1))
        h = h * (1.0 + p - p.detach()).unsqueeze(-1)
        out = self.head(h).masked_fill(~video_mask.unsqueeze(-1), -1e4)
        return ModelOutput(out[..., 0], out[..., 1], out[..., 2], route, logits.softmax(-1))


def tiny_loss(out: ModelOutput, batch: Batch) -> tuple[Tensor, dict[str, float]]:
    """Per-sample mean CE + masked BCE (sample-mean so DDP shards average like one batch)."""
    ce = F.cross_entropy(out.start_logits, batch.start) + F.cross_entropy(out.end_logits, batch.end)
    mask = batch.video_mask.float()
    bce = F.binary_cross_entropy_with_logits(out.inner_logits, batch.inner, reduction="none")
    inner = ((bce * mask).sum(1) / mask.sum(1)).mean()
    loss = ce + inner
    return loss, {"loss_bound": float(ce.detach()), "loss_inner": float(inner.detach())}


def build_trainer(
    out_dir: Path,
    epochs: int = 3,
    every: int = 2,
    stochastic: bool = True,
    variant: str = "tiny",
    n_train: int = 40,
    batch_size: int = 8,
    on_step: Any = None,
    dist: Any = None,
    compile_model: bool = False,
) -> Trainer:
    torch.manual_seed(0)
    model = TinyPathwayModel(stochastic)
    train_items = make_items(n_train, seed=1)
    val_items = make_items(16, seed=2)
    opts = TrainOptions(
        epochs=epochs,
        batch_size=batch_size,
        lr=0.02,
        seed=123,
        selection_metric="r1_iou0.5",
        warmup_fraction=0.1,
        checkpoint_every_steps=every,
        progress=False,
        compile=compile_model,
    )

    def loader_fn(indices: Sequence[int], local_batch: int) -> Iterable[Batch]:
        # a real DataLoader: creating its iterator draws from the global RNG (must be isolated)
        subset = [train_items[i] for i in indices]
        return DataLoader(subset, batch_size=local_batch, collate_fn=collate)

    def validate(m: nn.Module) -> dict[str, float]:
        batches = [collate(val_items[i : i + 5]) for i in range(0, len(val_items), 5)]
        return score(predict(m, batches, "cpu", k=3, nms_iou=0.5), ks=(1, 3))

    meta = make_meta(variant, "tiny_arch", {"model": {"dim": 8}, "seed": 123}, D, VOCAB)
    return Trainer(
        model,
        tiny_loss,
        len(train_items),
        loader_fn,
        validate,
        opts,
        out_dir,
        meta,
        device="cpu",
        dist=dist,
        on_step=on_step,
    )


def strip_timing(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k not in TIMING_KEYS} for e in history]


def weights(path: Path) -> dict[str, Tensor]:
    return load_checkpoint(path)["model"]


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


class Killed(RuntimeError):
    pass


def kill_at(step: int) -> Any:
    def hook(global_step: int) -> None:
        if global_step == step:
            raise Killed(f"simulated kill after step {step}")

    return hook


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterable[None]:
    """One intra-op thread: tiny ops are ~1000x slower with OpenMP threads on a busy 2-CPU box,
    and the subprocess children use the same setting so their floats match this process."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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


# --------------------------------------------------------------------------- subprocess tests

SCRIPT = Path(__file__).resolve()


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


def _main(argv: list[str]) -> None:
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--block-at", type=int, default=0, help="after this step, block until killed")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--deterministic-model", action="store_true")
    p.add_argument("--epochs", type=int, default=3)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    info = init_distributed("cpu")

    def on_step(step: int) -> None:
        print(f"step {step}", flush=True)
        if step == args.block_at:
            threading.Event().wait()  # the parent's SIGKILL ends it here

    trainer = build_trainer(
        Path(args.out),
        epochs=args.epochs,
        stochastic=not args.deterministic_model,
        on_step=on_step,
        dist=info,
    )
    try:
        trainer.fit(resume=args.resume)
    finally:
        shutdown_distributed(info)


if __name__ == "__main__":
    _main(sys.argv[1:])


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
