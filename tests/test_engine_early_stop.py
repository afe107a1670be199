"""Early stopping (``train.patience``): stops after ``patience`` epochs without a better
validation value, keeps the best checkpoint, and a run killed mid-way resumes to the same stop.

The validation value is scripted per epoch (the trainer's own epoch counter picks it), so when
the stop must happen is known in advance; the model is a small linear localizer."""

from __future__ import annotations

import json
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
from dynpath.engine.trainer import BEST, HISTORY, LAST, Trainer, TrainOptions
from dynpath.model.output import ModelOutput

D = 4
# val metric per epoch: best 30 at epoch 3, then 3 epochs without a better value
SCRIPT = [10.0, 20.0, 30.0, 25.0, 30.0, 12.0, 40.0, 50.0, 60.0, 70.0]


class Linear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(D, 3, bias=False)

    def forward(self, video: Tensor, video_mask: Tensor, words: Tensor, mask: Tensor) -> Any:
        out = self.head(video).masked_fill(~video_mask.unsqueeze(-1), -1e4)
        return ModelOutput(out[..., 0], out[..., 1], out[..., 2], torch.full_like(words[:, 0], -1))


def _items(n: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    return [
        {
            "video": rng.normal(size=(6, D)).astype(np.float32),
            "words": np.array([2, 3], dtype=np.int64),
            "start": 1.0,
            "end": 3.0,
            "duration": 6.0,
            "qid": f"q{i}",
            "vid": f"v{i}",
            "query": "q",
        }
        for i in range(n)
    ]


def _loss(out: ModelOutput, batch: Batch) -> tuple[Tensor, dict[str, float]]:
    loss = F.cross_entropy(out.start_logits, batch.start) + F.cross_entropy(
        out.end_logits, batch.end
    )
    return loss, {"loss": float(loss.detach())}


def _trainer(out: Path, patience: int, epochs: int = 10, on_step: Any = None) -> Trainer:
    torch.manual_seed(0)
    items = _items(12)
    holder: dict[str, Trainer] = {}

    def loader_fn(indices: Sequence[int], bs: int) -> Iterable[Batch]:
        return DataLoader([items[i] for i in indices], batch_size=bs, collate_fn=collate)

    def validate(m: nn.Module) -> dict[str, float]:
        return {"r1_iou0.5": SCRIPT[holder["t"].progress.epoch]}

    opts = TrainOptions(
        epochs=epochs,
        batch_size=4,
        lr=0.01,
        seed=1,
        selection_metric="r1_iou0.5",
        checkpoint_every_steps=2,
        progress=False,
        patience=patience,
    )
    meta = make_meta("v", "a", {"model": {}, "seed": 1}, D, 5)
    trainer = Trainer(Linear(), _loss, len(items), loader_fn, validate, opts, out, meta, "cpu")
    trainer.on_step = on_step
    holder["t"] = trainer
    return trainer


def _epochs(out: Path) -> list[float]:
    return [e["val_r1_iou0.5"] for e in json.loads((out / HISTORY).read_text())]


def test_stops_after_patience_epochs_without_improvement_and_keeps_the_best(
    tmp_path: Path,
) -> None:
    result = _trainer(tmp_path, patience=3).fit()
    # epochs 4, 5 (30 is not better than 30), 6 without improvement -> stop after epoch 6
    assert _epochs(tmp_path) == SCRIPT[:6]
    assert (result.best_epoch, result.epochs_trained, result.stopped_early) == (3, 6, True)
    assert load_checkpoint(tmp_path / BEST)["progress"]["epoch"] == 3  # best.pt of epoch 3
    assert load_checkpoint(tmp_path / LAST)["progress"]["epoch"] == 6


def test_patience_zero_trains_every_epoch(tmp_path: Path) -> None:
    result = _trainer(tmp_path, patience=0).fit()
    assert _epochs(tmp_path) == SCRIPT
    assert (result.best_epoch, result.stopped_early) == (10, False)


def test_reaching_the_cap_is_not_an_early_stop(tmp_path: Path) -> None:
    result = _trainer(tmp_path, patience=3, epochs=6).fit()
    assert result.epochs_trained == 6 and not result.stopped_early


class _Killed(RuntimeError):
    pass


def _kill_at(step: int) -> Any:
    def hook(global_step: int) -> None:
        if global_step == step:
            raise _Killed

    return hook


@pytest.mark.parametrize(
    "kill_step", [5, 13, 16]
)  # mid epoch 2, mid epoch 5, in epoch 6 (the one that stops)
def test_a_killed_run_resumes_to_the_same_stop(tmp_path: Path, kill_step: int) -> None:
    ref = tmp_path / "ref"
    _trainer(ref, patience=3).fit()
    out = tmp_path / "killed"
    with pytest.raises(_Killed):
        _trainer(out, patience=3, on_step=_kill_at(kill_step)).fit()
    result = _trainer(out, patience=3).fit(resume=True)
    assert result.resumed_from is not None
    assert _epochs(out) == _epochs(ref)
    assert (result.best_epoch, result.epochs_trained, result.stopped_early) == (3, 6, True)
    a, b = load_checkpoint(ref / BEST)["model"], load_checkpoint(out / BEST)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resuming_a_stopped_run_trains_nothing_more(tmp_path: Path) -> None:
    _trainer(tmp_path, patience=3).fit()
    before = load_checkpoint(tmp_path / LAST)["progress"]["global_step"]
    result = _trainer(tmp_path, patience=3).fit(resume=True)
    assert result.global_step == before and result.stopped_early
    assert _epochs(tmp_path) == SCRIPT[:6]
