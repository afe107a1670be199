"""The paper's published numbers, as data the report compares against (R@1 at IoU 0.3/0.5/0.7 and
mIoU, percent). Copied from Tables I-IV of the paper (IEEE TMM 2024, DOI 10.1109/TMM.2024.3368919).

Keys follow ``metrics.json``; Tables III/IV are keyed by registered variant name.
"""

from __future__ import annotations

METRIC_KEYS = ("r1_iou0.3", "r1_iou0.5", "r1_iou0.7", "miou")


def _row(r3: float, r5: float, r7: float, miou: float) -> dict[str, float]:
    return dict(zip(METRIC_KEYS, (r3, r5, r7, miou), strict=True))


#: Table III: ablation studies on Charades-STA (I3D features).
TABLE_III_CHARADES: dict[str, dict[str, float]] = {
    "exploitation_only": _row(73.23, 59.36, 40.68, 52.29),
    "exploration_only": _row(73.63, 59.85, 41.40, 53.47),
    "exploitation_wo_lml": _row(70.91, 55.43, 33.46, 49.98),
    "exploration_wo_te": _row(69.48, 54.00, 36.23, 50.39),
    "network_parallel": _row(72.95, 58.68, 38.14, 52.57),
    "sum_fusion": _row(71.99, 58.63, 38.62, 51.96),
    "multiply_fusion": _row(73.06, 58.22, 39.16, 53.27),
    "concat_fusion": _row(73.57, 60.88, 41.22, 54.14),
    "soft_dynamic": _row(74.65, 61.18, 41.53, 54.34),
    "dynamic": _row(74.43, 62.20, 42.52, 55.03),
}

#: Table IV: ablation studies on TACoS (C3D features).
TABLE_IV_TACOS: dict[str, dict[str, float]] = {
    "exploitation_only": _row(52.88, 40.03, 27.24, 37.64),
    "exploration_only": _row(51.86, 40.01, 26.99, 37.04),
    "exploitation_wo_lml": _row(40.98, 29.21, 18.52, 28.84),
    "exploration_wo_te": _row(44.71, 35.41, 24.46, 33.52),
    "network_parallel": _row(48.98, 38.28, 25.96, 35.82),
    "sum_fusion": _row(51.71, 39.74, 27.87, 37.44),
    "multiply_fusion": _row(51.26, 39.31, 26.66, 37.29),
    "concat_fusion": _row(52.28, 40.78, 27.91, 38.31),
    "soft_dynamic": _row(54.04, 42.29, 27.64, 38.98),
    "dynamic": _row(53.79, 41.19, 28.23, 38.59),
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
