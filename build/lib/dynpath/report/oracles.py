"""(c) The single-module variants per query family, and what routing between them could reach:
the family-routing oracle (chosen on validation) and the per-query oracle (an upper bound).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from dynpath.engine.metrics import metric_key
from dynpath.report.queries import (
    ORACLE_THRESHOLD,
    SINGLE_MODULES,
    Runs,
    family_order,
    mean_of,
    r1_metrics,
    with_family,
)
from dynpath.report.results import MAIN_VARIANT


@dataclass
class OracleAnalysis:
    """(c) The two single modules per family, and what routing between them could reach.

    ``rows``: one row per line of the table (``row``: exploitation_only, exploration_only,
    family_routing_oracle, per_query_oracle, and the reference variant when evaluated) with
    seeds, queries, R@1/mIoU over the test queries that have a family, and one R@1 IoU>=0.5
    column per family. ``preference``: per family, each module's R@1 IoU>=0.5 on validation and
    on test and the module each prefers. ``val_choice``: family -> module variant the
    family-routing oracle uses (chosen on validation), None when it could not be chosen.
    """

    available: bool
    notes: list[str] = field(default_factory=list)
    seeds: list[int | None] = field(default_factory=list)
    rows: pd.DataFrame = field(default_factory=pd.DataFrame)
    preference: pd.DataFrame = field(default_factory=pd.DataFrame)
    val_choice: dict[str, str] | None = None
    test_preference: dict[str, str] = field(default_factory=dict)


#: The key of :func:`_module_scores` for all the queries that have a family.
ANY_FAMILY = "*"


def _module_scores(
    runs: Mapping[str, Runs], seeds: Sequence[int | None], families: Sequence[str]
) -> dict[str, dict[str, tuple[float, float]]]:
    """module -> family -> (R@1 IoU>=0.5, mIoU), means over ``seeds``, on queries with a family;
    the family :data:`ANY_FAMILY` is all of them."""
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for module, by_seed in runs.items():
        out[module] = {}
        for fam in [*families, ANY_FAMILY]:
            r, m = [], []
            for s in seeds:
                group = with_family(by_seed[s])
                if fam != ANY_FAMILY:
                    group = group[group["family"] == fam]
                ious = group["iou"].to_numpy()
                if ious.size:
                    r.append(100.0 * float(np.mean(ious >= ORACLE_THRESHOLD)))
                    m.append(100.0 * float(np.mean(ious)))
            if r:
                out[module][fam] = (float(np.mean(r)), float(np.mean(m)))
    return out


def _prefer(scores: Mapping[str, Mapping[str, tuple[float, float]]], fam: str) -> str | None:
    """The module with the higher R@1 IoU>=0.5 on ``fam``; ties by mIoU, then exploitation."""
    e, x = SINGLE_MODULES["exploitation"], SINGLE_MODULES["exploration"]
    se, sx = scores.get(e, {}).get(fam), scores.get(x, {}).get(fam)
    if se is None or sx is None:
        return None
    return e if se >= sx else x


def _row_metrics(
    name: str,
    per_seed_ious: Sequence[pd.DataFrame],
    thresholds: Sequence[float],
    families: Sequence[str],
) -> dict[str, Any]:
    """A table row: metrics of per-seed frames (columns iou, family), means over the seeds."""
    keys = [metric_key(1, t) for t in thresholds] + ["miou"]
    entries = []
    for df in per_seed_ious:
        entry = r1_metrics(df["iou"].to_numpy(), thresholds)
        for fam in families:
            ious = df.loc[df["family"] == fam, "iou"].to_numpy()
            entry[fam] = r1_metrics(ious, [ORACLE_THRESHOLD])[metric_key(1, ORACLE_THRESHOLD)]
        entries.append(entry)
    row: dict[str, Any] = {
        "row": name,
        "seeds": len(entries),
        "queries": max((len(df) for df in per_seed_ious), default=0),
    }
    row.update({k: mean_of([e[k] for e in entries]) for k in [*keys, *families]})
    return row


def _pair_seeds(
    test: Mapping[str, Runs], e: str, x: str, seeds: Sequence[int | None]
) -> list[pd.DataFrame]:
    """Per seed, the two modules' test queries with a family side by side (qid, family, iou_e,
    iou_x): the same query, the same seed."""
    paired: list[pd.DataFrame] = []
    for s in seeds:
        a = with_family(test[e][s])[["qid", "family", "iou"]]
        b = with_family(test[x][s])[["qid", "iou"]]
        paired.append(a.merge(b, on="qid", suffixes=("_e", "_x"), validate="one_to_one"))
    return paired


def _choose_on_validation(
    val: Mapping[str, Runs], e: str, x: str, families: Sequence[str], notes: list[str]
) -> tuple[dict[str, str] | None, dict[str, dict[str, tuple[float, float]]]]:
    """The family-routing oracle's module per family, chosen on validation (None without a seed
    both modules have validation predictions for), and the validation scores; why a choice could
    not be made is appended to ``notes``."""
    val_seeds = [s for s in (val.get(e) or {}) if s in (val.get(x) or {})]
    if not val_seeds:
        lacking = [m for m in (e, x) if not val.get(m)]
        notes.append(
            f"No val_predictions.jsonl for {' and '.join(lacking) or 'a common seed'}: the "
            "family-routing oracle, which must be chosen on validation, is skipped."
        )
        return None, {}
    val_scores = _module_scores({e: val[e], x: val[x]}, val_seeds, families)
    val_choice: dict[str, str] = {}
    for fam in families:
        choice = _prefer(val_scores, fam)
        if choice is None:
            choice = _prefer(val_scores, ANY_FAMILY) or e
            notes.append(
                f"No validation query of family {fam!r}: the family-routing oracle sends it "
                f"to {choice}, the better module over all validation queries."
            )
        val_choice[fam] = choice
    return val_choice, val_scores


def _preference_rows(
    families: Sequence[str],
    e: str,
    x: str,
    val_scores: Mapping[str, Mapping[str, tuple[float, float]]],
    test_scores: Mapping[str, Mapping[str, tuple[float, float]]],
    test_pref: Mapping[str, str],
    val_choice: Mapping[str, str] | None,
) -> list[dict[str, Any]]:
    """Per family: each module's R@1 IoU>=0.5 on validation and test, and which each prefers."""
    return [
        {
            "family": fam,
            f"val_{e}": val_scores.get(e, {}).get(fam, (None,))[0],
            f"val_{x}": val_scores.get(x, {}).get(fam, (None,))[0],
            "val_prefers": _prefer(val_scores, fam),
            f"test_{e}": test_scores[e].get(fam, (None,))[0],
            f"test_{x}": test_scores[x].get(fam, (None,))[0],
            "test_prefers": test_pref.get(fam),
            "oracle_routes_to": None if val_choice is None else val_choice[fam],
        }
        for fam in families
    ]


def _oracle_rows(
    paired: Sequence[pd.DataFrame],
    e: str,
    x: str,
    val_choice: Mapping[str, str] | None,
    thresholds: Sequence[float],
    families: Sequence[str],
) -> list[dict[str, Any]]:
    """The table's rows for the two modules, the family-routing oracle (when chosen) and the
    per-query oracle."""

    def frame(df: pd.DataFrame, column: str) -> pd.DataFrame:
        return pd.DataFrame({"family": df["family"], "iou": df[column]})

    rows = [
        _row_metrics(e, [frame(d, "iou_e") for d in paired], thresholds, families),
        _row_metrics(x, [frame(d, "iou_x") for d in paired], thresholds, families),
    ]
    if val_choice is not None:
        routed = []
        for d in paired:
            to_e = d["family"].map(lambda f: val_choice[f] == e).to_numpy(dtype=bool)
            routed.append(
                pd.DataFrame({"family": d["family"], "iou": np.where(to_e, d["iou_e"], d["iou_x"])})
            )
        rows.append(_row_metrics("family_routing_oracle", routed, thresholds, families))
    best = [
        pd.DataFrame({"family": d["family"], "iou": np.maximum(d["iou_e"], d["iou_x"])})
        for d in paired
    ]
    rows.append(_row_metrics("per_query_oracle", best, thresholds, families))
    return rows


def oracle_analysis(
    test: Mapping[str, Runs],
    val: Mapping[str, Runs],
    thresholds: Sequence[float],
    reference: str | None = MAIN_VARIANT,
) -> OracleAnalysis:
    """(c) Module x family on test, and two oracles built from the single-module variants.

    - family-routing oracle: every query of a family goes to the ONE module that is better for
      that family on VALIDATION (R@1 IoU>=0.5 per family, mean over the seeds with validation
      predictions; ties by mIoU, then the exploitation module), scored on test: what a selector
      that only had to recognise the family could reach, chosen without looking at test;
    - per-query oracle: every test query takes the better of the two modules' top-1 (max IoU),
      an upper bound no selector can exceed.

    Test scores pair the two modules seed by seed (the seeds both were evaluated with) and are
    means over those seeds, on the test queries that have a family.
    """
    e, x = SINGLE_MODULES["exploitation"], SINGLE_MODULES["exploration"]
    absent = [m for m in (e, x) if not test.get(m)]
    if absent:
        return OracleAnalysis(
            available=False,
            notes=[
                f"{' and '.join(absent)} not evaluated: the module x family comparison and "
                "the oracles need both single-module variants."
            ],
        )
    seeds = [s for s in test[e] if s in test[x]]
    if not seeds:
        return OracleAnalysis(
            available=False,
            notes=[f"{e} and {x} share no evaluated training seed: nothing to pair."],
        )
    paired = _pair_seeds(test, e, x, seeds)
    families = family_order(list(pd.concat(paired)["family"].unique()))
    if not families:
        return OracleAnalysis(
            available=False,
            notes=[
                f"No test query of {e} and {x} has a family in the meta file: nothing to compare."
            ],
        )
    notes: list[str] = []
    # which module each family prefers, on validation (the oracle's choice) and on test
    test_scores = _module_scores({e: test[e], x: test[x]}, seeds, families)
    val_choice, val_scores = _choose_on_validation(val, e, x, families, notes)
    test_pref = {fam: p for fam in families if (p := _prefer(test_scores, fam)) is not None}
    rows = _oracle_rows(paired, e, x, val_choice, thresholds, families)
    if reference is not None and test.get(reference):
        ref = [with_family(df)[["family", "iou"]] for df in test[reference].values()]
        rows.append(_row_metrics(reference, ref, thresholds, families))
    return OracleAnalysis(
        available=True,
        notes=notes,
        seeds=list(seeds),
        rows=pd.DataFrame(rows),
        preference=pd.DataFrame(
            _preference_rows(families, e, x, val_scores, test_scores, test_pref, val_choice)
        ),
        val_choice=val_choice,
        test_preference=test_pref,
    )
