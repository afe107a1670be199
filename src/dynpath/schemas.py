"""The files the stages pass to each other: their names and typed shapes, in one module.

The train step writes ``train_summary.json``; the evaluate step and the report read it. Its keys
were string literals in three modules; here they are a :class:`TrainSummary`, so mypy checks the
writer's literal and every reader's key. metrics.json's metric keys depend on ``eval.topk`` and
``eval.iou_thresholds`` (``r1_iou0.5``: :func:`dynpath.engine.metrics.metric_key`), so only its
fixed keys are typed (:class:`EvalHeader`; :func:`metrics_json` puts the metric keys beside
them in the file's order). The report's ``summary.json`` is a :class:`ReportSummary`, written by
the report step and read back by ``dynpath report --summary``. Torch-free: the report reads these.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NotRequired, TypedDict, cast

from dynpath.errors import DataError

#: ``outputs/models/<variant>/``: the training summary and the per-epoch history.
TRAIN_SUMMARY = "train_summary.json"
HISTORY = "history.json"
#: ``outputs/eval/<variant>/``: the test metrics and the decoded predictions.
METRICS = "metrics.json"
PREDICTIONS = "predictions.jsonl"
VAL_PREDICTIONS = "val_predictions.jsonl"
#: ``outputs/models/<variant>/``: the checkpoint the evaluate step scores.
BEST_CHECKPOINT = "best.pt"
#: ``outputs/vocab/``: the vocab step's DataReport (counts, skipped lines, the validation carve),
#: which train, evaluate and the report read.
DATA_REPORT = "data_report.json"
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
    epochs: int  # the cap (train.epochs)
    epochs_trained: int
    stopped_early: bool  # train.patience ran out before the cap
    patience: int
    steps: int
    samples_per_s: float | None
    device: str
    amp: str | None
    gemm: str  # the fp32 CPU GEMM library the run used (train.gemm, "auto" resolved)
    world_size: int
    global_batch: int
    resumed_from: Any
    wall_seconds: float


class LatencyMs(TypedDict):
    """metrics.json ``latency_ms``: batch-1 forward + decoding, milliseconds."""

    p50: float
    p95: float


class DatasetRef(TypedDict):
    """metrics.json ``dataset``: which dataset was scored (``data.dataset`` and ``data.name``)."""

    format: str
    name: str


class CheckpointRef(TypedDict):
    """metrics.json ``checkpoint``: the ``best.pt`` that was scored, by path and content."""

    path: str
    sha256: str


class EvalHeader(TypedDict):
    """The fixed keys of ``metrics.json``; the metric keys (``r1_iou0.5`` ..., ``miou``) sit
    beside them, see the evaluate step's docstring. ``dataset`` and ``checkpoint`` are absent
    from files written before they existed (the report then cannot check them and accepts the
    file, as before)."""

    variant: str
    arch: str
    split: str
    n: int
    shuffled: dict[str, float]
    routes: dict[str, dict[str, Any]]
    latency_ms: LatencyMs
    mlflow_run_id: str | None
    dataset: NotRequired[DatasetRef]
    checkpoint: NotRequired[CheckpointRef]


#: metrics.json's header keys a file written before they existed lacks (``NotRequired`` is not
#: visible at run time under ``from __future__ import annotations``, hence the explicit list).
HEADER_OPTIONAL = ("dataset", "checkpoint")

#: metrics.json's header keys written before the metric keys; the rest of the header follows them.
_HEADER_FIRST = ("variant", "arch", "split", "n")


def metrics_json(header: EvalHeader, metrics: Mapping[str, float]) -> dict[str, Any]:
    """``metrics.json``'s content: ``variant``, ``arch``, ``split``, ``n``, the metric keys, then
    the rest of the header (the order the file has always had, so its bytes do not change)."""
    fixed: Mapping[str, Any] = header
    out: dict[str, Any] = {k: fixed[k] for k in _HEADER_FIRST}
    out.update(metrics)
    out.update({k: v for k, v in fixed.items() if k not in _HEADER_FIRST})
    return out


def eval_header(data: Mapping[str, Any], source: str) -> EvalHeader:
    """The fixed keys of a ``metrics.json`` dict read from ``source`` (a path, for the error).

    Raises :class:`~dynpath.errors.DataError` naming ``source`` and the missing keys (a file from
    another tool or a truncated one), rather than a bare KeyError where a key is first used.
    """
    missing = [k for k in EvalHeader.__annotations__ if k not in data and k not in HEADER_OPTIONAL]
    if missing:
        raise DataError(
            f"{source}: not a dynpath metrics.json (missing {', '.join(missing)}); "
            "re-run `dynpath evaluate` for it"
        )
    return cast(EvalHeader, {k: data[k] for k in EvalHeader.__annotations__ if k in data})


class SummaryCheck(TypedDict):
    """One acceptance check of the synthetic benchmark (``summary.json`` ``checks``)."""

    name: str
    passed: bool
    value: Any
    threshold: Any
    detail: str


class VariantSummary(TypedDict, total=False):
    """``summary.json`` ``variants.<name>``: the primary seed's results; the seed analysis keys
    (``seeds`` ... ``still_rising_seeds``) only where there was one."""

    display: str
    arch: str
    n: int | None
    metrics: dict[str, Any]
    shuffled: dict[str, Any]
    routes: dict[str, float | None]
    route_metrics: dict[str, Any]
    latency_ms: LatencyMs | None
    parameters: int | None
    train_seconds: float | None
    best_epoch: int | None
    pretrained_features: bool | None
    mlflow_run_id: str | None
    mlflow_url: str | None
    published: Mapping[str, float] | None
    seeds: dict[str, Any]
    vs_dynamic: dict[str, Any] | None
    still_rising: bool | None
    still_rising_seeds: Any
    stops: Any  # per seed: epochs trained, best epoch, "early_stop" | "epoch_cap"


class ReportSummary(TypedDict, total=False):
    """``reports/summary.json`` (the report step's machine-readable output). ``total=False``: the
    analysis keys (``seeds`` ... ``analysis_notes``) and ``files`` are added after the rest, and a
    reader may meet a file written before a key existed."""

    dataset: str
    name: str
    split: str | None
    iou_thresholds: list[float]
    order: list[str]
    missing: list[str]
    pretrained_features: bool | None
    variants: dict[str, VariantSummary]
    checks: list[SummaryCheck]
    checks_passed: bool | None
    seeds: dict[str, Any]
    families: dict[str, Any] | None
    routes_by_family: dict[str, Any] | None
    routes_by_seed: dict[str, Any]  # per seed: shares, collapse onto one module, family split
    oracle: dict[str, Any] | None
    analysis_notes: list[str]
    non_finite: list[str]  # "<metrics.json>: <key> is nan" (written as null); only when any
    files: dict[str, Any]


def read_report_summary(path: Path) -> ReportSummary:
    """``summary.json`` at ``path`` (which must exist); :class:`~dynpath.errors.DataError` naming
    the file when it is not valid JSON or not an object with ``variants`` and ``order``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(data).__name__}")
    missing = [k for k in ("dataset", "name", "order", "variants") if k not in data]
    if missing:
        raise DataError(
            f"{path}: not a dynpath report summary (missing {', '.join(missing)}); "
            "re-run `dynpath report`"
        )
    return cast(ReportSummary, data)


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
