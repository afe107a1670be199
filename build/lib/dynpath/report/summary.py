"""summary.json's per-variant content, the MLflow links, and the short table `make run` prints.

Kept apart from the step (``dynpath.steps.report``), which only reads inputs and writes
outputs: ``dynpath report --summary`` reads an existing summary.json without building anything.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from dynpath.config import Config
from dynpath.engine.metrics import metric_key
from dynpath.errors import DynpathError
from dynpath.report.html import format_cell
from dynpath.report.results import ROUTES, VariantResult, non_finite_notes
from dynpath.report.tables import r1_columns
from dynpath.schemas import (
    REPORT_SUMMARY,
    ReportSummary,
    SummaryCheck,
    VariantSummary,
    read_report_summary,
)
from dynpath.variants import paper_ablation

log = logging.getLogger(__name__)

HTML = "report.html"
MARKDOWN = "report.md"
SUMMARY = REPORT_SUMMARY


# --------------------------------------------------------------------------- MLflow links


def mlflow_links(results: Sequence[VariantResult], tracking_uri: str) -> dict[str, str | None]:
    """Variant -> URL of its MLflow run in the UI (http(s) tracking URIs only), else None.

    The UI route needs the experiment id: taken from the results when recorded there, otherwise
    asked from the tracking server (short timeouts; an unreachable server just means no links).
    """
    links: dict[str, str | None] = {r.name: None for r in results}
    if not tracking_uri.startswith(("http://", "https://")):
        return links
    base = tracking_uri.rstrip("/")
    client = None
    for r in results:
        if not r.run_id:
            continue
        exp = r.experiment_id
        if exp is None:
            try:
                if client is None:
                    from mlflow.tracking import MlflowClient

                    from dynpath.tracking.mlflow_env import configure_mlflow_env

                    configure_mlflow_env()
                    client = MlflowClient(tracking_uri=tracking_uri)
                exp = str(client.get_run(r.run_id).info.experiment_id)
            except Exception as err:  # the report must not depend on a live server
                if "RESOURCE_DOES_NOT_EXIST" in str(getattr(err, "error_code", "")):
                    log.warning("no MLflow link for %s: run %s not found", r.name, r.run_id)
                    continue
                log.warning("no MLflow links (%s unreachable?): %s", tracking_uri, err)
                break
        links[r.name] = f"{base}/#/experiments/{exp}/runs/{r.run_id}"
    return links


# --------------------------------------------------------------------------- summary.json


def published_numbers(dataset: str) -> dict[str, dict[str, float]] | None:
    """The paper's ablation numbers on ``dataset`` per variant, or None where it has none."""
    return paper_ablation(dataset)


def _metric_subset(d: Mapping[str, Any], thresholds: Sequence[float]) -> dict[str, Any]:
    keys = [metric_key(k, t) for k in (1, 5) for t in thresholds] + ["miou"]
    return {k: d.get(k) for k in keys if k in d}


def build_summary(
    cfg: Config,
    results: Sequence[VariantResult],
    missing: Sequence[str],
    links: Mapping[str, str | None],
    checks: Sequence[SummaryCheck],
    published: Mapping[str, Mapping[str, float]] | None,
    pretrained: bool | None,
) -> ReportSummary:
    """summary.json without the seed analysis and ``files`` (the step's ``run`` adds them)."""
    thresholds = cfg.eval.iou_thresholds
    variants: dict[str, VariantSummary] = {}
    for r in results:
        routes = r.metrics.get("routes") or {}
        variants[r.name] = {
            "display": r.display,
            "arch": r.arch,
            "n": r.metrics.get("n"),
            "metrics": _metric_subset(r.metrics, thresholds),
            "shuffled": _metric_subset(r.metrics.get("shuffled") or {}, thresholds),
            "routes": {route: (routes.get(route) or {}).get("share") for route in routes},
            "route_metrics": routes,
            "latency_ms": r.metrics.get("latency_ms"),
            "parameters": r.train.get("parameters"),
            "train_seconds": r.train.get("train_seconds"),
            "best_epoch": r.train.get("best_epoch"),
            "pretrained_features": r.train.get("pretrained_features"),
            "mlflow_run_id": r.run_id,
            "mlflow_url": links.get(r.name),
            "published": None if published is None else published.get(r.name),
        }
    out: ReportSummary = {
        "dataset": cfg.data.dataset,
        "name": cfg.data.name,
        "split": results[0].metrics.get("split", "test") if results else None,
        "iou_thresholds": list(thresholds),
        "order": [r.name for r in results],
        "missing": list(missing),
        "pretrained_features": pretrained,
        "variants": variants,
        "checks": list(checks),
        "checks_passed": None if not checks else all(c["passed"] for c in checks),
    }
    notes = non_finite_notes(results)
    if notes:  # only then, so that a report without any is unchanged
        out["non_finite"] = notes
    return out


def pretrained_features(results: Sequence[VariantResult]) -> bool | None:
    """False if ANY variant trained on features from a randomly initialised backbone."""
    flags = [r.train.get("pretrained_features") for r in results]
    known = [bool(f) for f in flags if f is not None]
    if not known:
        return None
    return all(known)


# --------------------------------------------------------------------------- printed summary


def summary_table(summary: Mapping[str, Any]) -> pd.DataFrame:
    """The short results table of :func:`print_summary` (one row per variant)."""
    th = summary.get("iou_thresholds") or [0.3, 0.5, 0.7]
    key05 = metric_key(1, 0.5) if 0.5 in th else metric_key(1, th[0])
    rows = []
    for name in summary["order"]:
        v = summary["variants"][name]
        row: dict[str, Any] = {"variant": name}
        for key, label in r1_columns(th):
            row[label.replace("R@1 IoU≥", "R@1 ")] = v["metrics"].get(key)
        row[f"shuffled {key05.replace('r1_iou', 'R@1 ')}"] = v["shuffled"].get(key05)
        routes = v.get("routes") or {}
        row["routes % (exploit/explore)"] = (
            "/".join(
                format_cell(None if routes.get(r) is None else 100 * routes[r], 0) for r in ROUTES
            )
            if routes
            else "–"
        )
        rows.append(row)
    return pd.DataFrame(rows)


def print_summary(out_dir: Path) -> None:
    """Print where the report is and its short results table (the end of `make run`)."""
    path = Path(out_dir) / SUMMARY
    if not path.exists():
        raise DynpathError(f"{path}: no report yet; run `dvc repro` (or `dynpath report`) first")
    summary = read_report_summary(path)
    files = summary.get("files") or {}
    print(f"Report: {files.get('html', Path(out_dir) / HTML)}")
    print(f"        {files.get('markdown', Path(out_dir) / MARKDOWN)} (Markdown), {path} (JSON)")
    print(f"Dataset {summary['dataset']} ({summary['name']}), {summary.get('split')} split")
    if summary.get("pretrained_features") is False:
        print("WARNING: features come from a randomly initialised backbone (not pretrained)")
    table = summary_table(summary)
    print(table.to_string(index=False, float_format=lambda x: f"{x:.2f}", na_rep="–"))
    if summary.get("missing"):
        print("not evaluated: " + ", ".join(summary["missing"]))
    for c in summary.get("checks") or []:
        print(f"{'PASS' if c['passed'] else 'FAIL'}  {c['name']}  ({c['detail']})")
