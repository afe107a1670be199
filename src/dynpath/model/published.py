"""The paper's published numbers, as data the report compares against (R@1 at IoU 0.3/0.5/0.7 and
mIoU, percent). Copied from Tables I-IV of the paper (IEEE TMM 2024, DOI 10.1109/TMM.2024.3368919).

Keys follow ``metrics.json``; Tables III/IV are keyed by variant name and read from the variant
table (:data:`dynpath.variants.TABLE`), where each variant's published row lives.
"""

from __future__ import annotations

from dynpath.variants import TABLE as VARIANT_TABLE

METRIC_KEYS = ("r1_iou0.3", "r1_iou0.5", "r1_iou0.7", "miou")


def _row(r3: float, r5: float, r7: float, miou: float) -> dict[str, float]:
    return dict(zip(METRIC_KEYS, (r3, r5, r7, miou), strict=True))


#: Table III: ablation studies on Charades-STA (I3D features).
TABLE_III_CHARADES: dict[str, dict[str, float]] = {
    v.name: _row(*v.charades_sta) for v in VARIANT_TABLE if v.charades_sta is not None
}

#: Table IV: ablation studies on TACoS (C3D features).
TABLE_IV_TACOS: dict[str, dict[str, float]] = {
    v.name: _row(*v.tacos) for v in VARIANT_TABLE if v.tacos is not None
}

#: "Ours" in Table I (Charades-STA) and Table II (TACoS), comparison with the state of the art;
#: the same numbers as the "Ours" rows of Tables III/IV.
TABLE_I_OURS_CHARADES = _row(74.43, 62.20, 42.52, 55.03)
TABLE_II_OURS_TACOS = _row(53.79, 41.19, 28.23, 38.59)

#: Dataset (``cfg.data.dataset``) -> that dataset's ablation table.
ABLATION_TABLES: dict[str, dict[str, dict[str, float]]] = {
    "charades_sta": TABLE_III_CHARADES,
    "tacos": TABLE_IV_TACOS,
}


def published(dataset: str, variant: str) -> dict[str, float] | None:
    """The paper's numbers for ``variant`` on ``dataset``; None when the paper has none (e.g. the
    synthetic dataset, or a variant the paper did not run)."""
    table = ABLATION_TABLES.get(dataset)
    return None if table is None else table.get(variant)
