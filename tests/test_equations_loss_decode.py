"""Eq. 17-20 and the metrics pinned: the loss with every ``train.lambda_*`` weight (value and
gradient), the span decoder (Eq. 17 and top-k NMS) and R@n IoU@m / mIoU, against references
written in the test (plain float64 loops, brute force, or hand-computed numbers).

Why: a loss that ignored ``lambda_bound`` passed every fast test (issue 18), because every test
used lambda_bound = 1. Here each weight has its own value, distinct from 1 and from the others, so
swapping, dropping or ignoring any of them changes the result.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import Tensor

from dynpath.data.batch import Batch
from dynpath.engine.decode import best_span, span_probabilities, spans_to_seconds, topk_spans
from dynpath.engine.metrics import (
    iou,
    localization_metrics,
    metric_keys,
    miou,
    recall_at_k,
    topk_ious,
)
from dynpath.model.layers import MASK_VALUE
from dynpath.model.loss import localization_loss
from dynpath.model.output import ModelOutput

F64 = torch.float64
TOL = {"rtol": 1e-10, "atol": 1e-12}
LAMBDAS = {"bound": 0.7, "inner": 3.0, "pathway": 0.4, "route": 0.9, "balance": 0.6}


# --- Eq. 18-20 ----------------------------------------------------------------------------------

LENS = [5, 3, 4]
STARTS, ENDS = [1, 0, 2], [3, 2, 2]


def _batch() -> Batch:
    b, t = len(LENS), max(LENS)
    vm = torch.arange(t)[None] < torch.tensor(LENS)[:, None]
    inner = torch.zeros(b, t)
    for i, (s, e) in enumerate(zip(STARTS, ENDS, strict=True)):
        inner[i, s : e + 1] = 1.0  # Y^in: 1 where tau_s <= i <= tau_e
    return Batch(
        video=torch.zeros(b, t, 1),
        video_mask=vm,
        words=torch.ones(b, 1, dtype=torch.long),
        word_mask=torch.ones(b, 1, dtype=torch.bool),
        start=torch.tensor(STARTS),
        end=torch.tensor(ENDS),
        inner=inner,
        durations=torch.ones(b),
        gt_seconds=torch.zeros(b, 2),
        num_positions=vm.sum(1),
        qids=["a", "b", "c"],
        vids=["v"] * b,
        queries=["q"] * b,
    )


def _logits(seed: int) -> list[Tensor]:
    g = torch.Generator().manual_seed(seed)
    vm = _batch().video_mask
    out = []
    for _ in range(3):
        x = (torch.randn(len(LENS), max(LENS), generator=g, dtype=F64) * 2).masked_fill(
            ~vm, MASK_VALUE
        )
        out.append(x.requires_grad_())
    return out


def _ref_terms(start: Tensor, end: Tensor, inner: Tensor) -> tuple[list[Tensor], Tensor]:
    """Per-sample lambda_1 (CE_s + CE_e) + lambda_2 * (its share of the batch BCE), and the
    batch loss, by explicit loops over valid positions."""
    n_valid = sum(LENS)
    bsz = len(LENS)
    per_sample = []
    bce_total = start.new_zeros(())
    ce_s_total = start.new_zeros(())
    ce_e_total = start.new_zeros(())
    for b, n in enumerate(LENS):
        lse_s = torch.log(sum(torch.exp(start[b, t]) for t in range(n)))  # type: ignore[arg-type]
        lse_e = torch.log(sum(torch.exp(end[b, t]) for t in range(n)))  # type: ignore[arg-type]
        ce_s = lse_s - start[b, STARTS[b]]  # f_XE(P_s, tau_s)
        ce_e = lse_e - end[b, ENDS[b]]
        bce = start.new_zeros(())
        for t in range(n):
            y = 1.0 if STARTS[b] <= t <= ENDS[b] else 0.0
            p = 1.0 / (1.0 + torch.exp(-inner[b, t]))
            bce = bce - (y * torch.log(p) + (1.0 - y) * torch.log(1.0 - p))
        ce_s_total = ce_s_total + ce_s
        ce_e_total = ce_e_total + ce_e
        bce_total = bce_total + bce
        per_sample.append(LAMBDAS["bound"] * (ce_s + ce_e) + LAMBDAS["inner"] * bce * bsz / n_valid)
    batch = LAMBDAS["bound"] * (ce_s_total + ce_e_total) / bsz + LAMBDAS["inner"] * (
        bce_total / n_valid
    )
    return per_sample, batch


def test_eq18_20_loss_value_parts_and_gradient() -> None:
    start, end, inner = _logits(0)
    out = ModelOutput(start, end, inner, torch.full((3,), -1))
    loss, parts = localization_loss(out, _batch(), LAMBDAS["bound"], LAMBDAS["inner"])
    _, want = _ref_terms(start, end, inner)
    torch.testing.assert_close(loss, want, **TOL)
    assert set(parts) == {"loss", "loss_start", "loss_end", "loss_inner"}
    assert parts["loss"] == pytest.approx(float(want.detach()), rel=1e-10)
    got_g = torch.autograd.grad(loss, [start, end, inner])
    want_g = torch.autograd.grad(want, [start, end, inner])
    for a, b in zip(got_g, want_g, strict=True):
        torch.testing.assert_close(a, b, **TOL)
    # the padded logits get exactly zero gradient
    vm = _batch().video_mask
    assert all(torch.all(g[~vm] == 0) for g in got_g)


def test_eq20_each_weight_scales_its_own_term() -> None:
    start, end, inner = _logits(1)
    out = ModelOutput(start, end, inner, torch.full((3,), -1))
    _, parts = localization_loss(out, _batch(), 1.0, 1.0)
    l_bound = parts["loss_start"] + parts["loss_end"]
    for l1, l2 in [(0.7, 3.0), (2.5, 0.0), (0.0, 10.0)]:
        loss, _ = localization_loss(out, _batch(), l1, l2)
        assert float(loss.detach()) == pytest.approx(
            l1 * l_bound + l2 * parts["loss_inner"], rel=1e-10
        )


def _pathway_out(route: list[int]) -> tuple[ModelOutput, list[list[Tensor]], Tensor]:
    main = _logits(2)
    paths = [_logits(3), _logits(4)]
    z = torch.tensor([[0.2, -0.4], [1.0, 0.3], [-0.5, 0.5]], dtype=F64, requires_grad=True)
    probs = torch.exp(z) / torch.exp(z).sum(-1, keepdim=True)
    out = ModelOutput(
        *main,
        route=torch.tensor(route),
        route_probs=probs,
        pathway_logits=[tuple(p) for p in paths],  # type: ignore[misc]
    )
    return out, [main, *paths], z


def test_pathway_route_and_balance_terms_value_and_gradient() -> None:
    route = [0, 1, 1]
    out, (main, *paths), z = _pathway_out(route)
    loss, parts = localization_loss(
        out,
        _batch(),
        LAMBDAS["bound"],
        LAMBDAS["inner"],
        LAMBDAS["pathway"],
        LAMBDAS["route"],
        LAMBDAS["balance"],
    )
    _, l_main = _ref_terms(*main)
    refs = [_ref_terms(*p) for p in paths]
    # lambda_pathway: each pathway's own batch loss, averaged over the pathways
    l_pathway = (refs[0][1] + refs[1][1]) / 2
    # lambda_route: mean_b sum_k p_bk stopgrad(L_bk)
    probs = out.route_probs
    assert probs is not None
    l_route = sum(probs[b, k] * refs[k][0][b].detach() for b in range(3) for k in range(2)) / 3  # type: ignore[operator]
    # lambda_balance: K sum_k f_k mean_b p_bk, f_k the share of hard routes
    share = [route.count(k) / 3 for k in range(2)]
    l_balance = 2 * sum(share[k] * probs[:, k].mean() for k in range(2))
    want = (
        l_main
        + LAMBDAS["pathway"] * l_pathway
        + LAMBDAS["route"] * l_route
        + LAMBDAS["balance"] * l_balance
    )
    torch.testing.assert_close(loss, want, **TOL)  # type: ignore[arg-type]
    assert parts["loss_pathway"] == pytest.approx(float(l_pathway.detach()), rel=1e-10)
    assert parts["loss_route"] == pytest.approx(float(l_route.detach()), rel=1e-10)  # type: ignore[arg-type]
    assert parts["loss_balance"] == pytest.approx(float(l_balance.detach()), rel=1e-10)
    leaves = [*main, *paths[0], *paths[1], z]
    got_g = torch.autograd.grad(loss, leaves, retain_graph=True)  # probs are shared
    want_g = torch.autograd.grad(want, leaves)  # type: ignore[arg-type]
    for a, b in zip(got_g, want_g, strict=True):
        torch.testing.assert_close(a, b, **TOL)


def test_optional_terms_are_off_at_zero_weight_and_without_their_inputs() -> None:
    out, (main, *_), _ = _pathway_out([0, 1, 1])
    loss, parts = localization_loss(out, _batch(), LAMBDAS["bound"], LAMBDAS["inner"])
    torch.testing.assert_close(loss, _ref_terms(*main)[1], **TOL)
    assert set(parts) == {"loss", "loss_start", "loss_end", "loss_inner"}
    bare = ModelOutput(*main, route=torch.full((3,), -1))
    loss2, parts2 = localization_loss(bare, _batch(), 0.7, 3.0, 0.4, 0.9, 0.6)
    torch.testing.assert_close(loss2, _ref_terms(*main)[1], **TOL)
    assert "loss_pathway" not in parts2 and "loss_balance" not in parts2


# --- Eq. 17: decoding -----------------------------------------------------------------------


def _decode_case(seed: int) -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    t = 6
    vm = torch.arange(t)[None] < torch.tensor([6, 4, 1])[:, None]
    s = torch.randn(3, t, generator=g) * 2
    e = torch.randn(3, t, generator=g) * 2
    return s, e, vm


def _brute_spans(s: Tensor, e: Tensor, n: int) -> list[tuple[float, int, int]]:
    """(P_s(i) P_e(j), i, j) for every i <= j < n, best first, in float64."""
    ps = np.exp(s[:n].double().numpy())
    ps /= ps.sum()
    pe = np.exp(e[:n].double().numpy())
    pe /= pe.sum()
    spans = [(ps[i] * pe[j], i, j) for i in range(n) for j in range(i, n)]
    return sorted(spans, reverse=True)


def test_eq17_best_span_and_joint_probability_brute_force() -> None:
    s, e, vm = _decode_case(0)
    st, en = best_span(s, e, vm)
    probs = span_probabilities(s, e, vm)
    for b, n in enumerate([6, 4, 1]):
        spans = _brute_spans(s[b], e[b], n)
        p, i, j = spans[0]
        assert (int(st[b]), int(en[b])) == (i, j)
        # p_se: the joint probability of every candidate, zero below the diagonal and at padding
        for q, i2, j2 in spans:
            assert float(probs[b, i2, j2]) == pytest.approx(q, rel=1e-5)
        assert float(probs[b].sum()) == pytest.approx(sum(q for q, _, _ in spans), rel=1e-5)
        assert float(probs[b, 1, 0]) == 0.0
        assert p == pytest.approx(float(topk_spans(s, e, vm, 1, 1.0).score[b, 0]), rel=1e-5)


def _index_iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    inter = max(0, min(a[1], b[1]) + 1 - max(a[0], b[0]))
    return inter / ((a[1] - a[0] + 1) + (b[1] - b[0] + 1) - inter)


@pytest.mark.parametrize("nms", [1.0, 0.5, 0.2])
def test_topk_with_nms_brute_force(nms: float) -> None:
    s, e, vm = _decode_case(1)
    k = 5
    top = topk_spans(s, e, vm, k, nms)
    for b, n in enumerate([6, 4, 1]):
        cands = _brute_spans(s[b], e[b], n)
        chosen: list[tuple[float, int, int]] = []
        for q, i, j in cands:  # greedy: best first, skip anything overlapping a chosen one
            if len(chosen) == k:
                break
            if all(_index_iou((i, j), (c[1], c[2])) <= nms for c in chosen):
                chosen.append((q, i, j))
        for r in range(k):
            if r < len(chosen):
                assert bool(top.valid[b, r])
                assert (int(top.start[b, r]), int(top.end[b, r])) == chosen[r][1:]
                assert float(top.score[b, r]) == pytest.approx(chosen[r][0], rel=1e-5)
            else:
                assert not bool(top.valid[b, r]) and float(top.score[b, r]) == 0.0


def test_spans_to_seconds_hand_values() -> None:
    # T = 4 positions over 10 s: position i covers [2.5 i, 2.5 (i + 1))
    st, en = spans_to_seconds(
        torch.tensor([[1, 0]]), torch.tensor([[2, 3]]), torch.tensor([4]), torch.tensor([10.0])
    )
    assert st.tolist() == [[2.5, 0.0]] and en.tolist() == [[7.5, 10.0]]


# --- R@n IoU@m, mIoU -----------------------------------------------------------------------


def test_iou_hand_values() -> None:
    assert float(iou([1.0, 3.0], [2.0, 5.0])) == pytest.approx(0.25)
    assert float(iou([2.0, 5.0], [1.0, 3.0])) == pytest.approx(0.25)
    assert float(iou([0.0, 4.0], [1.0, 2.0])) == pytest.approx(0.25)
    assert float(iou([0.0, 1.0], [1.0, 2.0])) == 0.0  # touching: no shared time
    assert float(iou([1.0, 1.0], [1.0, 1.0])) == 0.0  # zero length
    assert float(iou([3.0, 1.0], [0.0, 5.0])) == 0.0  # reversed span: no length
    assert float(iou([0.5, 2.5], [0.5, 2.5])) == 1.0
    with pytest.raises(ValueError):
        iou([1.0, 2.0, 3.0], [1.0, 2.0])


def test_recall_and_miou_hand_values() -> None:
    # 4 queries, 2 predictions each; the ground truth of every query is [0, 10]
    preds = np.array(
        [
            [[0.0, 5.0], [0.0, 10.0]],  # IoU 0.5, 1.0
            [[0.0, 3.0], [0.0, 7.0]],  # IoU 0.3, 0.7
            [[20.0, 30.0], [np.nan, np.nan]],  # IoU 0, missing
            [[0.0, 2.0], [0.0, 2.9]],  # IoU 0.2, 0.29
        ]
    )
    gts = np.array([[0.0, 10.0]] * 4)
    ious = topk_ious(preds, gts)
    np.testing.assert_allclose(ious, [[0.5, 1.0], [0.3, 0.7], [0.0, 0.0], [0.2, 0.29]], atol=1e-12)
    assert recall_at_k(ious, 1, 0.5) == pytest.approx(25.0)  # IoU exactly 0.5 counts
    assert recall_at_k(ious, 1, 0.3) == pytest.approx(50.0)
    assert recall_at_k(ious, 2, 0.7) == pytest.approx(50.0)
    assert recall_at_k(ious, 2, 0.3) == pytest.approx(50.0)
    assert recall_at_k(ious, 2, 0.29) == pytest.approx(75.0)
    assert miou(ious) == pytest.approx(100.0 * (0.5 + 0.3 + 0.0 + 0.2) / 4)
    assert miou(ious[:, 0]) == miou(ious)
    assert recall_at_k(np.zeros((0, 2)), 1, 0.5) == 0.0 and miou(np.zeros((0, 2))) == 0.0
    m = localization_metrics(preds, gts, ks=(1, 2), thresholds=(0.3, 0.7))
    assert (
        list(m)
        == metric_keys((1, 2), (0.3, 0.7))
        == [
            "r1_iou0.3",
            "r1_iou0.7",
            "r2_iou0.3",
            "r2_iou0.7",
            "miou",
        ]
    )
    assert [m[k] for k in m] == pytest.approx([50.0, 0.0, 50.0, 50.0, 25.0])
    assert math.isclose(localization_metrics(preds, gts)["r5_iou0.5"], 50.0)


def test_inner_bce_is_a_mean_over_valid_positions_even_for_one() -> None:
    """A batch with a single valid position: the BCE is that position's BCE (mean over 1)."""
    x = torch.tensor([[0.8, MASK_VALUE, MASK_VALUE]], dtype=F64)
    vm = torch.tensor([[True, False, False]])
    batch = Batch(
        video=torch.zeros(1, 3, 1),
        video_mask=vm,
        words=torch.ones(1, 1, dtype=torch.long),
        word_mask=torch.ones(1, 1, dtype=torch.bool),
        start=torch.tensor([0]),
        end=torch.tensor([0]),
        inner=torch.tensor([[1.0, 0.0, 0.0]]),
        durations=torch.ones(1),
        gt_seconds=torch.zeros(1, 2),
        num_positions=vm.sum(1),
        qids=["a"],
        vids=["v"],
        queries=["q"],
    )
    _, parts = localization_loss(ModelOutput(x, x, x, torch.full((1,), -1)), batch, 1.0, 1.0)
    assert parts["loss_inner"] == pytest.approx(-math.log(1.0 / (1.0 + math.exp(-0.8))), rel=1e-12)
    assert parts["loss_start"] == pytest.approx(0.0, abs=1e-12)  # one candidate: probability 1


def test_balance_term_when_every_query_takes_the_same_route() -> None:
    """The collapse the term exists for: all routes 0, so f = (1, 0) and the term is 2 pbar_0."""
    out, _, _ = _pathway_out([0, 0, 0])
    _, parts = localization_loss(out, _batch(), 1.0, 1.0, lambda_balance=LAMBDAS["balance"])
    assert out.route_probs is not None
    want = 2 * float(out.route_probs[:, 0].mean().detach())
    assert parts["loss_balance"] == pytest.approx(want, rel=1e-12)


def test_each_optional_term_is_logged_only_when_its_weight_is_positive() -> None:
    out, _, _ = _pathway_out([0, 1, 1])
    base = {"loss", "loss_start", "loss_end", "loss_inner"}
    for (lp, lr, lb), extra in {
        (0.4, 0.0, 0.0): {"loss_pathway"},
        (0.0, 0.9, 0.0): {"loss_route"},
        (0.0, 0.0, 0.6): {"loss_balance"},
        (0.4, 0.9, 0.6): {"loss_pathway", "loss_route", "loss_balance"},
    }.items():
        _, parts = localization_loss(out, _batch(), 0.7, 3.0, lp, lr, lb)
        assert set(parts) == base | extra
    # lambda_route without a selector (no route probabilities): nothing to add, no error
    no_sel = ModelOutput(
        out.start_logits, out.end_logits, out.inner_logits, out.route, None, out.pathway_logits
    )
    _, parts = localization_loss(no_sel, _batch(), 0.7, 3.0, 0.4, 0.9, 0.6)
    assert set(parts) == base | {"loss_pathway"}


def test_metric_inputs_of_the_wrong_shape_are_refused_with_the_shapes() -> None:
    with pytest.raises(ValueError, match=r"expected preds \[N,k,2\] and gts \[N,2\]"):
        topk_ious(np.zeros((3, 1, 2)), np.zeros((2, 2)))  # 3 predictions, 2 ground truths
    with pytest.raises(ValueError, match=r"expected preds"):
        topk_ious(np.zeros((3, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"ious must be \[N, k\], got shape \(3,\)"):
        recall_at_k(np.zeros(3), 1, 0.5)


def test_iou_of_short_spans_and_broadcasting() -> None:
    """Spans shorter than one second (no length floor), and one prediction against N truths."""
    assert float(iou([0.0, 0.5], [0.0, 0.5])) == 1.0
    assert float(iou([0.0, 0.5], [0.25, 0.75])) == pytest.approx(1.0 / 3.0)
    np.testing.assert_allclose(iou([0.0, 1.0], [[0.0, 1.0], [0.0, 2.0]]), [1.0, 0.5])
    with pytest.raises(ValueError, match="last dimension of 2"):
        iou([1.0, 2.0, 3.0], [1.0, 2.0])


def test_spans_to_seconds_per_sample_over_a_batch() -> None:
    """Each sample's own T and duration (2 s and 3 s per position here), broadcast over its k
    spans (and for [B] spans)."""
    start, end = torch.tensor([[0, 2], [1, 0]]), torch.tensor([[1, 3], [1, 4]])
    st, en = spans_to_seconds(start, end, torch.tensor([4, 5]), torch.tensor([8.0, 15.0]))
    assert st.tolist() == [[0.0, 4.0], [3.0, 0.0]]
    assert en.tolist() == [[4.0, 8.0], [6.0, 15.0]]
    st1, en1 = spans_to_seconds(
        torch.tensor([1, 2]), torch.tensor([2, 4]), torch.tensor([4, 5]), torch.tensor([8.0, 15.0])
    )
    assert st1.tolist() == [2.0, 6.0] and en1.tolist() == [6.0, 15.0]


def test_topk_refuses_k_below_one_with_the_value() -> None:
    s, e, vm = _decode_case(0)
    with pytest.raises(ValueError, match="k must be >= 1, got 0"):
        topk_spans(s, e, vm, 0, 0.5)
