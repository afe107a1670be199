"""Span decoding (Eq. 17) on hand-made probabilities: end >= start, top-k order, NMS, masks."""

from __future__ import annotations

import torch

from dynpath.engine.decode import best_span, span_probabilities, spans_to_seconds, topk_spans

# P_s and P_e over T = 4. The unconstrained best pair is (start 1, end 0) = 0.30, which violates
# end >= start; the constrained best is (1, 2) = 0.6 * 0.3 = 0.18. Then (1,3) .09, (2,2) .06,
# (0,0) .05, and several at .03.
P_S = torch.tensor([[0.1, 0.6, 0.2, 0.1]])
P_E = torch.tensor([[0.5, 0.05, 0.3, 0.15]])
MASK = torch.ones(1, 4, dtype=torch.bool)


def test_best_span_respects_start_before_end() -> None:
    s, e = best_span(P_S.log(), P_E.log(), MASK)
    assert (s.item(), e.item()) == (1, 2)


def test_joint_is_upper_triangular() -> None:
    joint = span_probabilities(P_S.log(), P_E.log(), MASK)[0]
    assert torch.all(torch.tril(joint, diagonal=-1) == 0)
    assert torch.isclose(joint[1, 2], torch.tensor(0.18))


def test_topk_without_nms_orders_by_score() -> None:
    top = topk_spans(P_S.log(), P_E.log(), MASK, k=4, nms_iou=1.0)
    pairs = list(zip(top.start[0].tolist(), top.end[0].tolist(), strict=True))
    assert pairs == [(1, 2), (1, 3), (2, 2), (0, 0)]
    assert torch.allclose(top.score[0], torch.tensor([0.18, 0.09, 0.06, 0.05]))
    assert bool(top.valid.all())
    assert torch.all(top.score[0, :-1] >= top.score[0, 1:])


def test_topk_nms_suppresses_overlaps() -> None:
    # (1,3) covers [1,4): IoU 2/3 with [1,3) -> suppressed at 0.5. (2,2) = [2,3): IoU exactly
    # 0.5 -> kept at 0.5 (strictly greater suppresses), suppressed at 0.4.
    top = topk_spans(P_S.log(), P_E.log(), MASK, k=3, nms_iou=0.5)
    pairs = list(zip(top.start[0].tolist(), top.end[0].tolist(), strict=True))
    assert pairs == [(1, 2), (2, 2), (0, 0)]
    top = topk_spans(P_S.log(), P_E.log(), MASK, k=2, nms_iou=0.4)
    pairs = list(zip(top.start[0].tolist(), top.end[0].tolist(), strict=True))
    assert pairs == [(1, 2), (0, 0)]


def test_padding_never_wins_and_short_sequences_flag_missing_spans() -> None:
    start = torch.tensor([[0.0, 0.0, 9.0], [0.0, 5.0, 0.0]])
    end = torch.tensor([[0.0, 1.0, 9.0], [0.0, 5.0, 0.0]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    top = topk_spans(start, end, mask, k=4, nms_iou=1.0)
    assert int(top.end[0].max()) <= 1 and int(top.start[0].max()) <= 1
    # T=2 valid positions give only 3 spans: the 4th slot is flagged, with score 0.
    assert top.valid[0].tolist() == [True, True, True, False]
    assert float(top.score[0, 3]) == 0.0
    assert top.valid[1].all()
    assert (top.start[1, 0].item(), top.end[1, 0].item()) == (1, 1)


def test_batch_is_vectorised_consistently() -> None:
    g = torch.Generator().manual_seed(0)
    s = torch.randn(6, 9, generator=g)
    e = torch.randn(6, 9, generator=g)
    mask = torch.ones(6, 9, dtype=torch.bool)
    mask[2, 5:] = False
    top = topk_spans(s, e, mask, k=3, nms_iou=0.5)
    for b in range(6):
        one = topk_spans(s[b : b + 1], e[b : b + 1], mask[b : b + 1], k=3, nms_iou=0.5)
        assert torch.equal(one.start[0], top.start[b]) and torch.equal(one.end[0], top.end[b])
    assert torch.all(top.end >= top.start)


def test_spans_to_seconds_design_mapping() -> None:
    s, e = spans_to_seconds(
        torch.tensor([[0, 2]]), torch.tensor([[0, 3]]), torch.tensor([4]), torch.tensor([10.0])
    )
    assert s.dtype == e.dtype == torch.float64  # seconds of long videos need float64
    assert torch.equal(s, torch.tensor([[0.0, 5.0]], dtype=torch.float64))
    assert torch.equal(e, torch.tensor([[2.5, 10.0]], dtype=torch.float64))
