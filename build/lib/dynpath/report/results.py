"""Results of the DAG gathered per variant: what the train and evaluate steps wrote, read once.

Inputs: ``outputs/models/<variant>/`` (train_summary.json, history.json) and
``outputs/eval/<variant>/`` (metrics.json, predictions.jsonl, val_predictions.jsonl), the same
under ``seeds/<seed>/`` for every further training seed (:mod:`dynpath.seeds`).

Missing values (a variant without a selector has no route metrics; a dataset without published
numbers) stay NaN/None (:func:`finite`) and are shown as a dash, never as 0.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dynpath.errors import DataError
from dynpath.io import file_sha256
from dynpath.schemas import (
    BEST_CHECKPOINT,
    HISTORY,
    METRICS,
    PREDICTIONS,
    TRAIN_SUMMARY,
    VAL_PREDICTIONS,
)
from dynpath.seeds import seed_dir
from dynpath.variants import PAPER_ORDER, PAPER_VARIANT
from dynpath.variants import TABLE as VARIANT_TABLE

#: Rows of Tables III/IV, in the paper's order (the paper's model, "Ours", last).
TABLE_ORDER: tuple[str, ...] = PAPER_ORDER

ROUTES: tuple[str, ...] = ("exploitation", "exploration")

#: The paper's model; the report's checks and example queries are about it.
MAIN_VARIANT = PAPER_VARIANT


@dataclass
class SeedRun:
    """One training seed's run of a variant (the primary's lives in the variant's own dirs)."""

    seed: int | None  # None: seeds unknown to the caller (the primary run only)
    metrics: dict[str, Any]  # metrics.json (test)
    predictions: Path | None = None  # predictions.jsonl (test)
    val_predictions: Path | None = None  # val_predictions.jsonl
    history: list[dict[str, Any]] = field(default_factory=list)  # history.json
    stopped_early: bool | None = None  # train_summary.json: train.patience ran out (None: unknown)
    #: "<metrics.json>: <key> is nan": values that were NaN/inf in the file, now None (null)
    non_finite: list[str] = field(default_factory=list)
    metrics_path: Path | None = None  # the metrics.json read


@dataclass
class VariantResult:
    """Everything the report shows about one trained and evaluated variant.

    The top-level fields are the primary seed's run (as before seeds existed); ``runs`` holds
    every seed's run that was evaluated, the primary first, and ``missing_seeds`` the others.
    """

    name: str
    display: str
    metrics: dict[str, Any]  # metrics.json
    train: dict[str, Any] = field(default_factory=dict)  # train_summary.json ({} when missing)
    history: list[dict[str, Any]] = field(default_factory=list)  # history.json
    predictions: Path | None = None  # predictions.jsonl
    runs: list[SeedRun] = field(default_factory=list)
    missing_seeds: list[int] = field(default_factory=list)

    @property
    def arch(self) -> str:
        return str(self.metrics.get("arch") or self.train.get("arch") or self.name)

    @property
    def run_id(self) -> str | None:
        rid = self.metrics.get("mlflow_run_id") or self.train.get("mlflow_run_id")
        return str(rid) if rid else None

    @property
    def experiment_id(self) -> str | None:
        for src in (self.metrics, self.train, self.train.get("tracking") or {}):
            eid = src.get("mlflow_experiment_id") or src.get("experiment_id")
            if eid:
                return str(eid)
        return None

    def metric(self, key: str) -> float | None:
        return finite(self.metrics.get(key))

    def shuffled(self, key: str) -> float | None:
        return finite((self.metrics.get("shuffled") or {}).get(key))

    def route_share(self, route: str) -> float | None:
        return finite(((self.metrics.get("routes") or {}).get(route) or {}).get("share"))

    @property
    def has_routes(self) -> bool:
        return bool(self.metrics.get("routes"))


def finite(value: Any) -> float | None:
    """A finite float, or None for missing/null/NaN (never a made-up 0)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def read_json(path: Path) -> Any:
    """A JSON file, or a DataError naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None


#: Row labels of Tables III/IV (from the torch-free variant table: reading results never imports
#: torch).
DISPLAY: dict[str, str] = {v.name: v.label for v in VARIANT_TABLE}


def display_name(variant: str, arch: str) -> str:
    """The paper's row label ("Sum fusion", "Ours (dynamic)"), else the variant's own name.

    A variant that is not an architecture itself (``dynamic_tau05: {arch: dynamic, ...}``) keeps
    its own name so two rows never share a label.
    """
    if variant != arch or variant not in DISPLAY:
        return variant
    label = DISPLAY[variant]
    return "Ours (dynamic)" if label == "Ours" else label


def ordered_variants(names: Sequence[str]) -> list[str]:
    """Table III order for the paper's rows, then any other variant in params order."""
    known = [v for v in TABLE_ORDER if v in names]
    return known + [v for v in names if v not in TABLE_ORDER]


def span_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two (start, end) spans; 0 when both are empty."""
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(0.0, a[1] - a[0]) + max(0.0, b[1] - b[0]) - inter
    return inter / union if union > 0 else 0.0


def _nulled(value: Any, key: str, found: list[tuple[str, str]]) -> Any:
    """``value`` with every NaN/infinite float replaced by None (JSON null), recursively; the
    dotted keys replaced and what they held are appended to ``found``. A NaN metric must be
    neither shown as a plain dash nor written as bare ``NaN`` (invalid JSON) into summary.json."""
    if isinstance(value, float) and not math.isfinite(value):
        found.append((key, str(value)))
        return None
    if isinstance(value, dict):
        return {k: _nulled(v, f"{key}.{k}" if key else str(k), found) for k, v in value.items()}
    if isinstance(value, list):
        return [_nulled(v, f"{key}[{i}]", found) for i, v in enumerate(value)]
    return value


def _check_checkpoint(mpath: Path, metrics: Mapping[str, Any], model_dir: Path) -> None:
    """Refuse a metrics.json that scored another ``best.pt`` than the one in ``model_dir`` now
    (a retraining after it, e.g. an ``evaluate`` stopped by Ctrl-C between seeds left the older
    seeds' metrics): averaging it with fresh ones would be silently wrong. A file that names no
    checkpoint (written before the field existed) or a model directory without best.pt cannot be
    checked and is accepted."""
    ref = metrics.get("checkpoint")
    if not isinstance(ref, dict):
        return
    scored = ref.get("sha256")
    best = model_dir / BEST_CHECKPOINT
    if not scored or not best.is_file():
        return
    current = file_sha256(best)
    if current != scored:
        raise DataError(
            f"{mpath}: stale: it scored {ref.get('path')} with sha256 {scored[:12]}, but {best} "
            f"is now sha256 {current[:12]} (retrained since); re-run `dynpath evaluate` for it"
        )


def _check_one_dataset(runs: Sequence[SeedRun]) -> None:
    """Refuse evaluations of different datasets in one report (its title, its published numbers
    and the bootstrap's pairing of queries by id assume one); files that do not name their
    dataset (written before the field existed) are accepted."""
    by_dataset: dict[str, list[str]] = {}
    for run in runs:
        ds = run.metrics.get("dataset")
        if isinstance(ds, dict):
            name = f"{ds.get('format')}/{ds.get('name')}"
            by_dataset.setdefault(name, []).append(str(run.metrics_path))
    if len(by_dataset) > 1:
        listed = "; ".join(f"{name}: {', '.join(files)}" for name, files in by_dataset.items())
        raise DataError(
            f"metrics.json files of {len(by_dataset)} datasets in one report ({listed}); "
            "evaluate every variant on one dataset, or report each dataset on its own"
        )


def non_finite_notes(results: Sequence[VariantResult]) -> list[str]:
    """Every NaN/infinite value read from the results' metrics.json files (now null)."""
    return [note for r in results for run in r.runs for note in run.non_finite]


def _load_run(seed: int | None, eval_dir: Path, model_dir: Path) -> SeedRun | None:
    """One seed's run from its eval and model directories; None without metrics.json."""
    mpath = eval_dir / METRICS
    if not mpath.exists():
        return None
    hpath = model_dir / HISTORY
    history = read_json(hpath) if hpath.exists() else []
    ppath, vpath = eval_dir / PREDICTIONS, eval_dir / VAL_PREDICTIONS
    tpath = model_dir / TRAIN_SUMMARY
    train = read_json(tpath) if tpath.exists() else {}
    stopped = train.get("stopped_early") if isinstance(train, dict) else None
    non_finite: list[tuple[str, str]] = []
    metrics = _nulled(read_json(mpath), "", non_finite)
    _check_checkpoint(mpath, metrics, model_dir)
    return SeedRun(
        stopped_early=stopped if isinstance(stopped, bool) else None,
        seed=seed,
        metrics=metrics,
        non_finite=[f"{mpath}: {key} is {value}" for key, value in non_finite],
        metrics_path=mpath,
        predictions=ppath if ppath.exists() else None,
        val_predictions=vpath if vpath.exists() else None,
        history=list(history) if isinstance(history, list) else [],
    )


def load_results(
    variants: Sequence[str],
    eval_dir: Path,
    models_dir: Path,
    seeds: Sequence[int] | None = None,
) -> tuple[list[VariantResult], list[str]]:
    """Results of ``variants`` (Table III order) and the names that have no metrics.json yet.

    ``seeds`` (``Config.seeds``): the primary run is read from the variant's own directories,
    every further seed from ``seeds/<seed>/`` (a seed not evaluated is listed in
    ``missing_seeds``). Without ``seeds`` only the primary run is read.
    """
    results: list[VariantResult] = []
    missing: list[str] = []
    order = list(seeds) if seeds else [None]
    for name in ordered_variants(variants):
        edir, mdir = Path(eval_dir) / name, Path(models_dir) / name
        primary = _load_run(order[0], edir, mdir)
        if primary is None:
            missing.append(name)
            continue
        runs, missing_seeds = [primary], []
        for s in order[1:]:
            assert s is not None and seeds is not None
            run = _load_run(s, seed_dir(edir, seeds, s), seed_dir(mdir, seeds, s))
            if run is None:
                missing_seeds.append(s)
            else:
                runs.append(run)
        tpath = mdir / TRAIN_SUMMARY
        train = read_json(tpath) if tpath.exists() else {}
        arch = str(primary.metrics.get("arch") or train.get("arch") or name)
        results.append(
            VariantResult(
                name=name,
                display=display_name(name, arch),
                metrics=primary.metrics,
                train=train,
                history=primary.history,
                predictions=primary.predictions,
                runs=runs,
                missing_seeds=missing_seeds,
            )
        )
    _check_one_dataset([run for r in results for run in r.runs])
    return results, missing
