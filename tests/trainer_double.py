"""The trainer's test double and its helpers, shared by tests/test_engine_trainer.py (in-process)
and tests/test_engine_trainer_processes.py (SIGKILL, torchrun, compile).

The model here is a small test double that obeys the model contract (``forward(video,
video_mask, words, word_mask) -> ModelOutput``) and, like the dynamic model, draws Gumbel noise
and dropout masks from the global torch RNG and skips one of two branches per sample, so RNG
handling and DDP's unused parameters are exercised. Data goes through the real ``collate``.

This file doubles as the child script of the subprocess tests (SIGKILL, torchrun):
``python tests/trainer_double.py OUT_DIR [--block-at STEP] [--resume]``.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from dynpath.data.batch import Batch
from dynpath.data.dataset import collate
from dynpath.engine.checkpoint import load_checkpoint, make_meta
from dynpath.engine.evaluator import predict, score
from dynpath.engine.trainer import (
    Trainer,
    TrainOptions,
    init_distributed,
    shutdown_distributed,
)
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


def main(argv: list[str]) -> None:
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
    main(sys.argv[1:])
