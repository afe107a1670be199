"""Report tables and renderers: formatting, labels, data-report layouts, Markdown/HTML escaping."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from dynpath.profiles import VARIANT_NAMES
from dynpath.report.html import Document, format_cell, render_html, render_markdown
from dynpath.report.tables import DISPLAY, TABLE_ORDER, data_tables, display_name, ordered_variants


def test_display_labels_match_the_model_registry() -> None:
    from dynpath.model.registry import variant_metadata

    assert set(DISPLAY) == set(TABLE_ORDER) == set(VARIANT_NAMES)
    for name in TABLE_ORDER:
        assert DISPLAY[name] == variant_metadata(name)["display"]


def test_display_name_and_order() -> None:
    assert display_name("dynamic", "dynamic") == "Ours (dynamic)"
    assert display_name("dynamic_tau05", "dynamic") == "dynamic_tau05"
    assert ordered_variants(["dynamic", "extra", "sum_fusion", "exploitation_only"]) == [
        "exploitation_only",
        "sum_fusion",
        "dynamic",
        "extra",
    ]


def test_format_cell() -> None:
    assert format_cell(None) == "–"
    assert format_cell(math.nan) == "–"
    assert format_cell(62.2) == "62.20"
    assert format_cell(123456) == "123,456"
    assert format_cell(True) == "yes"
    assert format_cell("a|b") == "a|b"


def test_data_tables_accepts_both_layouts() -> None:
    stats_layout = {
        "splits": {
            "train": {
                "lines": 5,
                "kept": 4,
                "videos": 2,
                "clipped": 1,
                "duplicates": 0,
                "skipped": {"start >= end": 1},
                "skipped_total": 1,
            },
        }
    }
    counts, skipped = data_tables(stats_layout)
    assert counts.loc[0, "Kept"] == 4 and skipped.loc[0, "Reason"] == "start >= end"
    report_layout = {
        "lines": {"train": 5},
        "kept": {"train": 4, "val": 1},
        "videos": {"train": 2},
        "skipped": [{"split": "train", "reason": "unparsable"}],
    }
    counts, skipped = data_tables(report_layout)
    assert list(counts["Split"]) == ["train", "val"]
    assert counts.loc[0, "Skipped"] == 1 and skipped.loc[0, "Lines"] == 1


def test_renderers_escape_user_text(tmp_path: Path) -> None:
    doc = Document("t <x>")
    df = pd.DataFrame({"Query": ["<script>alert(1)</script> a|b"], "v": [1.5]})
    doc.section("s").table(df, links={"v": ["http://h/#/x"]})
    html = render_html(doc)
    assert "<script>alert" not in html and "&lt;script&gt;" in html
    assert '<a href="http://h/#/x">1.50</a>' in html
    md = render_markdown(doc, tmp_path)
    assert "a\\|b" in md and "[1.50](http://h/#/x)" in md
