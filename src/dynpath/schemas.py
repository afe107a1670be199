"""The files the stages pass to each other: their names and typed shapes, in one module.

The train step writes ``train_summary.json``; the evaluate step and the report read it. Its keys
were string literals in three modules; here they are a :class:`TrainSummary`, so mypy checks the
writer's literal and every reader's key. metrics.json's metric keys depend on ``eval.topk`` and
``eval.iou_thresholds`` (``r1_iou0.5``: :func:`dynpath.engine.metrics.metric_key`), so only its
fixed keys are typed (:class:`EvalHeader`). Torch-free: the report reads these.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypedDict, cast

from dynpath.errors import DataError

#: ``outputs/models/<variant>/``: the training summary and the per-epoch history.
TRAIN_SUMMARY = "train_summary.json"
HISTORY = "history.json"
#: ``outputs/eval/<variant>/``: the test metrics and the decoded predictions.
METRICS = "metrics.json"
PREDICTIONS = "predictions.jsonl"
VAL_PREDICTIONS = "val_predictions.jsonl"
#: ``reports/``: the report's machine-readable summary.
REPORT_SUMMARY = "summary.json"


class TrainSummary(TypedDict, total=False):
    """``train_summary.json`` (the train step's return value too). ``total=False``: a reader may
    meet a file written before a key existed and must use ``.get``."""

    variant: str
    arch: str
    seed: int
    parameters: int
    train_seconds: float
    best_epoch: int | None
    best_val: dict[str, float]
    selection_metric: str
    mlflow_run_id: str | None
    pretrained_features: bool
    feature_dim: int
    backbone: Any
    epochs: int
    steps: int
    samples_per_s: float | None
    device: str
    amp: str | None
    world_size: int
    global_batch: int
    resumed_from: Any
    wall_seconds: float


class LatencyMs(TypedDict):
    """metrics.json ``latency_ms``: batch-1 forward + decoding, milliseconds."""

    p50: float
    p95: float


class EvalHeader(TypedDict):
    """The fixed keys of ``metrics.json``; the metric keys (``r1_iou0.5`` ..., ``miou``) sit
    beside them, see the evaluate step's docstring."""

    variant: str
    arch: str
    split: str
    n: int
    shuffled: dict[str, float]
    routes: dict[str, dict[str, Any]]
    latency_ms: LatencyMs
    mlflow_run_id: str | None


def read_train_summary(path: Path) -> TrainSummary:
    """``train_summary.json`` at ``path``; {} when there is none (a run still in progress).

    Raises :class:`~dynpath.errors.DataError` naming the file when it is not a JSON object.
    """
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return cast(TrainSummary, data)
