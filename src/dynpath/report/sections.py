"""The sections of the ablation report, one function each: what a section says and shows, given
the results; ``dynpath.steps.report.build_document`` decides which sections and in what order.

They were one ~160-line function in the step; split so that each section can be read (and
changed) on its own, without the step's orchestration around it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dynpath.config import Config
from dynpath.report.html import Document
from dynpath.report.tables import (
    MAIN_VARIANT,
    PLATEAU_FRACTION,
    ROUTES,
    VariantResult,
    ablation_table,
    cost_table,
    data_tables,
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
