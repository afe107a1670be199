"""The report's tables as pandas DataFrames: Tables III/IV, R@5, the shuffled-video control,
routes, route examples, cost, the data counts, and the CSV for ``dvc plots``.

Why DataFrames: the same table is rendered to HTML and Markdown (``DataFrame.to_html`` /
``to_markdown``) and written as CSV for ``dvc plots``; keeping the numbers numeric until rendering
lets each renderer format them once. Missing values stay NaN/None and are shown as a dash.

The results they are built from live in :mod:`dynpath.report.results`; the per-query analyses in
:mod:`dynpath.report.queries` (families, routes), :mod:`dynpath.report.oracles` and
:mod:`dynpath.report.seed_stats` (seeds, bootstrap, still rising). The names below the imports are
re-exported so that ``dynpath.report.tables`` still offers everything it did before the split.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from dynpath.engine.metrics import metric_key
from dynpath.errors import DataError
from dynpath.report.oracles import ANY_FAMILY, OracleAnalysis, oracle_analysis
from dynpath.report.queries import (
    COLLAPSE_SHARE,
    FAMILY_GAP_POINTS,
    FAMILY_LABELS,
    META_FILE,
    ORACLE_THRESHOLD,
    QUERY_COLUMNS,
    SINGLE_MODULES,
    Runs,
    family_metrics,
    family_order,
    load_families,
    query_key,
    r1_metrics,
    read_queries,
    route_family_counts,
    route_seed_summary,
    route_seed_table,
)
from dynpath.report.results import (
    DISPLAY,
    MAIN_VARIANT,
    ROUTES,
    TABLE_ORDER,
    SeedRun,
    VariantResult,
    display_name,
    finite,
    load_results,
    ordered_variants,
    span_iou,
)
from dynpath.report.seed_stats import (
    BOOTSTRAP_LEVEL,
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    PLATEAU_FRACTION,
    bootstrap_vs_reference,
    paired_bootstrap,
    seed_mean_hits,
    seed_stats,
    still_rising,
    still_rising_flags,
)

#: The names of this module before it was split by concern (results, queries, oracles,
#: seed_stats), still importable from here.
__all__ = [
    "ANY_FAMILY",
    "BOOTSTRAP_LEVEL",
    "BOOTSTRAP_RESAMPLES",
    "BOOTSTRAP_SEED",
    "COLLAPSE_SHARE",
    "DISPLAY",
    "FAMILY_GAP_POINTS",
    "FAMILY_LABELS",
    "MAIN_VARIANT",
    "META_FILE",
    "ORACLE_THRESHOLD",
    "PLATEAU_FRACTION",
    "QUERY_COLUMNS",
    "ROUTES",
    "SINGLE_MODULES",
    "TABLE_ORDER",
    "OracleAnalysis",
    "Runs",
    "SeedRun",
    "VariantResult",
    "ablation_csv",
    "ablation_table",
    "bootstrap_vs_reference",
    "cost_table",
    "data_tables",
    "display_name",
    "family_metrics",
    "family_order",
    "load_families",
    "load_results",
    "metric_key",
    "oracle_analysis",
    "ordered_variants",
    "paired_bootstrap",
    "query_key",
    "r1_columns",
    "r1_metrics",
    "read_queries",
    "recall5_table",
    "route_examples",
    "route_family_counts",
    "route_seed_summary",
    "route_seed_table",
    "routes_table",
    "seed_mean_hits",
    "seed_stats",
    "shuffled_table",
    "still_rising",
    "still_rising_flags",
]


def r1_columns(thresholds: Sequence[float]) -> list[tuple[str, str]]:
    """(metrics key, column label) of the Table III layout: R@1 per IoU threshold, then mIoU."""
    return [(metric_key(1, t), f"R@1 IoU≥{t:g}") for t in thresholds] + [("miou", "mIoU")]


def ablation_table(
    results: Sequence[VariantResult],
    thresholds: Sequence[float],
    published: Mapping[str, Mapping[str, float]] | None = None,
    still_rising: Mapping[str, bool | None] | None = None,
) -> pd.DataFrame:
    """Tables III/IV layout; with ``published``, each metric is followed by the paper's value;
    with ``still_rising`` (:func:`still_rising_flags`), a last column flags the variants whose
    validation metric was still improving at the end of training."""
    rows = []
    for r in results:
        row: dict[str, Any] = {"Variant": r.display}
        paper = (published or {}).get(r.name)
        for key, label in r1_columns(thresholds):
            row[label] = r.metric(key)
            if published is not None:
                row[f"{label} (paper)"] = finite((paper or {}).get(key))
        if still_rising is not None:
            row["Still rising"] = still_rising.get(r.name)
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
                "Share %": (None if finite(entry.get("share")) is None else 100 * entry["share"]),
                "Queries": entry.get("n"),
            }
            for key, label in r1_columns(thresholds):
                row[label] = finite(entry.get(key))
            rows.append(row)
    return pd.DataFrame(rows)


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
            iou = float(p["iou"]) if finite(p.get("iou")) is not None else span_iou(top, gt)
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
                "Train time (s)": finite(r.train.get("train_seconds")),
                "Best epoch": r.train.get("best_epoch"),
                "Latency p50 (ms)": finite(latency.get("p50")),
                "Latency p95 (ms)": finite(latency.get("p95")),
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
