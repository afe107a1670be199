"""What a training checkpoint holds about the loop, and resuming from one exactly.

The trainer saves its :class:`Progress` (epoch, batches consumed, loss sums, history, best value)
with the model, optimizer, scheduler and scaler states and every rank's RNG state
(:func:`checkpoint_payload`); :func:`restore` loads them back after refusing a checkpoint of
another model or data config, so ``--resume`` replays the remaining batches of a half-finished
epoch in the same order with the same random numbers (see :mod:`dynpath.engine.trainer`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch.distributed as torch_dist

from dynpath import schemas
from dynpath.engine.checkpoint import capture_rng, load_checkpoint, restore_rng
from dynpath.engine.distributed import DistInfo
from dynpath.errors import CheckpointError

# The trainer's messages keep the trainer's logger name (the CLI's log lines print it).
log = logging.getLogger("dynpath.engine.trainer")

BEST = schemas.BEST_CHECKPOINT
LAST = "last.pt"


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint."""

    epoch: int = 0  # the epoch in progress (0-based)
    batches_done: int = 0  # batches of ``epoch`` already trained
    global_step: int = 0
    samples_done: int = 0  # samples of ``epoch`` (all ranks)
    loss_sums: dict[str, float] = field(default_factory=dict)  # sample-weighted, all ranks
    epoch_seconds: float = 0.0  # time spent in ``epoch`` before the last checkpoint
    train_seconds: float = 0.0  # total training time before the last checkpoint
    best_value: float | None = None
    best_epoch: int | None = None  # 1-based epoch of best.pt
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "batches_done": self.batches_done,
            "global_step": self.global_step,
            "samples_done": self.samples_done,
            "loss_sums": dict(self.loss_sums),
            "epoch_seconds": self.epoch_seconds,
            "train_seconds": self.train_seconds,
            "best_value": self.best_value,
            "best_epoch": self.best_epoch,
            "history": list(self.history),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Progress:
        return cls(**d)


@contextlib.contextmanager
def rng_isolated() -> Iterator[None]:
    """Run a block without letting it advance any global RNG the training loop depends on."""
    state = capture_rng()
    try:
        yield
    finally:
        restore_rng(state)


def gather_rng(dist: DistInfo) -> list[dict[str, Any]]:
    """Every rank's RNG state, rank 0 first; every rank must call it under DDP (a collective)."""
    mine = capture_rng()
    if not dist.enabled:
        return [mine]
    gathered: list[Any] = [None] * dist.world_size
    torch_dist.all_gather_object(gathered, mine)
    return cast(list[dict[str, Any]], gathered)


def checkpoint_payload(
    meta: dict[str, Any],
    states: Mapping[str, Any],
    rng_ranks: list[dict[str, Any]],
    world_size: int,
    progress: Progress,
) -> dict[str, Any]:
    """The checkpoint dict: ``states`` maps model/optimizer/scheduler/scaler to objects with a
    ``state_dict()``, saved under those keys."""
    return {
        "meta": meta,
        **{name: obj.state_dict() for name, obj in states.items()},
        "rng": rng_ranks[0],
        "rng_ranks": rng_ranks,
        "world_size": world_size,
        "progress": progress.to_dict(),
    }


def config_diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys where two JSON-like configs differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(set(a) | set(b)):
            out += config_diff(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


def _check_config(path: Path, theirs: Mapping[str, Any], mine: Mapping[str, Any]) -> None:
    """Refuse a checkpoint of another model/data config or seed; warn about other changes."""
    diff = config_diff(theirs, mine)
    fatal = [k for k in diff if k == "seed" or k.startswith(("model.", "data.", "vocab."))]
    if fatal:
        raise CheckpointError(
            f"{path}: written with a different model/data config ({', '.join(fatal[:8])}); "
            "resuming would not reproduce the run: start afresh without --resume"
        )
    if diff:
        log.warning("%s: resuming with changed settings: %s", path, ", ".join(diff[:12]))


def _check_epochs(path: Path, progress: Progress, epochs: int) -> None:
    """Refuse a checkpoint further than ``train.epochs``."""
    if progress.epoch > epochs or (progress.epoch == epochs and progress.batches_done > 0):
        # the summary would report e.g. best_epoch 3 of 2 epochs: refuse instead
        raise CheckpointError(
            f"{path}: has {progress.epoch} completed epoch(s) but train.epochs is "
            f"{epochs}; set train.epochs >= {progress.epoch} to continue it, or "
            "train afresh without --resume"
        )


def _restore_rng(path: Path, ckpt: Mapping[str, Any], dist: DistInfo) -> None:
    """This rank's RNG state; rank 0's (with a warning) when the world size changed."""
    ranks = ckpt.get("rng_ranks") or [ckpt["rng"]]
    if len(ranks) == dist.world_size:
        restore_rng(ranks[dist.rank])
        return
    log.warning(
        "%s was written by %d rank(s), this run has %d: RNG streams restart from the "
        "checkpoint's rank-0 state (the run continues but is not bit-identical)",
        path,
        len(ranks),
        dist.world_size,
    )
    restore_rng(ranks[0])


def restore(
    path: Path, meta: Mapping[str, Any], states: Mapping[str, Any], epochs: int, dist: DistInfo
) -> Progress | None:
    """Load ``path`` (a ``last.pt``) into ``states`` (model, optimizer, scheduler, scaler: objects
    with ``load_state_dict``, loaded in that order) and the RNGs; its progress, or None when
    there is no checkpoint yet. Refuses (CheckpointError) one of another variant, arch, model
    or data config or seed, one that does not fit the model, and one past ``epochs``."""
    if not path.exists():
        log.info("--resume: no %s yet, starting from scratch", path)
        return None
    ckpt = load_checkpoint(path, variant=meta.get("variant"), arch=meta.get("arch"))
    _check_config(path, ckpt["meta"].get("config") or {}, meta.get("config") or {})
    try:
        for name, obj in states.items():
            obj.load_state_dict(ckpt[name])
    except (RuntimeError, KeyError, ValueError) as err:
        raise CheckpointError(f"{path}: does not fit this model: {err}") from None
    progress = Progress.from_dict(ckpt["progress"])
    _check_epochs(path, progress, epochs)
    _restore_rng(path, ckpt, dist)
    return progress
