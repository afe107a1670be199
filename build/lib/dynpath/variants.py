"""The ablation variants of Tables III/IV: one table that everything else reads.

Each row names a variant, its label in the paper, the pathway modules it stacks (keys of
:data:`dynpath.model.registry.MODULES`), its fusion rule (a key of
:data:`dynpath.model.selection.FUSIONS`), its row in Tables III/IV and the paper's published
numbers. The model registry builds its architectures from it, the profiles list it as the default
``variants:``, the report takes its row labels, order and the paper's numbers
(:func:`paper_ablation`) from it, the benchmark its cost table. Adding a variant is one entry here
plus the code of any new module (CONTRIBUTING.md, "Adding a variant").

Torch-free on purpose: reading results (the report) or writing params (profiles) must not import
torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


class PaperNumbers(NamedTuple):
    """R@1 at IoU 0.3 / 0.5 / 0.7 and mIoU (percent), as printed in the paper."""

    r1_iou03: float
    r1_iou05: float
    r1_iou07: float
    miou: float


@dataclass(frozen=True)
class Variant:
    """One ablation variant (see module doc)."""

    name: str
    label: str  # the row label of Tables III/IV
    modules: tuple[str, ...]  # pathway modules, in order (dynpath.model.registry.MODULES keys)
    fusion: str  # "single" (one module, no selector), "sum", ..., "gumbel"
    paper_row: int | None  # 1-based row of Tables III/IV; None for a variant the paper did not run
    charades_sta: PaperNumbers | None = None  # Table III (Charades-STA, I3D)
    tacos: PaperNumbers | None = None  # Table IV (TACoS, C3D)

    def published(self, dataset: str) -> PaperNumbers | None:
        """The paper's numbers for this variant on ``dataset`` (a ``data.dataset`` name); None
        where the paper has none (the synthetic benchmark, a JSONL dataset, a row it did not
        run)."""
        return {"charades_sta": self.charades_sta, "tacos": self.tacos}.get(dataset)


_BOTH = ("exploitation", "exploration")

#: In params order (the default ``variants:`` of every profile): the paper's model first.
TABLE: tuple[Variant, ...] = (
    Variant(
        "dynamic",
        "Ours",
        _BOTH,
        "gumbel",
        10,
        PaperNumbers(74.43, 62.20, 42.52, 55.03),
        PaperNumbers(53.79, 41.19, 28.23, 38.59),
    ),
    Variant(
        "soft_dynamic",
        "Soft dynamic",
        _BOTH,
        "softmax",
        9,
        PaperNumbers(74.65, 61.18, 41.53, 54.34),
        PaperNumbers(54.04, 42.29, 27.64, 38.98),
    ),
    Variant(
        "exploitation_only",
        "exploitation module only",
        ("exploitation",),
        "single",
        1,
        PaperNumbers(73.23, 59.36, 40.68, 52.29),
        PaperNumbers(52.88, 40.03, 27.24, 37.64),
    ),
    Variant(
        "exploration_only",
        "exploration module only",
        ("exploration",),
        "single",
        2,
        PaperNumbers(73.63, 59.85, 41.40, 53.47),
        PaperNumbers(51.86, 40.01, 26.99, 37.04),
    ),
    # "w/o LML": LoL replaced by GoL; "w/o TE": TeN replaced by SpL. Both are ablations of one
    # module, so they run that module alone, like the "module only" rows they are compared with.
    Variant(
        "exploitation_wo_lml",
        "exploitation w/o LML",
        ("exploitation_gol_gol",),
        "single",
        3,
        PaperNumbers(70.91, 55.43, 33.46, 49.98),
        PaperNumbers(40.98, 29.21, 18.52, 28.84),
    ),
    Variant(
        "exploration_wo_te",
        "exploration w/o TE",
        ("exploration_spl_spl",),
        "single",
        4,
        PaperNumbers(69.48, 54.00, 36.23, 50.39),
        PaperNumbers(44.71, 35.41, 24.46, 33.52),
    ),
    # "network parallel" (Sec. IV-E4): ONE module whose two networks are stacked in parallel
    # (see dynpath.model.registry.MODULES["parallel"]), compared with the single modules.
    Variant(
        "network_parallel",
        "network parallel",
        ("parallel",),
        "single",
        5,
        PaperNumbers(72.95, 58.68, 38.14, 52.57),
        PaperNumbers(48.98, 38.28, 25.96, 35.82),
    ),
    Variant(
        "sum_fusion",
        "Sum fusion",
        _BOTH,
        "sum",
        6,
        PaperNumbers(71.99, 58.63, 38.62, 51.96),
        PaperNumbers(51.71, 39.74, 27.87, 37.44),
    ),
    Variant(
        "multiply_fusion",
        "Multiply fusion",
        _BOTH,
        "multiply",
        7,
        PaperNumbers(73.06, 58.22, 39.16, 53.27),
        PaperNumbers(51.26, 39.31, 26.66, 37.29),
    ),
    Variant(
        "concat_fusion",
        "Concatenate fusion",
        _BOTH,
        "concat",
        8,
        PaperNumbers(73.57, 60.88, 41.22, 54.14),
        PaperNumbers(52.28, 40.78, 27.91, 38.31),
    ),
)

#: Variant name -> row.
BY_NAME: dict[str, Variant] = {v.name: v for v in TABLE}

#: The variant names in params order.
NAMES: tuple[str, ...] = tuple(v.name for v in TABLE)

#: The paper's rows of Tables III/IV, in the paper's order ("Ours" last).
PAPER_ORDER: tuple[str, ...] = tuple(
    v.name for v in sorted(TABLE, key=lambda v: v.paper_row or 0) if v.paper_row is not None
)

#: The paper's model (Table III's full model); every other variant is an ablation. The registry
#: keeps it apart (docs/design.md, "Model registry").
PAPER_VARIANT = "dynamic"
assert PAPER_VARIANT in BY_NAME

#: ``metrics.json``'s keys of the fields of :class:`PaperNumbers`, in order.
PAPER_METRIC_KEYS: tuple[str, ...] = ("r1_iou0.3", "r1_iou0.5", "r1_iou0.7", "miou")


def paper_ablation(dataset: str) -> dict[str, dict[str, float]] | None:
    """The paper's ablation table on ``dataset`` (Table III for Charades-STA, IV for TACoS):
    variant -> ``metrics.json`` key -> percent; None where the paper has no numbers."""
    table = {
        v.name: dict(zip(PAPER_METRIC_KEYS, numbers, strict=True))
        for v in TABLE
        if (numbers := v.published(dataset)) is not None
    }
    return table or None
