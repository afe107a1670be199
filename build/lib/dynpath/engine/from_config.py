"""The engine's settings from the params: one home for what the train and evaluate steps (and
the benchmark, which times the same training step) derive from a :class:`Config`.

They lived in ``dynpath.steps.train`` and were imported from there by the evaluate step and the
benchmark; a step importing another step's helpers hid which layer they belong to.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader

from dynpath.config import Config
from dynpath.data.dataset import MomentDataset, collate
from dynpath.engine.trainer import TrainOptions


def ranking_ks(cfg: Config) -> tuple[int, ...]:
    """R@1 and R@``eval.topk`` (R@5 by default)."""
    return (1,) if cfg.eval.topk == 1 else (1, cfg.eval.topk)


def eval_loader(ds: MomentDataset, cfg: Config, device: torch.device) -> DataLoader[Any]:
    """In-order loader for validation/test (no workers: features are cached in-process)."""
    return DataLoader(
        ds,
        batch_size=cfg.eval.batch_size,
        shuffle=False,
        collate_fn=collate,
        pin_memory=device.type == "cuda",
    )


def train_options(cfg: Config, **overrides: Any) -> TrainOptions:
    """The trainer's options from the params (the bench times the same step with overrides)."""
    values: dict[str, Any] = {
        "epochs": cfg.train.epochs,
        "batch_size": cfg.train.batch_size,
        "lr": cfg.train.lr,
        "seed": cfg.seed,
        "selection_metric": cfg.eval.selection_metric,
        "weight_decay": cfg.train.weight_decay,
        "warmup_fraction": cfg.train.warmup_fraction,
        "clip_norm": cfg.train.clip_norm,
        "amp": cfg.train.amp,
        "compile": cfg.train.compile,
        "cpu_autocast": cfg.train.autocast,
        "gemm": cfg.train.gemm,
        "checkpoint_every_steps": cfg.train.checkpoint_every,
        "patience": cfg.train.patience,
    }
    return TrainOptions(**{**values, **overrides})
