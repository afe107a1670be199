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
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from dynpath.config import Config
from dynpath.errors import DataError, DynpathError
from dynpath.io import write_json, write_text
from dynpath.report import plots
from dynpath.report.html import Document, format_cell, render_html, render_markdown
from dynpath.report.sections import (
    ablation_section,
    cost_section,
    data_section,
    overview_section,
    recall5_and_shuffled_sections,
    reproduce_section,
    routes_section,
    training_curves_section,
)
from dynpath.report.tables import (
    BOOTSTRAP_LEVEL,
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    FAMILY_LABELS,
    MAIN_VARIANT,
    META_FILE,
    ORACLE_THRESHOLD,
    PLATEAU_FRACTION,
    ROUTES,
    SINGLE_MODULES,
    OracleAnalysis,
    VariantResult,
    ablation_csv,
    bootstrap_vs_reference,
    family_metrics,
    load_families,
    load_results,
    metric_key,
    oracle_analysis,
    r1_columns,
    read_queries,
    route_family_counts,
    seed_stats,
    still_rising_flags,
)
from dynpath.schemas import (
    REPORT_SUMMARY,
    ReportSummary,
    SummaryCheck,
    VariantSummary,
    read_report_summary,
)

log = logging.getLogger(__name__)

HTML = "report.html"
MARKDOWN = "report.md"
SUMMARY = REPORT_SUMMARY
CSV = "ablation.csv"
PLOTS = "plots"

#: Acceptance checks of the synthetic benchmark (docs/design.md: the embedded default must show
#: that the model reads the video and that the selector uses both modules).
SYNTHETIC_MIN_R1_05 = 70.0
SHUFFLED_MAX_FRACTION = 0.5


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


# --------------------------------------------------------------------------- checks


def _check(name: str, passed: bool, value: Any, threshold: Any, detail: str) -> SummaryCheck:
    return {
        "name": name,
        "passed": bool(passed),
        "value": value,
        "threshold": threshold,
        "detail": detail,
    }


def synthetic_checks(results: Sequence[VariantResult]) -> list[SummaryCheck]:
    """The synthetic benchmark's acceptance checks on the paper's model (``dynamic``)."""
    by_name = {r.name: r for r in results}
    main = by_name.get(MAIN_VARIANT)
    key = metric_key(1, 0.5)
    if main is None:
        why = f"variant {MAIN_VARIANT!r} was not evaluated"
        return [
            _check(f"{MAIN_VARIANT} R@1 IoU≥0.5 ≥ {SYNTHETIC_MIN_R1_05:g}", False, None, 70.0, why),
            _check("shuffled-video control ≤ half of it", False, None, None, why),
            _check("routes not all one module", False, None, None, why),
        ]
    real, shuf = main.metric(key), main.shuffled(key)
    shares = {route: main.route_share(route) for route in ROUTES}
    checks = [
        _check(
            f"{MAIN_VARIANT} R@1 IoU≥0.5 ≥ {SYNTHETIC_MIN_R1_05:g}",
            real is not None and real >= SYNTHETIC_MIN_R1_05,
            real,
            SYNTHETIC_MIN_R1_05,
            f"R@1 IoU≥0.5 = {format_cell(real)}",
        ),
        _check(
            "shuffled-video control ≤ half of it",
            real is not None and shuf is not None and shuf <= SHUFFLED_MAX_FRACTION * real,
            shuf,
            None if real is None else SHUFFLED_MAX_FRACTION * real,
            f"shuffled R@1 IoU≥0.5 = {format_cell(shuf)} vs real {format_cell(real)}",
        ),
    ]
    known = [s for s in shares.values() if s is not None]
    checks.append(
        _check(
            "routes not all one module",
            len(known) == len(ROUTES) and all(0.0 < s < 1.0 for s in known),
            shares,
            "each route 0 < share < 1",
            ", ".join(
                f"{k} {format_cell(None if v is None else 100 * v, 1)}%" for k, v in shares.items()
            ),
        )
    )
    return checks


# --------------------------------------------------------------------------- analyses


@dataclass
class Analysis:
    """The answers to "can this ablation tell the variants apart?" (see dynpath.report.tables).

    ``families`` is False on a dataset without synthetic_meta.json: the family, route x family
    and oracle parts are then empty and ``notes`` says why.
    """

    seeds: list[int]
    meta_path: Path
    families: bool
    family: pd.DataFrame = field(default_factory=pd.DataFrame)
    routes: pd.DataFrame = field(default_factory=pd.DataFrame)
    oracle: OracleAnalysis | None = None
    unmatched: dict[str, int] = field(default_factory=dict)
    seed_table: pd.DataFrame = field(default_factory=pd.DataFrame)
    bootstrap: pd.DataFrame = field(default_factory=pd.DataFrame)
    rising: dict[str, dict[str, Any]] = field(default_factory=dict)
    no_reference: str | None = None  # why there are no intervals against Ours
    no_families: str | None = None  # why there are no family analyses


def analyse(cfg: Config, results: Sequence[VariantResult]) -> Analysis:
    """Read every seed's per-query predictions once and run the analyses over them."""
    th = cfg.eval.iou_thresholds
    meta_path = Path(cfg.data.root) / META_FILE
    families = load_families(meta_path)
    test = {
        r.name: {
            run.seed: read_queries(run.predictions, families) for run in r.runs if run.predictions
        }
        for r in results
    }
    an = Analysis(
        seeds=list(cfg.seeds),
        meta_path=meta_path,
        families=families is not None,
        seed_table=seed_stats(results, th),
        bootstrap=bootstrap_vs_reference(test, MAIN_VARIANT),
        rising=still_rising_flags(results, cfg.eval.selection_metric),
    )
    if not test.get(MAIN_VARIANT):
        an.no_reference = (
            f"No predictions of {MAIN_VARIANT!r}: the paired intervals against it are skipped."
        )
    if families is None:
        an.no_families = (
            f"No {META_FILE} in data.root ({meta_path}): this dataset has no query families, so "
            "the per-family results, the route x family counts and the single-module oracles "
            "are skipped."
        )
        return an
    val = {
        r.name: {
            run.seed: read_queries(run.val_predictions, families)
            for run in r.runs
            if run.val_predictions
        }
        for r in results
    }
    an.family = family_metrics(test, th)
    an.routes = route_family_counts(test)
    an.oracle = oracle_analysis(test, val, th, MAIN_VARIANT)
    an.unmatched = {
        name: int(next(iter(runs.values()))["family"].isna().sum())
        for name, runs in test.items()
        if runs
    }
    return an


def _jsonable(value: Any) -> Any:
    """NumPy scalars as Python numbers, NaN as null (summary.json must be valid JSON)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _records(df: pd.DataFrame, index: Sequence[str]) -> dict[str, Any]:
    """Nested {index values...: {other columns}} from a long table."""
    out: dict[str, Any] = {}
    for rec in df.to_dict(orient="records"):
        node = out
        for col in index[:-1]:
            node = node.setdefault(str(rec[col]), {})
        node[str(rec[index[-1]])] = {k: v for k, v in rec.items() if k not in index}
    return out


def _oracle_rows(o: OracleAnalysis) -> dict[str, Any]:
    """The oracle table's rows by name; the per-family R@1 IoU>=0.5 columns nested under
    ``r1_iou0.5_by_family`` so that a family name never reads as a metric."""
    families = set(o.preference["family"])
    key = f"{metric_key(1, ORACLE_THRESHOLD)}_by_family"
    out: dict[str, Any] = {}
    for name, rec in _records(o.rows, ["row"]).items():
        out[name] = {k: v for k, v in rec.items() if k not in families}
        out[name][key] = {k: v for k, v in rec.items() if k in families}
    return out


def analysis_summary(an: Analysis, thresholds: Sequence[float]) -> dict[str, Any]:
    """summary.json's analysis keys: ``seeds``, ``families``, ``routes_by_family``, ``oracle``,
    ``analysis_notes`` (top level) and, per variant, ``seeds``, ``vs_dynamic``,
    ``still_rising`` and ``still_rising_seeds`` (under ``variants``)."""
    keys = [metric_key(1, t) for t in thresholds] + ["miou"]
    per_variant: dict[str, dict[str, Any]] = {}
    for rec in an.seed_table.to_dict(orient="records"):
        per_variant[rec["variant"]] = {
            "seeds": {
                "evaluated": rec["seeds"],
                "missing": rec["missing_seeds"],
                "n": rec["n"],
                "mean": {k: rec[f"{k}_mean"] for k in keys},
                "sd": {k: rec[f"{k}_sd"] for k in keys},
            },
            "vs_dynamic": None,
        }
    for rec in an.bootstrap.to_dict(orient="records"):
        per_variant.setdefault(rec["variant"], {})["vs_dynamic"] = {
            "metric": metric_key(1, ORACLE_THRESHOLD),
            **{k: rec[k] for k in ("diff", "low", "high", "excludes_zero", "queries")},
        }
    for name, flag in an.rising.items():
        per_variant.setdefault(name, {}).update(
            still_rising=flag["still_rising"], still_rising_seeds=flag["seeds"]
        )
    oracle: dict[str, Any] | None = None
    if an.oracle is not None:
        o = an.oracle
        oracle = {
            "available": o.available,
            "modules": dict(SINGLE_MODULES),
            "metric": metric_key(1, ORACLE_THRESHOLD),
            "seeds": o.seeds,
            "val_choice": o.val_choice,
            "test_preference": o.test_preference,
            "preference": _records(o.preference, ["family"]) if o.available else {},
            "rows": _oracle_rows(o) if o.available else {},
            "notes": o.notes,
        }
    out = {
        "seeds": {
            "configured": an.seeds,
            "primary": an.seeds[0],
            "bootstrap": {
                "metric": metric_key(1, ORACLE_THRESHOLD),
                "reference": MAIN_VARIANT,
                "resamples": BOOTSTRAP_RESAMPLES,
                "rng_seed": BOOTSTRAP_SEED,
                "level": BOOTSTRAP_LEVEL,
                "method": "paired percentile bootstrap over test queries; per query the R@1 hit "
                "averaged over each variant's seeds; difference = variant - reference, points",
            },
            "still_rising": {
                "key": "val_<eval.selection_metric> in history.json",
                "window_fraction": PLATEAU_FRACTION,
                "rule": "best value in the last ceil(fraction x epochs) epochs > best before",
            },
        },
        "families": None,
        "routes_by_family": None,
        "oracle": oracle,
        "analysis_notes": [n for n in (an.no_reference, an.no_families) if n],
        "variants": per_variant,
    }
    if an.families:
        out["families"] = {
            "meta_file": str(an.meta_path),
            "labels": {f: FAMILY_LABELS.get(f, f) for f in an.family["family"].unique()},
            "unmatched_test_queries": an.unmatched,
            "variants": _records(an.family, ["variant", "family"]),
        }
        routes = an.routes.assign(scope=an.routes["scope"].str.replace(" ", "_"))
        out["routes_by_family"] = _records(routes, ["variant", "scope", "family"])
    return _jsonable(out)


def _mean_sd(mean: Any, sd: Any, digits: int = 2) -> str:
    """'78.12 ± 1.20', 'n/a' as the deviation of a single seed."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    spread = (
        "n/a" if sd is None or (isinstance(sd, float) and math.isnan(sd)) else f"{sd:.{digits}f}"
    )
    return f"{mean:.{digits}f} ± {spread}"


def _opt(value: Any) -> Any:
    """None for a missing table cell (pandas turns None into NaN in some columns)."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _family_label(family: str) -> str:
    return FAMILY_LABELS.get(family, family)


def add_seed_section(
    doc: Document, an: Analysis, results: Sequence[VariantResult], th: Any
) -> None:
    """(d) Mean ± sd over seeds and the paired bootstrap interval against Ours."""
    s = doc.section("Seeds: spread and paired intervals")
    display = {r.name: r.display for r in results}
    s.text(
        f"Training seeds {an.seeds} (seeds[0] = {an.seeds[0]} is the primary run: the tables "
        "above, MLflow). Each metric is the mean ± sample standard deviation (n − 1) over the "
        "seeds the variant was evaluated with (n); n/a with a single seed. Δ: test R@1 "
        f"IoU≥{ORACLE_THRESHOLD:g} of the row minus {display.get(MAIN_VARIANT, MAIN_VARIANT)}, "
        "in points, with a paired bootstrap 95% interval: per test query the hit averaged over "
        f"each variant's seeds, queries resampled with replacement {BOOTSTRAP_RESAMPLES} times "
        f"(numpy default_rng({BOOTSTRAP_SEED})), 2.5th–97.5th percentiles. An interval that "
        "excludes 0 (marked *) is a difference the test set resolves; one that straddles 0 is not."
    )
    lacking = [
        f"{display[r.name]}: {', '.join(map(str, r.missing_seeds))}"
        for r in results
        if r.missing_seeds
    ]
    if lacking:
        s.alert("Seeds not evaluated (left out of the means): " + "; ".join(lacking) + ".")
    boot = {rec["variant"]: rec for rec in an.bootstrap.to_dict(orient="records")}
    rows = []
    for rec in an.seed_table.to_dict(orient="records"):
        row: dict[str, Any] = {"Variant": display[rec["variant"]], "n": rec["n"]}
        for key, label in r1_columns(th):
            row[label] = _mean_sd(rec[f"{key}_mean"], rec[f"{key}_sd"])
        b = boot.get(rec["variant"])
        label05 = f"Δ R@1 IoU≥{ORACLE_THRESHOLD:g}"
        if rec["variant"] == MAIN_VARIANT:
            row[label05], row["95% interval"] = None, "reference"
        elif b is None or b["queries"] == 0:
            row[label05], row["95% interval"] = None, "–"
        else:
            mark = " *" if b["excludes_zero"] else ""
            row[label05] = b["diff"]
            row["95% interval"] = f"[{b['low']:+.2f}, {b['high']:+.2f}]{mark}"
        rows.append(row)
    s.table(pd.DataFrame(rows), caption="Test metrics over training seeds, percent")
    if an.no_reference:
        s.text(an.no_reference)


def add_family_sections(
    doc: Document, an: Analysis, results: Sequence[VariantResult], th: Any
) -> None:
    """(a) per family, (b) route x family, (c) single modules and oracles; or why not."""
    display = {r.name: r.display for r in results}
    if not an.families:
        doc.section("Query families").text(an.no_families or "No query families.")
        return
    s = doc.section("Per query family")
    s.text(
        "The synthetic benchmark's two query families (synthetic_meta.json): ordered "
        "sub-actions, designed for the exploitation module, and held postures, designed for the "
        "exploration module. Test split, mean over each variant's seeds."
    )
    unmatched = {k: v for k, v in an.unmatched.items() if v}
    if unmatched:
        s.alert(
            "Test queries not found in "
            + f"{an.meta_path} (left out of the family tables): "
            + ", ".join(f"{display[k]} {v}" for k, v in unmatched.items())
            + "."
        )
    fam = an.family.copy()
    table = pd.DataFrame(
        {
            "Variant": fam["variant"].map(display),
            "Family": fam["family"].map(_family_label),
            "Queries": fam["queries"],
            "Seeds": fam["seeds"],
            **{label: fam[key] for key, label in r1_columns(th)},
        }
    )
    s.table(table, caption="R@1 and mIoU per query family, percent")

    s = doc.section("Routes by query family")
    if an.routes.empty:
        s.text("No evaluated variant has a selector, so there is nothing to route.")
    else:
        s.text(
            "How the selector routes each family: counts and shares of the family's test "
            "queries sent to each module, for the primary seed and summed over all seeds. A "
            "selector that tells the families apart sends each mostly to the module it was "
            "designed for (or to whichever the oracle below finds better)."
        )
        rt = an.routes
        table = pd.DataFrame(
            {
                "Variant": rt["variant"].map(display),
                "Seeds": rt["scope"] + " (" + rt["seeds"].astype(str) + ")",
                "Family": rt["family"].map(_family_label),
                "Queries": rt["queries"],
                **{f"→ {r}": rt[r] for r in ROUTES},
                **{f"→ {r} %": 100.0 * rt[f"share_{r}"].astype(float) for r in ROUTES},
            }
        )
        s.table(table, caption="Test queries of each family per route")

    s = doc.section("Single modules by family, and oracles")
    o = an.oracle
    if o is None or not o.available:
        for note in o.notes if o is not None else []:
            s.text(note)
        return
    e, x = SINGLE_MODULES["exploitation"], SINGLE_MODULES["exploration"]
    s.text(
        f"From {display.get(e, e)} and {display.get(x, x)} (paired seed by seed, seeds "
        f"{o.seeds}): the family-routing oracle sends every query of a family to the module "
        f"better for that family on VALIDATION (R@1 IoU≥{ORACLE_THRESHOLD:g}; ties by mIoU, then "
        "the exploitation module) and is scored on test; the per-query oracle takes, per test "
        "query, the better top-1 of the two modules (an upper bound for any selector)."
    )
    for note in o.notes:
        s.alert(note)
    pref = o.preference
    s.table(
        pd.DataFrame(
            {
                "Family": pref["family"].map(_family_label),
                f"val {display.get(e, e)}": pref[f"val_{e}"],
                f"val {display.get(x, x)}": pref[f"val_{x}"],
                "prefers on val": pref["val_prefers"].map(lambda m: display.get(m, m)),
                f"test {display.get(e, e)}": pref[f"test_{e}"],
                f"test {display.get(x, x)}": pref[f"test_{x}"],
                "prefers on test": pref["test_prefers"].map(lambda m: display.get(m, m)),
                "oracle sends to": pref["oracle_routes_to"].map(lambda m: display.get(m, m)),
            }
        ),
        caption=f"R@1 IoU≥{ORACLE_THRESHOLD:g} per family and module, percent (mean over seeds)",
    )
    for rec in pref.to_dict(orient="records"):
        fam = _family_label(rec["family"])
        val_pref, test_pref = _opt(rec["val_prefers"]), _opt(rec["test_prefers"])
        routed = _opt(rec["oracle_routes_to"])
        said = (
            f"{fam}: prefers {display.get(val_pref, val_pref)} on validation"
            if val_pref
            else f"{fam}: no validation preference"
            + (f" (the oracle sends it to {display.get(routed, routed)})" if routed else "")
        )
        said += f", {display.get(test_pref, test_pref) if test_pref else 'none'} on test"
        if val_pref and test_pref and val_pref != test_pref:
            said += " (they disagree: the family-routing oracle follows validation)"
        s.text(said + ".")
    labels = {
        "family_routing_oracle": "family-routing oracle (chosen on val)",
        "per_query_oracle": "per-query oracle (upper bound)",
    }
    rows = o.rows
    families = [c for c in rows.columns if c in set(pref["family"])]
    s.table(
        pd.DataFrame(
            {
                "Row": rows["row"].map(lambda r: labels.get(r, display.get(r, r))),
                "Seeds": rows["seeds"],
                "Queries": rows["queries"],
                **{label: rows[key] for key, label in r1_columns(th)},
                **{f"R@1 IoU≥{ORACLE_THRESHOLD:g} {_family_label(f)}": rows[f] for f in families},
            }
        ),
        caption="Test, queries with a family, percent (mean over seeds)",
    )


# --------------------------------------------------------------------------- summary


def _published(dataset: str) -> dict[str, dict[str, float]] | None:
    from dynpath.model.published import ABLATION_TABLES

    table = ABLATION_TABLES.get(dataset)
    return None if table is None else {k: dict(v) for k, v in table.items()}


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
    """summary.json without the seed analysis and ``files`` (:func:`run` adds them)."""
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
    return {
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


def _pretrained(results: Sequence[VariantResult]) -> bool | None:
    """False if ANY variant trained on features from a randomly initialised backbone."""
    flags = [r.train.get("pretrained_features") for r in results]
    known = [bool(f) for f in flags if f is not None]
    if not known:
        return None
    return all(known)


# --------------------------------------------------------------------------- document


def _read_optional(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None
    return data if isinstance(data, dict) else None


def build_document(
    cfg: Config,
    results: Sequence[VariantResult],
    summary: Mapping[str, Any],
    links: Mapping[str, str | None],
    published: Mapping[str, Mapping[str, float]] | None,
    figures: Mapping[str, Path | None],
    data_report: Mapping[str, Any] | None,
    vocab_report: Mapping[str, Any] | None,
    analysis: Analysis | None = None,
) -> Document:
    """The report's document: its title, then the sections (``dynpath.report.sections``, and the
    seed and family sections here, which need the step's :class:`Analysis`) in reading order."""
    th = cfg.eval.iou_thresholds
    n = results[0].metrics.get("n") if results else None
    doc = Document(
        title=f"dynpath ablation report: {cfg.data.name}",
        subtitle=(
            f"dataset {cfg.data.dataset}, {summary['split']} split"
            + (f", {n} queries" if n is not None else "")
            + f"; {len(results)} variants. Dynamic Pathway (IEEE TMM 2024), Tables III/IV protocol."
        ),
    )

    overview_section(doc, cfg, summary)
    ablation_section(
        doc,
        cfg,
        results,
        published,
        figures,
        None if analysis is None else analysis.rising,
        None if analysis is None else analysis.seeds[0],
    )
    if analysis is not None:
        add_seed_section(doc, analysis, results, th)
    recall5_and_shuffled_sections(doc, results, th)
    routes_section(doc, cfg, results, figures)
    if analysis is not None:
        add_family_sections(doc, analysis, results, th)
    training_curves_section(doc, cfg, figures)
    cost_section(doc, cfg, results, links)
    data_section(doc, data_report, vocab_report)
    reproduce_section(doc)
    return doc


# --------------------------------------------------------------------------- entry points


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
    published = _published(cfg.data.dataset)
    from dynpath.tracking.mlflow_env import resolve_tracking_uri

    links = mlflow_links(results, resolve_tracking_uri(cfg))
    checks = synthetic_checks(results) if cfg.data.dataset == "synthetic" else []
    summary = build_summary(cfg, results, missing, links, checks, published, _pretrained(results))
    analysis = analyse(cfg, results)
    extra = analysis_summary(analysis, th)
    for name, entry in extra.pop("variants").items():
        summary["variants"][name].update(cast(VariantSummary, entry))
    summary.update(cast(ReportSummary, extra))

    plot_dir = out_dir / PLOTS
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
    for name, path in figures.items():  # no stale figure from an earlier run
        if path is None:
            (plot_dir / name).unlink(missing_ok=True)

    dr_path = data_report or eval_dir.parent / "vocab" / "data_report.json"
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
        "plots": [str(p) for p in figures.values() if p is not None],
    }
    summary["files"] = files
    write_text(out_dir / HTML, render_html(doc))
    write_text(out_dir / MARKDOWN, render_markdown(doc, relative_to=out_dir))
    write_text(out_dir / CSV, ablation_csv(results, th).to_csv(index=False, float_format="%.4f"))
    write_json(out_dir / SUMMARY, summary)
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
