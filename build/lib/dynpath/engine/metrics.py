"""Localization metrics in SECONDS: IoU, R@k at IoU thresholds, mIoU (paper Sec. IV-B).

Conventions (documented because papers rarely state them):
- IoU of [s1, e1] and [s2, e2] is |intersection| / |union| of the closed intervals as lengths of
  time. Intervals that only touch (e1 == s2) share no time: IoU 0. A zero-length span covers no
  time, so its IoU with anything (itself included) is 0 rather than 0/0.
- R@k at threshold m is the percentage of queries for which ANY of the first k predicted spans has
  IoU >= m with the ground truth. Duplicated predictions count once per query (a query is either
  hit or not), so duplicates can only waste slots, never inflate recall.
- mIoU is the mean IoU of the top-1 prediction, in percent.
- Metric keys are ``r{k}_iou{m:g}`` (``r1_iou0.5``) and ``miou``, as in metrics.json.

These are bookkeeping over at most a few tens of thousands of queries, so float64 NumPy is used
for exact threshold comparisons (IoU exactly 0.5 must count at m = 0.5).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray


def metric_key(k: int, threshold: float) -> str:
    """``r1_iou0.5`` style key used in metrics.json, history.json and MLflow."""
    return f"r{k}_iou{threshold:g}"


def metric_keys(ks: Sequence[int], thresholds: Sequence[float]) -> list[str]:
    """All keys of :func:`localization_metrics`, in a stable order (R@k by k, then mIoU)."""
    return [metric_key(k, m) for k in ks for m in thresholds] + ["miou"]


def iou(pred: ArrayLike, gt: ArrayLike) -> NDArray[np.float64]:
    """IoU of spans in seconds, broadcasting ``pred`` [..., 2] against ``gt`` [..., 2]."""
    p = np.asarray(pred, dtype=np.float64)
    g = np.asarray(gt, dtype=np.float64)
    if p.shape[-1] != 2 or g.shape[-1] != 2:
        raise ValueError(f"spans must have a last dimension of 2, got {p.shape} and {g.shape}")
    ps, pe = p[..., 0], p[..., 1]
    gs, ge = g[..., 0], g[..., 1]
    inter = np.clip(np.minimum(pe, ge) - np.maximum(ps, gs), 0.0, None)
    len_p = np.clip(pe - ps, 0.0, None)
    len_g = np.clip(ge - gs, 0.0, None)
    union = len_p + len_g - inter
    out = np.zeros(np.broadcast(ps, gs).shape, dtype=np.float64)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def topk_ious(preds: ArrayLike, gts: ArrayLike) -> NDArray[np.float64]:
    """IoU of each of the k predictions [N, k, 2] with its query's ground truth [N, 2] -> [N, k].

    Missing predictions can be passed as NaN spans; they get IoU 0 (never a hit).
    """
    p = np.asarray(preds, dtype=np.float64)
    g = np.asarray(gts, dtype=np.float64)
    if p.ndim != 3 or g.ndim != 2 or p.shape[0] != g.shape[0]:
        raise ValueError(f"expected preds [N,k,2] and gts [N,2], got {p.shape} and {g.shape}")
    out = iou(np.nan_to_num(p, nan=0.0), g[:, None, :])
    out[np.isnan(p).any(axis=-1)] = 0.0
    return out


def recall_at_k(ious: ArrayLike, k: int, threshold: float) -> float:
    """Percent of queries with a hit (IoU >= threshold) among their first k predictions."""
    arr = np.asarray(ious, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"ious must be [N, k], got shape {arr.shape}")
    if arr.shape[0] == 0:
        return 0.0
    hit = (arr[:, :k] >= threshold).any(axis=1)
    return float(100.0 * hit.mean())


def miou(ious: ArrayLike) -> float:
    """Mean top-1 IoU in percent (``ious`` [N, k] or [N])."""
    arr = np.asarray(ious, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[:, 0]
    if arr.size == 0:
        return 0.0
    return float(100.0 * arr.mean())


def localization_metrics(
    preds: ArrayLike,
    gts: ArrayLike,
    ks: Sequence[int] = (1, 5),
    thresholds: Sequence[float] = (0.3, 0.5, 0.7),
) -> dict[str, float]:
    """R@k per threshold and mIoU (percent) of top-k spans [N, k, 2] vs ground truth [N, 2]."""
    ious = topk_ious(preds, gts)
    out = {metric_key(k, m): recall_at_k(ious, k, m) for k in ks for m in thresholds}
    out["miou"] = miou(ious)
    return out
