"""One table of variants (dynpath.variants): the registry, profiles, report and published numbers
all read it, and none of them spells a variant name of its own."""

from __future__ import annotations

import re
from pathlib import Path

from dynpath import variants
from dynpath.model.published import TABLE_III_CHARADES, TABLE_IV_TACOS
from dynpath.model.registry import MODULES, VARIANTS
from dynpath.model.selection import FUSIONS
from dynpath.profiles import VARIANT_NAMES, resolve
from dynpath.report.tables import DISPLAY, TABLE_ORDER

SRC = Path(__file__).resolve().parents[1] / "src" / "dynpath"
READERS = ("model/registry.py", "profiles/__init__.py", "report/tables.py", "model/published.py")


def test_table_is_well_formed() -> None:
    names = [v.name for v in variants.TABLE]
    assert len(names) == len(set(names))
    rows = [v.paper_row for v in variants.TABLE if v.paper_row is not None]
    assert sorted(rows) == list(range(1, len(rows) + 1))
    for v in variants.TABLE:
        assert set(v.modules) <= set(MODULES), v.name
        assert v.fusion in FUSIONS, v.name


def test_every_reader_agrees_with_the_table() -> None:
    assert set(VARIANTS.names()) == set(variants.NAMES)
    for v in variants.TABLE:
        spec = VARIANTS.get(v.name)
        assert (spec.display, spec.fusion) == (v.label, v.fusion)
        assert spec.pathways == tuple(MODULES[m] for m in v.modules)
        assert DISPLAY[v.name] == v.label
        assert TABLE_III_CHARADES[v.name]["miou"] == v.charades_sta.miou  # type: ignore[union-attr]
        assert TABLE_IV_TACOS[v.name]["r1_iou0.7"] == v.tacos.r1_iou07  # type: ignore[union-attr]
    assert VARIANT_NAMES == variants.NAMES
    assert list(resolve("synthetic")["variants"]) == list(variants.NAMES)
    assert TABLE_ORDER == variants.PAPER_ORDER and TABLE_ORDER[-1] == "dynamic"


def test_no_reader_keeps_a_list_of_its_own() -> None:
    """Adding a variant is one entry in the table: a reader may name the one or two variants it
    has a role for (the report's main model, the latency baseline), never a list of them."""
    pattern = re.compile("|".join(rf"[\"']{re.escape(n)}[\"']" for n in variants.NAMES))
    for rel in READERS:
        text = (SRC / rel).read_text(encoding="utf-8")
        hits = sorted({m.group(0).strip("\"'") for m in pattern.finditer(text)})
        assert len(hits) < 5, f"{rel} spells variant names {hits}: read dynpath.variants instead"
