"""Results of the DAG gathered per variant, and the report's tables as pandas DataFrames.

Inputs (written by the train and evaluate steps): ``outputs/models/<variant>/`` (train_summary.json,
history.json) and ``outputs/eval/<variant>/`` (metrics.json, predictions.jsonl), plus the vocab
step's data report.

Why DataFrames: the same table is rendered to HTML and Markdown (``DataFrame.to_html`` /
``to_markdown``) and written as CSV for ``dvc plots``; keeping the numbers numeric until rendering
lets each renderer format them once. Missing values (a variant without a selector has no route
metrics; a dataset without published numbers) stay NaN/None and are shown as a dash, never as 0.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from dynpath.errors import DataError

#: Rows of Tables III/IV, in the paper's order (the paper's model, "Ours", last).
TABLE_ORDER: tuple[str, ...] = (
    "exploitation_only",
    "exploration_only",
    "exploitation_wo_lml",
    "exploration_wo_te",
    "network_parallel",
    "sum_fusion",
    "multiply_fusion",
    "concat_fusion",
    "soft_dynamic",
    "dynamic",
)

ROUTES: tuple[str, ...] = ("exploitation", "exploration")

#: The paper's model; the report's checks and example queries are about it.
MAIN_VARIANT = "dynamic"


def metric_key(k: int, threshold: float) -> str:
    """``r1_iou0.5``: the key format of metrics.json (same as dynpath.engine.metrics)."""
    return f"r{k}_iou{threshold:g}"


@dataclass
class VariantResult:
    """Everything the report shows about one trained and evaluated variant."""

    name: str
    display: str
    metrics: dict[str, Any]  # metrics.json
    train: dict[str, Any] = field(default_factory=dict)  # train_summary.json ({} when missing)
    history: list[dict[str, Any]] = field(default_factory=list)  # history.json
    predictions: Path | None = None  # predictions.jsonl

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
        return _num(self.metrics.get(key))

    def shuffled(self, key: str) -> float | None:
        return _num((self.metrics.get("shuffled") or {}).get(key))

    def route_share(self, route: str) -> float | None:
        return _num(((self.metrics.get("routes") or {}).get(route) or {}).get("share"))

    @property
    def has_routes(self) -> bool:
        return bool(self.metrics.get("routes"))


def _num(value: Any) -> float | None:
    """A finite float, or None for missing/null/NaN (never a made-up 0)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None


#: Row labels of Tables III/IV. The model registry holds the same labels (a test keeps them equal);
#: they are repeated here so that reading results never imports torch.
DISPLAY: dict[str, str] = {
    "exploitation_only": "exploitation module only",
    "exploration_only": "exploration module only",
    "exploitation_wo_lml": "exploitation w/o LML",
    "exploration_wo_te": "exploration w/o TE",
    "network_parallel": "network parallel",
    "sum_fusion": "Sum fusion",
    "multiply_fusion": "Multiply fusion",
    "concat_fusion": "Concatenate fusion",
    "soft_dynamic": "Soft dynamic",
    "dynamic": "Ours",
}


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


def load_results(
    variants: Sequence[str], eval_dir: Path, models_dir: Path
) -> tuple[list[VariantResult], list[str]]:
    """Results of ``variants`` (Table III order) and the names that have no metrics.json yet."""
    results: list[VariantResult] = []
    missing: list[str] = []
    for name in ordered_variants(variants):
        mpath = Path(eval_dir) / name / "metrics.json"
        if not mpath.exists():
            missing.append(name)
            continue
        metrics = _read_json(mpath)
        tpath = Path(models_dir) / name / "train_summary.json"
        hpath = Path(models_dir) / name / "history.json"
        ppath = Path(eval_dir) / name / "predictions.jsonl"
        train = _read_json(tpath) if tpath.exists() else {}
        history = _read_json(hpath) if hpath.exists() else []
        arch = str(metrics.get("arch") or train.get("arch") or name)
        results.append(
            VariantResult(
                name=name,
                display=display_name(name, arch),
                metrics=metrics,
                train=train,
                history=list(history) if isinstance(history, list) else [],
                predictions=ppath if ppath.exists() else None,
            )
        )
    return results, missing


# --------------------------------------------------------------------------- tables


def r1_columns(thresholds: Sequence[float]) -> list[tuple[str, str]]:
    """(metrics key, column label) of the Table III layout: R@1 per IoU threshold, then mIoU."""
    return [(metric_key(1, t), f"R@1 IoU≥{t:g}") for t in thresholds] + [("miou", "mIoU")]


def ablation_table(
    results: Sequence[VariantResult],
    thresholds: Sequence[float],
    published: Mapping[str, Mapping[str, float]] | None = None,
) -> pd.DataFrame:
    """Tables III/IV layout; with ``published``, each metric is followed by the paper's value."""
    rows = []
    for r in results:
        row: dict[str, Any] = {"Variant": r.display}
        paper = (published or {}).get(r.name)
        for key, label in r1_columns(thresholds):
            row[label] = r.metric(key)
            if published is not None:
                row[f"{label} (paper)"] = _num((paper or {}).get(key))
        rows.append(row)
    return pd.DataFrame(rows)


def recall5_table(results: Sequence[VariantResult], thresholds: Sequence[float]) -> pd.DataFrame:
    rows = []
    for r in results:
        row: dict[str, Any] = {"Variant": r.display}
        for t in thresholds:
            row[f"R@5 IoU≥{t:g}"] = r.metric(metric_key(5, t))
        rows.append(row)
    return pd.DataFrame(rows)


def shuffled_table(results: Sequence[VariantResult], thresholds: Sequence[float]) -> pd.DataFrame:
    """The shuffled-video control next to the real score: a model that reads the video drops."""
    rows = []
    key = metric_key(1, 0.5) if 0.5 in thresholds else metric_key(1, thresholds[0])
    main = key.replace("r1_iou", "R@1 IoU≥")
    for r in results:
        row: dict[str, Any] = {"Variant": r.display}
        for k, label in r1_columns(thresholds):
            row[f"{label} shuffled"] = r.shuffled(k)
        real, shuf = r.metric(key), r.shuffled(key)
        row[f"{main} real"] = real
        row[f"{main} kept %"] = (
            None if real is None or shuf is None or real == 0 else 100.0 * shuf / real
        )
        rows.append(row)
    return pd.DataFrame(rows)


def routes_table(results: Sequence[VariantResult], thresholds: Sequence[float]) -> pd.DataFrame:
    """Per-route share and metrics for the variants with a selector (Fig. 7's two modules)."""
    rows = []
    for r in results:
        if not r.has_routes:
            continue
        for route in ROUTES:
            entry = (r.metrics.get("routes") or {}).get(route) or {}
            row: dict[str, Any] = {
                "Variant": r.display,
                "Route": route,
                "Share %": None if _num(entry.get("share")) is None else 100 * entry["share"],
                "Queries": entry.get("n"),
            }
            for key, label in r1_columns(thresholds):
                row[label] = _num(entry.get(key))
            rows.append(row)
    return pd.DataFrame(rows)


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(0.0, a[1] - a[0]) + max(0.0, b[1] - b[0]) - inter
    return inter / union if union > 0 else 0.0


def route_examples(result: VariantResult, per_route: int) -> pd.DataFrame:
    """A few test queries of each route with ground truth, top-1 span and IoU (like Fig. 7).

    Deterministic choice: per route, the best-localized queries first and then the worst one, so
    a reader sees both what the route does well and how it fails.
    """
    columns = ["Route", "Video", "Query", "Ground truth (s)", "Top-1 (s)", "IoU"]
    if result.predictions is None or per_route <= 0 or not result.has_routes:
        return pd.DataFrame(columns=columns)
    by_route: dict[str, list[dict[str, Any]]] = {r: [] for r in ROUTES}
    with open(result.predictions, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                p = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{result.predictions}:{n}: not valid JSON ({err})") from None
            route = p.get("route")
            if route not in by_route or not p.get("topk"):
                continue
            top = [float(p["topk"][0][0]), float(p["topk"][0][1])]
            gt = [float(p["gt"][0]), float(p["gt"][1])]
            iou = float(p["iou"]) if _num(p.get("iou")) is not None else _iou(top, gt)
            by_route[route].append(
                {
                    "Route": route,
                    "Video": p.get("vid", ""),
                    "Query": p.get("query", ""),
                    "Ground truth (s)": f"{gt[0]:.1f}–{gt[1]:.1f}",
                    "Top-1 (s)": f"{top[0]:.1f}–{top[1]:.1f}",
                    "IoU": iou,
                    "_qid": str(p.get("qid", "")),
                }
            )
    rows: list[dict[str, Any]] = []
    for route in ROUTES:
        items = sorted(by_route[route], key=lambda e: (-e["IoU"], e["_qid"]))
        if len(items) > per_route:
            items = [*items[: per_route - 1], items[-1]]
        rows.extend(items)
    df = pd.DataFrame(rows, columns=[*columns, "_qid"])
    return df.drop(columns="_qid")


def cost_table(results: Sequence[VariantResult]) -> pd.DataFrame:
    """Parameters, training time, best epoch and batch-1 inference latency per variant."""
    rows = []
    for r in results:
        latency = r.metrics.get("latency_ms") or {}
        rows.append(
            {
                "Variant": r.display,
                "Parameters": r.train.get("parameters"),
                "Train time (s)": _num(r.train.get("train_seconds")),
                "Best epoch": r.train.get("best_epoch"),
                "Latency p50 (ms)": _num(latency.get("p50")),
                "Latency p95 (ms)": _num(latency.get("p95")),
            }
        )
    return pd.DataFrame(rows)


def data_tables(report: Mapping[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Counts per split and skipped lines by reason, from the vocab step's data_report.json.

    Accepts both the DataReport layout (``lines``/``kept``/... per split) and the
    ``dynpath data-stats --json`` layout (``splits: {name: {...}}``).
    """
    if "splits" in report:
        splits = report["splits"]
        counts = pd.DataFrame(
            [
                {
                    "Split": s,
                    "Lines": v.get("lines"),
                    "Kept": v.get("kept"),
                    "Videos": v.get("videos"),
                    "Clipped ends": v.get("clipped"),
                    "Duplicates": v.get("duplicates"),
                    "Skipped": v.get("skipped_total"),
                }
                for s, v in splits.items()
            ]
        )
        reasons = {s: v.get("skipped") or {} for s, v in splits.items()}
    else:
        names: list[str] = []
        for key in ("lines", "kept", "videos"):
            names += [s for s in report.get(key, {}) if s not in names]
        skipped_list = report.get("skipped") or []
        reasons = dict(report.get("skipped_by_reason") or {})
        if not reasons:
            for s in skipped_list:
                split_reasons = reasons.setdefault(s["split"], {})
                split_reasons[s["reason"]] = split_reasons.get(s["reason"], 0) + 1
        counts = pd.DataFrame(
            [
                {
                    "Split": s,
                    "Lines": report.get("lines", {}).get(s),
                    "Kept": report.get("kept", {}).get(s),
                    "Videos": report.get("videos", {}).get(s),
                    "Clipped ends": report.get("clipped", {}).get(s),
                    "Duplicates": report.get("duplicates", {}).get(s),
                    "Skipped": sum((reasons.get(s) or {}).values()),
                }
                for s in names
            ]
        )
    order = {"train": 0, "val": 1, "test": 2}
    counts = counts.sort_values(
        "Split", key=lambda c: c.map(lambda s: order.get(s, 3)), kind="stable"
    )
    counts = counts.reset_index(drop=True)
    skipped = pd.DataFrame(
        [
            {"Split": s, "Reason": reason, "Lines": n}
            for s, by_reason in reasons.items()
            for reason, n in sorted(by_reason.items())
        ],
        columns=["Split", "Reason", "Lines"],
    )
    return counts, skipped


def ablation_csv(results: Sequence[VariantResult], thresholds: Sequence[float]) -> pd.DataFrame:
    """Machine-readable twin of the tables (one row per variant) for ``dvc plots``."""
    rows = []
    for r in results:
        row: dict[str, Any] = {"variant": r.name, "display": r.display}
        for k in (1, 5):
            for t in thresholds:
                row[metric_key(k, t)] = r.metric(metric_key(k, t))
        row["miou"] = r.metric("miou")
        for key, _ in r1_columns(thresholds):
            row[f"shuffled_{key}"] = r.shuffled(key)
        for route in ROUTES:
            row[f"share_{route}"] = r.route_share(route)
        rows.append(row)
    return pd.DataFrame(rows)
