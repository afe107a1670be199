"""One list per concept (docs/design.md, "Layout"): the datasets are the reader registry
(``dynpath.data.annotations.READERS``). The config cannot import it (``config`` is below
``data`` in the layers), so its ``dataset`` Literal is a copy that this test ties to it, and a
scan of src/ finds any other copy. (The variants: tests/test_variants_table.py; the stages and the
Kubeflow components: tests/test_dvc_stages.py and tests/test_pipeline_compile.py.)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

from dynpath.config import DataConfig
from dynpath.data.annotations import READERS

SRC = Path(__file__).resolve().parents[1] / "src" / "dynpath"

#: The files that spell the datasets as a list, and why each may: the registry itself, and the
#: copies checked equal to it here.
DATASET_LISTS = {
    "data/annotations.py": "the registry: one reader registered per dataset",
    "config.py": "DataConfig.dataset's Literal (checked equal to READERS below)",
}


def spelled_dataset_lists(files: dict[str, str], names: list[str]) -> dict[str, set[str]]:
    """File -> the dataset names it spells as string literals, for files that spell three or
    more (a list, not a branch on one dataset)."""
    pattern = re.compile("|".join(rf"[\"']{re.escape(n)}[\"']" for n in names))
    found = {}
    for rel, text in files.items():
        hits = {m.group(0).strip("\"'") for m in pattern.finditer(text)}
        if len(hits) >= 3:
            found[rel] = hits
    return found


def test_the_config_accepts_exactly_the_registered_datasets() -> None:
    """A reader registered without its name in the Literal could never be selected (params.yaml
    would be rejected); a name without a reader would pass validation and fail at run time."""
    literal = get_args(DataConfig.model_fields["dataset"].annotation)
    assert sorted(literal) == sorted(READERS.names())


def test_the_cli_offers_exactly_the_registered_datasets() -> None:
    from dynpath.cli import build_parser

    parser = build_parser()
    for name in READERS.names():
        args = parser.parse_args(["data-stats", "--dataset", name, "--root", "x"])
        assert args.dataset == name


def test_no_other_module_of_src_lists_the_datasets() -> None:
    """Every module of src/ is scanned; the known copies spell exactly the registry's names; the
    scan itself catches a planted list."""
    names = READERS.names()
    files = {
        p.relative_to(SRC).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted(SRC.rglob("*.py"))
    }
    found = spelled_dataset_lists(files, names)
    extra = sorted(set(found) - set(DATASET_LISTS))
    assert not extra, f"modules list the datasets, read dynpath.data.annotations.READERS: {extra}"
    for rel in set(found) - {"data/annotations.py"}:
        assert found[rel] == set(names), f"{rel} lists {sorted(found[rel])}, READERS has {names}"
    planted = {"steps/data.py": "KNOWN = (" + ", ".join(f'"{n}"' for n in names) + ")\n"}
    assert list(spelled_dataset_lists(planted, names)) == ["steps/data.py"]
