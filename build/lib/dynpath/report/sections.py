"""The sections of the ablation report, one function each: what a section says and shows, given
the results; ``dynpath.report.document.build_document`` decides which sections and in what order.

They were one ~160-line function in the step; split so that each section can be read (and
changed) on its own, without the step's orchestration around it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from dynpath.config import Config
from dynpath.report.analysis import Analysis
from dynpath.report.html import Document
from dynpath.report.queries import (
    COLLAPSE_SHARE,
    FAMILY_GAP_POINTS,
    FAMILY_LABELS,
    ORACLE_THRESHOLD,
    SINGLE_MODULES,
)
from dynpath.report.results import MAIN_VARIANT, ROUTES, VariantResult
from dynpath.report.seed_stats import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, PLATEAU_FRACTION
from dynpath.report.tables import (
    ablation_table,
    cost_table,
    data_tables,
    r1_columns,
    recall5_table,
    route_examples,
    routes_table,
    shuffled_table,
)


def overview_section(doc: Document, cfg: Config, summary: Mapping[str, Any]) -> None:
    """Whether the features were pretrained, what is missing, the synthetic checks."""
    s = doc.section("Overview")
    if summary["pretrained_features"] is False:
        s.alert(
            "Features were NOT extracted with pretrained backbone weights (extract.weights is "
            "unset: the 3D-CNN was randomly initialised). Numbers are not comparable to the "
            "paper's, which use pretrained I3D (Charades-STA) and C3D (TACoS) features."
        )
    elif summary["pretrained_features"] is None:
        s.text("Whether the features came from a pretrained backbone was not recorded.")
    else:
        s.ok("Features were extracted with pretrained backbone weights.")
    if summary["missing"]:
        s.alert("Not evaluated (no metrics.json): " + ", ".join(summary["missing"]) + ".")
    if summary.get("non_finite"):
        s.alert(
            "Metrics that are NaN or infinite in metrics.json (a diverged or empty evaluation; "
            "shown as a dash below and written as null in summary.json): "
            + "; ".join(summary["non_finite"])
            + "."
        )
    for c in summary["checks"]:
        text = f"{'PASS' if c['passed'] else 'FAIL'}: {c['name']} ({c['detail']})"
        s.ok(text) if c["passed"] else s.alert(text)
    if cfg.data.dataset == "synthetic":
        s.text(
            "Checks: the embedded synthetic benchmark's acceptance criteria on the paper's model "
            "(recorded, never raised). They are calibrated for the 'synthetic' profile; smaller "
            "profiles (e.g. 'tiny') are not expected to pass them."
        )


def ablation_section(
    doc: Document,
    cfg: Config,
    results: Sequence[VariantResult],
    published: Mapping[str, Mapping[str, float]] | None,
    figures: Mapping[str, Path | None],
    rising: Mapping[str, Mapping[str, Any]] | None,
    primary_seed: int | None,
) -> None:
    """Tables III/IV's layout with the paper's numbers beside, and which variants still rose.

    ``rising`` (variant -> still_rising flags) and ``primary_seed`` come from the seed analysis;
    None when there is none.
    """
    th = cfg.eval.iou_thresholds
    s = doc.section("Ablation (layout of Tables III/IV)")
    flags = None if rising is None else {k: v["still_rising"] for k, v in rising.items()}
    s.table(
        ablation_table(results, th, published, flags),
        caption="R@1 at IoU thresholds and mIoU, percent"
        + (f", primary seed {primary_seed}" if primary_seed is not None else "")
        + ("; '(paper)' columns: the paper's published numbers" if published else ""),
    )
    if rising is not None:
        s.text(
            f"Still rising: the best validation {cfg.eval.selection_metric} within the last "
            f"{PLATEAU_FRACTION:.0%} of the epochs (rounded up) beats the best before them, for "
            "at least one seed: that variant had not converged, so its gap to the others is not "
            "settled (a dash: too few epochs to tell)."
        )
        flagged = [r.display for r in results if rising.get(r.name, {}).get("still_rising")]
        if flagged:
            s.alert("Still rising at the end of training: " + ", ".join(flagged) + ".")
    if published is None:
        s.text(
            f"The paper publishes ablations for Charades-STA (Table III) and TACoS (Table IV) "
            f"only; there are no published numbers for dataset {cfg.data.dataset!r}."
        )
    if figures.get("ablation.png"):
        s.image(
            figures["ablation.png"],  # type: ignore[arg-type]
            "Per-variant R@1 and mIoU; hatched: shuffled-video control"
            + ("; tick: the paper" if published else ""),
        )


def recall5_and_shuffled_sections(
    doc: Document, results: Sequence[VariantResult], th: Sequence[float]
) -> None:
    """R@5, then the shuffled-video control (does the model read the video at all?)."""
    doc.section("R@5").table(recall5_table(results, th), caption="R@5 at IoU thresholds, percent")

    s = doc.section("Shuffled-video control")
    s.text(
        "Every test query is scored against ANOTHER test video's features (a seeded derangement), "
        "keeping its own ground truth. A model that reads the video collapses towards the prior "
        "of moment positions; 'kept' is the shuffled score as a percentage of the real one."
    )
    s.table(shuffled_table(results, th))


def routes_section(
    doc: Document,
    cfg: Config,
    results: Sequence[VariantResult],
    figures: Mapping[str, Path | None],
) -> None:
    """The per-pathway breakdown and example queries of each route (like the paper's Fig. 7)."""
    th = cfg.eval.iou_thresholds
    s = doc.section("Routes (per-pathway breakdown)")
    rt = routes_table(results, th)
    if rt.empty:
        s.text("No evaluated variant has a selector, so there is no route breakdown.")
    else:
        s.text(
            "Share of test queries the selector sends to each module, and the metrics of each "
            "group. Only variants with a selector route queries."
        )
        s.table(rt)
        if figures.get("routes.png"):
            s.image(figures["routes.png"], "Route shares per variant")  # type: ignore[arg-type]
        example_of = next(
            (r for r in results if r.name == MAIN_VARIANT and r.has_routes),
            next((r for r in results if r.has_routes), None),
        )
        if example_of is not None:
            ex = route_examples(example_of, cfg.eval.examples_per_route)
            unused = [r for r in ROUTES if (example_of.route_share(r) or 0.0) == 0.0]
            if unused:
                s.text(f"{example_of.display}: no test query was routed to {', '.join(unused)}.")
            if not ex.empty:
                s.table(
                    ex,
                    caption=f"Example test queries of each route, {example_of.display} "
                    "(best-localized first, then the worst; like the paper's Fig. 7)",
                )


def training_curves_section(doc: Document, cfg: Config, figures: Mapping[str, Path | None]) -> None:
    """Training loss and the validation selection metric per epoch."""
    s = doc.section("Training curves")
    if figures.get("training_curves.png"):
        s.image(
            figures["training_curves.png"],  # type: ignore[arg-type]
            f"Training loss and validation {cfg.eval.selection_metric} per epoch",
        )
    else:
        s.text("No history.json found for the evaluated variants.")


def cost_section(
    doc: Document,
    cfg: Config,
    results: Sequence[VariantResult],
    links: Mapping[str, str | None],
) -> None:
    """Parameters, wall time, best epoch, latency and each variant's MLflow run."""
    s = doc.section("Cost and MLflow runs")
    cost = cost_table(results)
    cost["MLflow run"] = [r.run_id for r in results]
    s.table(
        cost,
        caption="Trainable parameters, training wall time, best epoch (by validation "
        f"{cfg.eval.selection_metric}), batch-1 inference latency, MLflow run",
        links={"MLflow run": [links.get(r.name) for r in results]},
    )


def data_section(
    doc: Document,
    data_report: Mapping[str, Any] | None,
    vocab_report: Mapping[str, Any] | None,
) -> None:
    """Annotations per split, skipped lines, the carved validation set and the vocabulary."""
    s = doc.section("Data")
    if data_report is None:
        s.text("No data report found (outputs/vocab/data_report.json).")
    else:
        counts, skipped = data_tables(data_report)
        s.table(counts, caption="Annotations per split (after val carving, if any)", digits=0)
        if skipped.empty:
            s.text("No annotation line was skipped.")
        else:
            s.table(skipped, caption="Skipped annotation lines by reason", digits=0)
        carved = data_report.get("carved") or {}
        if carved:
            s.text(
                f"Validation carved from train by video: {carved.get('val_moments')} moments of "
                f"{carved.get('val_videos')} videos (fraction {carved.get('fraction')}, "
                f"seed {carved.get('seed')}, {carved.get('method', 'group split')})."
            )
        for note in data_report.get("notes") or []:
            s.text(str(note))
    if vocab_report:
        cov = vocab_report.get("coverage") or {}
        s.text(
            f"Vocabulary: {vocab_report.get('size')} words; word vectors "
            + (
                f"from {vocab_report.get('embeddings')}"
                if vocab_report.get("pretrained")
                else "randomly initialised (no embeddings file)"
            )
            + (
                "; token coverage "
                + ", ".join(f"{k} {100 * float(v):.1f}%" for k, v in cov.items())
                if cov
                else ""
            )
            + "."
        )


def reproduce_section(doc: Document) -> None:
    """The commands that rebuild the report."""
    s = doc.section("Reproduce")
    s.text(
        "dvc repro  (then: dvc metrics show; dvc plots show; dynpath report --summary). "
        "Settings: params.yaml; see docs/dvc.md for real datasets and experiments."
    )


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
    s = doc.section("Ablation over seeds: mean ± sd and paired intervals")
    display = {r.name: r.display for r in results}
    s.text(
        f"Training seeds {an.seeds} (seeds[0] = {an.seeds[0]} is the primary run: the "
        "Tables III/IV layout below, MLflow). Each metric is the mean ± sample standard "
        "deviation (n − 1) over the "
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


def _route_seed_table(s: Any, an: Analysis, display: Mapping[str, str]) -> None:
    """Routes per seed: does a seed's selector collapse onto one module, follow the family?"""
    rs = an.route_seeds
    if rs.empty:
        return
    s.text(
        f"Per seed: the share of the test queries routed to each module, per family too. A seed "
        f"whose selector sends ≥ {COLLAPSE_SHARE:.0%} of the queries to one module has collapsed "
        "onto it. Family gap: the share of the ordered-sub-action queries sent to the "
        "exploitation module minus that of the held-posture queries, in points (+100: exactly "
        "as the paper designs the modules, −100: exactly reversed, 0: the route ignores the "
        f"family); it follows the family when |gap| ≥ {FAMILY_GAP_POINTS:g}."
    )
    cols: dict[str, Any] = {"Variant": rs["variant"].map(display), "Seed": rs["seed"]}
    for col in rs.columns:
        if col.startswith("share_") or "_share_" in col:
            fam, _, route = col.partition("_share_")
            label = f"→ {col.removeprefix('share_')} %" if not route else f"{fam} → {route} %"
            cols[label] = 100.0 * rs[col].astype(float)
    cols["Collapsed"] = rs["collapsed"]
    cols["Family gap"] = rs["family_gap"]
    cols["Follows family"] = rs["follows_family"]
    s.table(pd.DataFrame(cols), caption="Routes per training seed, percent of test queries")


def _per_family_section(doc: Document, an: Analysis, display: Mapping[str, str], th: Any) -> None:
    """(a) R@1 and mIoU per variant and query family."""
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


def _routes_by_family_section(doc: Document, an: Analysis, display: Mapping[str, str]) -> None:
    """(b) How the selector routes each family, summed and per seed."""
    s = doc.section("Routes by query family")
    if an.routes.empty:
        s.text("No evaluated variant has a selector, so there is nothing to route.")
        return
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
    _route_seed_table(s, an, display)


def _preference_sentence(rec: Mapping[str, Any], display: Mapping[str, str]) -> str:
    """Which module a family prefers on validation and on test, and where the oracle sends it."""
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
    return said + "."


def _preference_table(pref: pd.DataFrame, display: Mapping[str, str]) -> pd.DataFrame:
    """Each module's R@1 per family on validation and test, and which one each prefers."""
    e, x = SINGLE_MODULES["exploitation"], SINGLE_MODULES["exploration"]
    return pd.DataFrame(
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
    )


def _oracle_table(
    rows: pd.DataFrame, pref: pd.DataFrame, display: Mapping[str, str], th: Any
) -> pd.DataFrame:
    """The single modules, the oracles and the reference on the test queries with a family."""
    labels = {
        "family_routing_oracle": "family-routing oracle (chosen on val)",
        "per_query_oracle": "per-query oracle (upper bound)",
    }
    families = [c for c in rows.columns if c in set(pref["family"])]
    return pd.DataFrame(
        {
            "Row": rows["row"].map(lambda r: labels.get(r, display.get(r, r))),
            "Seeds": rows["seeds"],
            "Queries": rows["queries"],
            **{label: rows[key] for key, label in r1_columns(th)},
            **{f"R@1 IoU≥{ORACLE_THRESHOLD:g} {_family_label(f)}": rows[f] for f in families},
        }
    )


def _oracle_section(doc: Document, an: Analysis, display: Mapping[str, str], th: Any) -> None:
    """(c) The single modules per family and the two oracles; or why they are not there."""
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
        _preference_table(pref, display),
        caption=f"R@1 IoU≥{ORACLE_THRESHOLD:g} per family and module, percent (mean over seeds)",
    )
    for rec in pref.to_dict(orient="records"):
        s.text(_preference_sentence(rec, display))
    s.table(
        _oracle_table(o.rows, pref, display, th),
        caption="Test, queries with a family, percent (mean over seeds)",
    )


def add_family_sections(
    doc: Document, an: Analysis, results: Sequence[VariantResult], th: Any
) -> None:
    """(a) per family, (b) route x family, (c) single modules and oracles; or why not."""
    display = {r.name: r.display for r in results}
    if not an.families:
        doc.section("Query families").text(an.no_families or "No query families.")
        return
    _per_family_section(doc, an, display, th)
    _routes_by_family_section(doc, an, display)
    _oracle_section(doc, an, display, th)
