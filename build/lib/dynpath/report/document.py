"""The report's document: its title, then its sections in reading order.

Which sections appear and in what order is decided here, once for the HTML and the Markdown;
what each section says is in ``dynpath.report.sections``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dynpath.config import Config
from dynpath.report.analysis import Analysis
from dynpath.report.html import Document
from dynpath.report.results import VariantResult
from dynpath.report.sections import (
    ablation_section,
    add_family_sections,
    add_seed_section,
    cost_section,
    data_section,
    overview_section,
    recall5_and_shuffled_sections,
    reproduce_section,
    routes_section,
    training_curves_section,
)


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
    """The report's document: its title, then the sections (``dynpath.report.sections``; the
    seed and family sections only with an :class:`Analysis`) in reading order."""
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
    # the spread over seeds leads: one seed ranks nothing on the synthetic benchmark
    if analysis is not None:
        add_seed_section(doc, analysis, results, th)
    ablation_section(
        doc,
        cfg,
        results,
        published,
        figures,
        None if analysis is None else analysis.rising,
        None if analysis is None else analysis.seeds[0],
    )
    recall5_and_shuffled_sections(doc, results, th)
    routes_section(doc, cfg, results, figures)
    if analysis is not None:
        add_family_sections(doc, analysis, results, th)
    training_curves_section(doc, cfg, figures)
    cost_section(doc, cfg, results, links)
    data_section(doc, data_report, vocab_report)
    reproduce_section(doc)
    return doc
