"""`dynpath report`: the ablation report of the evaluated variants (the DAG's last stage).

Writes into ``out_dir`` (``reports/``):

- ``report.html``: one self-contained page (inline CSS, plots as base64 PNG, no script) that a
  researcher can attach to a paper's appendix: Tables III/IV layout with the paper's numbers side
  by side on Charades-STA/TACoS, R@5, the shuffled-video control, the per-route breakdown with
  example queries (like Fig. 7), the seeds (mean ± sd, paired bootstrap intervals against Ours),
  on the synthetic benchmark the query families (per family, route x family, the single modules
  and two oracles), training curves, cost per variant, MLflow runs, the data report;
- ``report.md``: the same content in Markdown (images from ``plots/``);
- ``summary.json``: the same for machines, including the pass/fail ``checks`` of the synthetic
  benchmark (recorded and shown, never raised: a weak result is a finding, not a crash);
- ``ablation.csv``: one row per variant, read by ``dvc plots``;
- ``plots/*.png``.

Missing inputs are reported, not papered over: a variant in params.yaml without metrics.json is
listed as missing, a metric a variant does not have is a dash, a seed not evaluated is named,
and an analysis that cannot be made (no meta file on a real dataset, a single module missing,
no validation predictions) is replaced by a sentence saying why.

This step only reads the inputs and writes the outputs; what the report concludes and says is in
the report package: ``dynpath.report.analysis`` (checks, seed and family analyses),
``dynpath.report.summary`` (summary.json, MLflow links, ``dynpath report --summary``),
``dynpath.report.document`` and ``dynpath.report.sections`` (the document).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from dynpath.config import Config
from dynpath.errors import DataError
from dynpath.io import staged_dir, write_json, write_text
from dynpath.report import plots
from dynpath.report.analysis import analyse, analysis_summary, synthetic_checks
from dynpath.report.document import build_document
from dynpath.report.html import render_html, render_markdown
from dynpath.report.results import VariantResult, load_results
from dynpath.report.summary import (
    HTML,
    MARKDOWN,
    SUMMARY,
    build_summary,
    mlflow_links,
    pretrained_features,
    published_numbers,
)
from dynpath.report.tables import ablation_csv
from dynpath.schemas import DATA_REPORT, ReportSummary, VariantSummary

log = logging.getLogger(__name__)

CSV = "ablation.csv"
PLOTS = "plots"


def _read_optional(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None
    return data if isinstance(data, dict) else None


def _figures(
    cfg: Config,
    results: Sequence[VariantResult],
    published: Mapping[str, Mapping[str, float]] | None,
    plot_dir: Path,
) -> dict[str, Path | None]:
    """The report's figures by file name (None: not drawn; :func:`run` then removes an earlier
    run's file so that no stale figure is left)."""
    th = cfg.eval.iou_thresholds
    figures: dict[str, Path | None] = {
        "ablation.png": plots.ablation_bars(results, th, published, plot_dir / "ablation.png"),
        "routes.png": plots.route_shares(results, plot_dir / "routes.png"),
        "training_curves.png": (
            plots.training_curves(
                results, cfg.eval.selection_metric, plot_dir / "training_curves.png"
            )
            if any(r.history for r in results)
            else None
        ),
    }
    return figures


def run(
    cfg: Config,
    eval_dir: Path,
    models_dir: Path,
    out_dir: Path,
    data_report: Path | None = None,
) -> dict[str, Any]:
    """Build the report of every variant of ``cfg.variants`` that has been evaluated.

    ``data_report`` defaults to ``<eval_dir>/../vocab/data_report.json`` (the DAG's layout).
    """
    t0 = time.perf_counter()
    eval_dir, models_dir, out_dir = Path(eval_dir), Path(models_dir), Path(out_dir)
    results, missing = load_results(list(cfg.variants), eval_dir, models_dir, cfg.seeds)
    if not results:
        raise DataError(
            f"{eval_dir}: no metrics.json for any of the variants {sorted(cfg.variants)}; "
            "run the evaluate stages first (dvc repro)"
        )
    th = cfg.eval.iou_thresholds
    published = published_numbers(cfg.data.dataset)
    from dynpath.tracking.mlflow_env import resolve_tracking_uri

    links = mlflow_links(results, resolve_tracking_uri(cfg))
    checks = synthetic_checks(results) if cfg.data.dataset == "synthetic" else []
    summary = build_summary(
        cfg, results, missing, links, checks, published, pretrained_features(results)
    )
    analysis = analyse(cfg, results)
    extra = analysis_summary(analysis, th)
    for name, entry in extra.pop("variants").items():
        summary["variants"][name].update(cast(VariantSummary, entry))
    summary.update(cast(ReportSummary, extra))

    # everything is written into a staging directory and moved into out_dir at the end: a
    # failure or a Ctrl-C part-way (a full disk, a figure) leaves the previous report whole
    # instead of a new page beside an old summary, or an empty out_dir
    with staged_dir(out_dir) as stage:
        figures = _figures(cfg, results, published, stage / PLOTS)
        dr_path = data_report or eval_dir.parent / "vocab" / DATA_REPORT
        doc = build_document(
            cfg,
            results,
            summary,
            links,
            published,
            figures,
            _read_optional(dr_path),
            _read_optional(dr_path.parent / "vocab_report.json"),
            analysis,
        )
        files = {
            "html": str(out_dir / HTML),
            "markdown": str(out_dir / MARKDOWN),
            "csv": str(out_dir / CSV),
            "plots": [str(out_dir / PLOTS / p.name) for p in figures.values() if p is not None],
        }
        summary["files"] = files
        write_text(stage / HTML, render_html(doc))
        # the images are linked relative to the page, the same in stage and in out_dir
        write_text(stage / MARKDOWN, render_markdown(doc, relative_to=stage))
        write_text(stage / CSV, ablation_csv(results, th).to_csv(index=False, float_format="%.4f"))
        write_json(stage / SUMMARY, summary)
    for name, path in figures.items():
        if path is None:  # not drawn this time: no stale figure of an earlier run is left
            (out_dir / PLOTS / name).unlink(missing_ok=True)
    log.info("report: %s (%d variants)", out_dir / HTML, len(results))
    return {
        "report": files["html"],
        "markdown": files["markdown"],
        "summary": str(out_dir / SUMMARY),
        "variants": len(results),
        "missing": list(missing),
        "checks_passed": summary["checks_passed"],
        "pretrained_features": summary["pretrained_features"],
        "seconds": round(time.perf_counter() - t0, 2),
    }
