"""``dynpath score``: R@k / mIoU of a predictions file against a dataset's annotations.

The protocol comes from the params: R@1 and R@``eval.topk`` at ``eval.iou_thresholds``, the
validation split carved as ``dynpath evaluate`` carves it (``seed``, ``data.val_fraction``). The
dataset and its annotation directory are given explicitly, so a file is scored against the
annotations the user names, not whatever params.yaml points at. The matching and the rule for
several ground-truth windows are :mod:`dynpath.engine.scoring`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dynpath.config import Config
from dynpath.errors import DataError


def run(
    cfg: Config,
    predictions: Path,
    dataset: str,
    root: Path,
    split: str = "test",
    allow_missing: bool = False,
) -> dict[str, Any]:
    """Score ``predictions`` on ``split`` of ``dataset`` at ``root``; the metrics.json keys plus
    ``n``, ``missing``, ``multi_window``, ``format`` and where the annotations came from."""
    from dynpath.data.annotations import load_splits, read_dataset
    from dynpath.engine.scoring import read_predictions, score_predictions

    parsed = read_predictions(predictions)  # a bad file is named before annotations are read
    splits, _report = read_dataset(dataset, root)
    if split == "val" and not splits.get("val"):  # carved from train, as `dynpath evaluate` does
        data = cfg.model_copy(
            update={"data": cfg.data.model_copy(update={"dataset": dataset, "root": str(root)})}
        )
        splits, _report = load_splits(data)
    if not splits.get(split):
        raise DataError(f"{root}: dataset {dataset!r} has no {split} moments")
    ks = (1,) if cfg.eval.topk == 1 else (1, cfg.eval.topk)  # as engine.from_config.ranking_ks
    result = score_predictions(
        predictions,
        splits[split],
        ks=ks,
        thresholds=cfg.eval.iou_thresholds,
        allow_missing=allow_missing,
        where=f"the {split} split of {dataset} at {root}",
        parsed=parsed,
    )
    return {"dataset": dataset, "root": str(root), "split": split, **result}
