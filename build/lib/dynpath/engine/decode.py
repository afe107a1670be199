"""Span decoding (paper Eq. 17): the best (t_s, t_e) with t_s <= t_e under P_s(t_s) * P_e(t_e).

Everything is vectorised over the batch: the joint score of every span is the outer product of
the start and end distributions, restricted to the upper triangle (end >= start) and to valid
positions. Top-k decoding repeats "take the best span, suppress the spans that overlap it by more
than ``nms_iou``" k times on the whole [B, T, T] score tensor (temporal NMS), so the k spans
returned for a query are distinct moments rather than k off-by-one copies of the same one.

Indices are inclusive feature positions; :func:`spans_to_seconds` maps them back to seconds with
the docs/design.md convention (start = i*D/T, end = (j+1)*D/T) where T is the unpadded length.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class TopK:
    """k spans per query, best first. ``valid`` is False where fewer than k spans exist."""

    start: Tensor  # [B, k] int64 inclusive start index
    end: Tensor  # [B, k] int64 inclusive end index
    score: Tensor  # [B, k] float32 P_s(start) * P_e(end); 0 where not valid
    valid: Tensor  # [B, k] bool


def span_log_scores(start_logits: Tensor, end_logits: Tensor, mask: Tensor) -> Tensor:
    """log P_s(i) + log P_e(j) for every span [B, T, T]; -inf below the diagonal and on padding.

    Log space keeps spans far from the mode comparable (their products underflow in float32),
    which matters for top-k. The logits are re-masked here so padding can never win.
    """
    mask = mask.bool()
    neg = torch.finfo(torch.float32).min
    lp_s = torch.log_softmax(start_logits.float().masked_fill(~mask, neg), dim=-1)
    lp_e = torch.log_softmax(end_logits.float().masked_fill(~mask, neg), dim=-1)
    joint = lp_s.unsqueeze(2) + lp_e.unsqueeze(1)  # [B, T(start), T(end)]
    t = joint.shape[-1]
    upper = torch.triu(torch.ones(t, t, dtype=torch.bool, device=joint.device))
    keep = upper.unsqueeze(0) & mask.unsqueeze(2) & mask.unsqueeze(1)
    return joint.masked_fill(~keep, float("-inf"))


def span_probabilities(start_logits: Tensor, end_logits: Tensor, mask: Tensor) -> Tensor:
    """Joint probability P_s(i) * P_e(j) of every span [B, T, T] (0 where not a candidate)."""
    return span_log_scores(start_logits, end_logits, mask).exp()


def best_span(start_logits: Tensor, end_logits: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Eq. 17: inclusive (start, end) indices [B] maximising P_s(t_s) * P_e(t_e), t_s <= t_e."""
    top = topk_spans(start_logits, end_logits, mask, k=1, nms_iou=1.0)
    return top.start[:, 0], top.end[:, 0]


def _index_iou(s: Tensor, e: Tensor, starts: Tensor, ends: Tensor) -> Tensor:
    """IoU between one span per sample ([B]) and the span grid ([T,T] of start/end), inclusive.

    An inclusive index span [i, j] covers positions [i, j+1); seconds are a per-sample linear
    rescaling of positions, so this IoU equals the IoU in seconds.
    """
    s = s.view(-1, 1, 1).float()
    e = e.view(-1, 1, 1).float() + 1.0
    gs = starts.unsqueeze(0).float()
    ge = ends.unsqueeze(0).float() + 1.0
    inter = (torch.minimum(e, ge) - torch.maximum(s, gs)).clamp(min=0)
    union = (e - s) + (ge - gs) - inter
    return inter / union.clamp(min=1e-6)


def topk_spans(
    start_logits: Tensor,
    end_logits: Tensor,
    mask: Tensor,
    k: int,
    nms_iou: float,
    allowed: Tensor | None = None,
) -> TopK:
    """The k best spans per query with greedy temporal NMS at IoU threshold ``nms_iou``.

    A span is suppressed when its IoU with an already chosen span is strictly greater than
    ``nms_iou``; the chosen span itself is always removed, so ``nms_iou=1.0`` means "no NMS" and
    still returns k distinct spans. Queries with fewer than k candidate spans (tiny T) get
    ``valid=False`` in the remaining slots. ``allowed`` ([B, T, T] or [T, T] bool, optional)
    restricts the candidates further: the long-video windows of
    :mod:`dynpath.inference.windows` allow each window only the spans it owns.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    work = span_log_scores(start_logits, end_logits, mask)
    if allowed is not None:
        work = work.masked_fill(~allowed.bool(), float("-inf"))
    b, t, _ = work.shape
    grid = torch.arange(t, device=work.device)
    starts = grid.view(t, 1).expand(t, t)
    ends = grid.view(1, t).expand(t, t)
    out_s, out_e, out_p, out_v = [], [], [], []
    rows = torch.arange(b, device=work.device)
    for _ in range(k):
        flat = work.view(b, t * t)
        best = flat.argmax(dim=1)
        score = flat[rows, best]
        valid = torch.isfinite(score)
        s_idx, e_idx = best // t, best % t
        out_s.append(s_idx)
        out_e.append(e_idx)
        out_p.append(torch.where(valid, score.exp(), torch.zeros_like(score)))
        out_v.append(valid)
        suppress = _index_iou(s_idx, e_idx, starts, ends) > nms_iou
        suppress[rows, s_idx, e_idx] = True
        work = work.masked_fill(suppress, float("-inf"))
    return TopK(
        start=torch.stack(out_s, 1),
        end=torch.stack(out_e, 1),
        score=torch.stack(out_p, 1),
        valid=torch.stack(out_v, 1),
    )


def spans_to_seconds(
    start: Tensor, end: Tensor, num_positions: Tensor, durations: Tensor
) -> tuple[Tensor, Tensor]:
    """Inclusive indices [B, ...] -> seconds: start = i*D/T, end = min((j+1)*D/T, D)
    (docs/design.md, "Data semantics").

    The same convention as ``dynpath.data.spans.indices_to_seconds``, broadcast over a batch of
    top-k spans; ``num_positions`` is the unpadded T of each sample.

    Computed and returned in float64: in float32 a long video's end ``(j+1)*D/T`` is off by ~1e-6
    of a position, enough to map back to ``j+1`` (found by tests/test_properties.py: D=8732 s,
    T=17).
    """
    extra = start.dim() - 1
    t = num_positions.to(torch.float64).view(-1, *([1] * extra))
    d = durations.to(torch.float64).view(-1, *([1] * extra))
    step = d / t
    return start.to(torch.float64) * step, torch.minimum((end.to(torch.float64) + 1.0) * step, d)
