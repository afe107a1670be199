"""Metric functions against hand-worked cases (seconds)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dynpath.engine.metrics import (
    iou,
    localization_metrics,
    metric_key,
    miou,
    recall_at_k,
    topk_ious,
)


@pytest.mark.parametrize(
    ("pred", "gt", "expected"),
    [
        ([0.0, 5.0], [0.0, 10.0], 0.5),  # contained: 5 / 10
        ([2.0, 4.0], [3.0, 5.0], 1.0 / 3.0),  # overlap 1, union 3
        ([0.0, 5.0], [5.0, 10.0], 0.0),  # touching edges share no time
        ([0.0, 4.0], [6.0, 10.0], 0.0),  # disjoint
        ([3.0, 3.0], [0.0, 10.0], 0.0),  # zero-length prediction inside gt
        ([3.0, 3.0], [3.0, 3.0], 0.0),  # zero-length on both sides: 0, not 0/0
        ([1.5, 7.5], [1.5, 7.5], 1.0),  # identical
        ([8.0, 12.0], [10.0, 11.0], 0.25),  # gt inside prediction: 1 / 4
    ],
)
def test_iou_hand_worked(pred: list[float], gt: list[float], expected: float) -> None:
    assert math.isclose(float(iou(pred, gt)), expected, abs_tol=1e-12)


def test_iou_is_symmetric_and_broadcasts() -> None:
    preds = np.array([[0.0, 5.0], [2.0, 4.0], [0.0, 5.0]])
    gts = np.array([[0.0, 10.0], [3.0, 5.0], [5.0, 10.0]])
    np.testing.assert_allclose(iou(preds, gts), [0.5, 1 / 3, 0.0])
    np.testing.assert_allclose(iou(gts, preds), iou(preds, gts))
    assert iou(preds, [0.0, 10.0]).shape == (3,)


def test_recall_with_duplicates_and_miou() -> None:
    gts = [[0.0, 10.0], [0.0, 10.0]]
    preds = [
        [[0.0, 5.0], [0.0, 5.0], [0.0, 5.0]],  # duplicates, each IoU 0.5
        [[20.0, 30.0], [0.0, 4.0], [1.0, 9.0]],  # IoU 0, 0.4, 0.8
    ]
    ious = topk_ious(preds, gts)
    np.testing.assert_allclose(ious, [[0.5, 0.5, 0.5], [0.0, 0.4, 0.8]])
    assert recall_at_k(ious, 1, 0.5) == 50.0  # IoU exactly 0.5 counts at m = 0.5
    assert recall_at_k(ious, 1, 0.3) == 50.0
    assert recall_at_k(ious, 2, 0.3) == 100.0
    assert recall_at_k(ious, 3, 0.7) == 50.0  # duplicates of a miss never become a hit
    assert recall_at_k(ious, 3, 0.9) == 0.0
    assert miou(ious) == 25.0


def test_missing_predictions_are_misses() -> None:
    nan = float("nan")
    preds = [[[0.0, 10.0], [nan, nan]], [[nan, nan], [nan, nan]]]
    m = localization_metrics(preds, [[0.0, 10.0], [0.0, 10.0]], ks=(1, 2), thresholds=(0.5,))
    assert m == {"r1_iou0.5": 50.0, "r2_iou0.5": 50.0, "miou": 50.0}


def test_metric_keys_format() -> None:
    assert metric_key(1, 0.3) == "r1_iou0.3"
    assert metric_key(5, 0.7) == "r5_iou0.7"
    m = localization_metrics([[[0.0, 1.0]]], [[0.0, 1.0]])
    assert set(m) == {
        "r1_iou0.3",
        "r1_iou0.5",
        "r1_iou0.7",
        "r5_iou0.3",
        "r5_iou0.5",
        "r5_iou0.7",
        "miou",
    }
    assert all(v == 100.0 for v in m.values())


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError):
        iou([0.0, 1.0, 2.0], [0.0, 1.0])
    with pytest.raises(ValueError):
        topk_ious([[0.0, 1.0]], [[0.0, 1.0]])
