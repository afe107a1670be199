"""One table of variants (dynpath.variants): the registry, profiles, report, the paper's numbers
and the benchmark's cost table all read it, and no module of src/ spells a list of variant names
of its own."""

from __future__ import annotations

import re
from pathlib import Path

from dynpath import variants
from dynpath.bench.charades import ABLATION_RATE_OF, TIMED_ARCHS
from dynpath.model.registry import MODULES, VARIANTS
from dynpath.model.selection import FUSIONS
from dynpath.profiles import VARIANT_NAMES, resolve
from dynpath.report.summary import published_numbers
from dynpath.report.tables import DISPLAY, TABLE_ORDER

SRC = Path(__file__).resolve().parents[1] / "src" / "dynpath"

#: A module may name the variants it has a role for (the paper's model, the benchmark's three
#: timed architectures), never a list of them: this many distinct names in one file is a list.
LIST_SIZE = 5


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
    charades, tacos = published_numbers("charades_sta"), published_numbers("tacos")
    assert charades is not None and tacos is not None
    for v in variants.TABLE:
        spec = VARIANTS.get(v.name)
        assert (spec.display, spec.fusion) == (v.label, v.fusion)
        assert spec.pathways == tuple(MODULES[m] for m in v.modules)
        assert DISPLAY[v.name] == v.label
        assert charades[v.name]["miou"] == v.charades_sta.miou  # type: ignore[union-attr]
        assert tacos[v.name]["r1_iou0.7"] == v.tacos.r1_iou07  # type: ignore[union-attr]
    assert published_numbers("synthetic") is None and published_numbers("jsonl") is None
    assert VARIANT_NAMES == variants.NAMES
    assert list(resolve("synthetic")["variants"]) == list(variants.NAMES)
    assert TABLE_ORDER == variants.PAPER_ORDER and TABLE_ORDER[-1] == "dynamic"


def test_the_benchmarks_cost_table_covers_every_variant() -> None:
    """An added variant is in the ablation's projected hours, at the rate of a timed
    architecture that computes the same pathways in training (the table the bench once spelled
    out, pinned here)."""
    assert list(ABLATION_RATE_OF) == list(variants.NAMES)
    assert set(ABLATION_RATE_OF.values()) == set(TIMED_ARCHS) <= set(variants.NAMES)
    assert ABLATION_RATE_OF == {
        "dynamic": "dynamic",
        "soft_dynamic": "soft_dynamic",
        "network_parallel": "soft_dynamic",
        "sum_fusion": "soft_dynamic",
        "multiply_fusion": "soft_dynamic",
        "concat_fusion": "soft_dynamic",
        "exploitation_only": "exploitation_only",
        "exploration_only": "exploitation_only",
        "exploitation_wo_lml": "exploitation_only",
        "exploration_wo_te": "exploitation_only",
    }


def spelled_variant_lists(files: dict[str, str]) -> dict[str, list[str]]:
    """File -> the variant names it spells as string literals, for files that spell a list."""
    pattern = re.compile("|".join(rf"[\"']{re.escape(n)}[\"']" for n in variants.NAMES))
    found = {}
    for rel, text in files.items():
        hits = sorted({m.group(0).strip("\"'") for m in pattern.finditer(text)})
        if len(hits) >= LIST_SIZE:
            found[rel] = hits
    return found


def test_no_module_of_src_keeps_a_list_of_its_own() -> None:
    """Adding a variant is one entry in the table: every module of src/ but the table itself is
    scanned (the bench once listed all ten for its cost table, which an eleventh variant would
    have silently left out); the scan itself catches a planted list."""
    files = {
        p.relative_to(SRC).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted(SRC.rglob("*.py"))
        if p != SRC / "variants.py"
    }
    assert len(files) > 100
    found = spelled_variant_lists(files)
    assert not found, f"modules spell variant lists, read dynpath.variants instead: {found}"
    planted = "RATE = {" + ", ".join(f'"{n}": 1' for n in variants.NAMES) + "}\n"
    assert list(spelled_variant_lists({"bench/charades.py": planted})) == ["bench/charades.py"]
