"""What the ablation report concludes from the results, before any of it is laid out.

The synthetic benchmark's pass/fail checks (recorded and shown, never raised: a weak result is a
finding, not a crash) and the seed, family and oracle analyses (:class:`Analysis`, computed by
``dynpath.report.queries``, ``oracles`` and ``seed_stats``) with their summary.json keys. Kept
apart from the step (``dynpath.steps.report``), which only reads inputs and writes outputs, and
from the sections, which only lay these results out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dynpath.config import Config
from dynpath.engine.metrics import metric_key
from dynpath.report.html import format_cell
from dynpath.report.oracles import OracleAnalysis, oracle_analysis
from dynpath.report.queries import (
    COLLAPSE_SHARE,
    FAMILY_GAP_POINTS,
    FAMILY_LABELS,
    META_FILE,
    ORACLE_THRESHOLD,
    SINGLE_MODULES,
    family_metrics,
    load_families,
    read_queries,
    route_family_counts,
    route_seed_summary,
    route_seed_table,
)
from dynpath.report.results import MAIN_VARIANT, ROUTES, VariantResult
from dynpath.report.seed_stats import (
    BOOTSTRAP_LEVEL,
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    PLATEAU_FRACTION,
    bootstrap_vs_reference,
    seed_stats,
    still_rising_flags,
)
from dynpath.schemas import SummaryCheck

#: Acceptance checks of the synthetic benchmark (docs/design.md: the embedded default must show
#: that the model reads the video and that the selector uses both modules).
SYNTHETIC_MIN_R1_05 = 70.0
SHUFFLED_MAX_FRACTION = 0.5

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
    """The answers to "can this ablation tell the variants apart?" (see dynpath.report.queries).

    ``families`` is False on a dataset without synthetic_meta.json: the family, route x family
    and oracle parts are then empty and ``notes`` says why.
    """

    seeds: list[int]
    meta_path: Path
    families: bool
    family: pd.DataFrame = field(default_factory=pd.DataFrame)
    routes: pd.DataFrame = field(default_factory=pd.DataFrame)
    route_seeds: pd.DataFrame = field(default_factory=pd.DataFrame)  # per seed: collapse, family
    oracle: OracleAnalysis | None = None
    unmatched: dict[str, int] = field(default_factory=dict)
    seed_table: pd.DataFrame = field(default_factory=pd.DataFrame)
    bootstrap: pd.DataFrame = field(default_factory=pd.DataFrame)
    rising: dict[str, dict[str, Any]] = field(default_factory=dict)
    max_epochs: int | None = None  # train.epochs, the cap an early stop is told from
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
        max_epochs=cfg.train.epochs,
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
    an.route_seeds = route_seed_table(test)
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
    out: dict[str, Any] = {
        "seeds": _seeds_method(an),
        "families": None,
        "routes_by_family": None,
        "oracle": _oracle_summary(an),
        "analysis_notes": [n for n in (an.no_reference, an.no_families) if n],
        "variants": _per_variant_summary(an, thresholds),
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
        if not an.route_seeds.empty:
            out["routes_by_seed"] = {
                "collapse_share": COLLAPSE_SHARE,
                "family_gap_points": FAMILY_GAP_POINTS,
                "summary": route_seed_summary(an.route_seeds),
                "seeds": _records(an.route_seeds, ["variant", "seed"]),
            }
    return _jsonable(out)


def _per_variant_summary(an: Analysis, thresholds: Sequence[float]) -> dict[str, dict[str, Any]]:
    """Per variant: its seeds' mean and sd, the bootstrap against the paper's model and whether
    it was still rising (summary.json's ``variants.<name>`` analysis keys)."""
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
            still_rising=flag["still_rising"],
            still_rising_seeds=flag["seeds"],
            stops=flag.get("stops"),
        )
    return per_variant


def _oracle_summary(an: Analysis) -> dict[str, Any] | None:
    """summary.json's ``oracle``: the single-module oracle, None when it was not computed."""
    if an.oracle is None:
        return None
    o = an.oracle
    return {
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


def _seeds_method(an: Analysis) -> dict[str, Any]:
    """summary.json's ``seeds``: the seeds configured and how the seed statistics were made (the
    bootstrap and the still-rising rule, with their constants)."""
    return {
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
            "rule": "best value in the last ceil(fraction x epochs) epochs > best before; "
            "a run stopped early (train.patience) is never still rising",
            "max_epochs": an.max_epochs,
        },
    }
