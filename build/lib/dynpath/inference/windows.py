"""Long videos: the model runs on overlapping windows of ``max_len`` clips; their spans are merged.

Why: a video longer than ``data.max_len`` feature clips used to be squeezed by bin-averaging
into ``max_len`` bins, so in a 10-minute video a 5-second moment became a fraction of one bin
and could not be found. Now every clip is seen at the features' own rate (the extractor's, the
rate the model was trained on) and the answer is assembled from windows. The Localizer calls
:func:`decode_windows` for every video longer than ``max_len`` clips, so the CLI, Python
callers, the served MLflow model and the demo page all take this one path.

- Windows: ``L = max_len`` clips, stride ``L // 2`` (half overlap). Starts ``0, S, 2S, ...``;
  when the last regular window stops short of the end, one more window is aligned to end at
  ``T`` (start ``T - L``). Every window is exactly ``L`` clips long: the model never sees
  padding, no window is partial, and a long video's answer does not depend on what else is in
  the batch.
- Ownership: a span belongs to the window whose centre is nearest to the span's centre (the
  boundary between two windows lies halfway between their centres; a centre exactly on it goes
  to the later window). A window decodes only the spans it owns, so a moment up to ``L / 2``
  clips long is always decoded by a window that holds all of it, never as the cut-off piece at
  another window's edge.
- Scores comparable across windows: inside a window ``P_s(i) * P_e(j)`` is a softmax over that
  window's positions and sums to one in every window, also in one where nothing happens. Each
  candidate's score is therefore ``P_s(i) * P_e(j) * P_in(i..j)``, ``P_in`` the mean over the
  span of the inner head's sigmoid (Eq. 16): trained with a per-position binary cross-entropy,
  it is an absolute probability that a clip lies inside the moment, not normalised per window.
- Merge: the candidates of all windows (each window's top ``k`` owned spans) are ranked by that
  score and merged by the decoder's greedy temporal NMS (a span is dropped when its IoU with a
  kept one is greater than ``nms_iou``); the best ``k`` are returned.

A video of at most ``L`` clips is one window and is decoded exactly as before (scores
``P_s * P_e``, the evaluator's :func:`~dynpath.engine.evaluator.decode_batch`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from dynpath.data.dataset import collate
from dynpath.engine.decode import topk_spans
from dynpath.engine.evaluator import forward
from dynpath.errors import DataError
from dynpath.model.output import NO_ROUTE

# Windows per forward pass: bounds memory for very long videos (a 4-hour video at one clip per
# second and max_len 128 is 224 windows).
WINDOW_BATCH = 64


@dataclass(frozen=True)
class Candidate:
    """One span of a long video: inclusive clip indices of the whole video, the merge score and
    the window (index into the starts) that decoded it."""

    start: int
    end: int
    score: float
    window: int


@dataclass
class WindowAnswer:
    """The merged spans (best first) and the route of the window of the best span."""

    spans: list[Candidate]
    starts: list[int]
    route: int
    route_probs: list[float] | None


def window_starts(t: int, length: int) -> list[int]:
    """First clip of each window over ``t`` clips: stride ``length // 2``, the last window
    aligned to end at ``t``; ``[0]`` when the video fits in one window."""
    if length < 1 or t < 1:
        raise ValueError(f"need t >= 1 and length >= 1, got t={t}, length={length}")
    if t <= length:
        return [0]
    stride = max(1, length // 2)
    starts = list(range(0, t - length + 1, stride))
    if starts[-1] + length < t:
        starts.append(t - length)
    return starts


def owned_ranges(starts: Sequence[int], length: int) -> list[tuple[float, float]]:
    """``[lo, hi)`` of span centres (in clips, ``(i + j + 1) / 2`` for inclusive ``i..j``) that
    each window owns: the centres nearer to its own centre than to any other window's."""
    centres = [s + length / 2 for s in starts]
    cuts = [(a + b) / 2 for a, b in itertools.pairwise(centres)]
    lows = [-np.inf, *cuts]
    highs = [*cuts, np.inf]
    return list(zip(lows, highs, strict=True))


def ownership_mask(start: int, length: int, lo: float, hi: float) -> np.ndarray:
    """[L, L] bool: span ``(i, j)`` of the window starting at ``start`` is a candidate when
    ``i <= j`` and its centre (in video clips) lies in ``[lo, hi)``."""
    i = np.arange(length)[:, None]
    j = np.arange(length)[None, :]
    centre = start + (i + j + 1) / 2
    return (i <= j) & (centre >= lo) & (centre < hi)


def merge_candidates(cands: Sequence[Candidate], k: int, nms_iou: float) -> list[Candidate]:
    """Greedy temporal NMS over the candidates of every window, best score first: a span is
    dropped when its IoU (inclusive clip indices) with a kept span is greater than ``nms_iou``,
    the decoder's rule; the best ``k`` kept spans are returned."""
    kept: list[Candidate] = []
    for c in sorted(cands, key=lambda c: (-c.score, c.start, c.end)):
        if all(_iou(c, other) <= nms_iou for other in kept):
            kept.append(c)
            if len(kept) == k:
                break
    return kept


def _iou(a: Candidate, b: Candidate) -> float:
    inter = max(0, min(a.end, b.end) + 1 - max(a.start, b.start))
    union = (a.end - a.start + 1) + (b.end - b.start + 1) - inter
    return inter / union


def decode_windows(
    model: torch.nn.Module,
    feats: np.ndarray,
    words: np.ndarray,
    k: int,
    nms_iou: float,
    length: int,
    device: torch.device,
) -> WindowAnswer:
    """Top-``k`` spans of one query in a video of ``T > length`` clips, from overlapping
    windows (module docstring). The caller sets eval mode; inference runs without grad."""
    t = int(feats.shape[0])
    starts = window_starts(t, length)
    ranges = owned_ranges(starts, length)
    cands: list[Candidate] = []
    routes: list[int] = []
    probs: list[list[float] | None] = []
    for first in range(0, len(starts), WINDOW_BATCH):
        chunk = range(first, min(first + WINDOW_BATCH, len(starts)))
        items = [
            {
                "video": feats[starts[w] : starts[w] + length],
                "words": words,
                "start": 0.0,
                "end": 1.0,
                "duration": 1.0,
                "qid": "query",
                "vid": f"window{w}",
                "query": "",
            }
            for w in chunk
        ]
        allowed = torch.from_numpy(
            np.stack([ownership_mask(starts[w], length, *ranges[w]) for w in chunk])
        )
        batch = collate(items).to(device)
        with torch.inference_mode():
            out = forward(model, batch)
            start_logits, end_logits = out.start_logits.float(), out.end_logits.float()
            if not (torch.isfinite(start_logits).all() and torch.isfinite(end_logits).all()):
                raise DataError(
                    "the model's scores are not finite for these features: their values are "
                    "out of the range the model was trained on (e.g. 1e38); check the features"
                )
            top = topk_spans(
                start_logits, end_logits, batch.video_mask, k, nms_iou, allowed.to(device)
            )
            inner = torch.sigmoid(out.inner_logits.float())
        # mean of P_in over each span from cumulative sums: sum(i..j) = c[j+1] - c[i]
        cum = torch.nn.functional.pad(inner.cumsum(1), (1, 0)).cpu().numpy().astype(np.float64)
        s_idx, e_idx = top.start.cpu().numpy(), top.end.cpu().numpy()
        score, valid = top.score.cpu().numpy().astype(np.float64), top.valid.cpu().numpy()
        route = out.route.cpu().tolist() if out.route is not None else [NO_ROUTE] * len(chunk)
        rp = out.route_probs.float().cpu().tolist() if out.route_probs is not None else None
        for b, w in enumerate(chunk):
            routes.append(int(route[b]))
            probs.append(rp[b] if rp is not None else None)
            for n in range(s_idx.shape[1]):
                if not valid[b, n]:
                    continue
                i, j = int(s_idx[b, n]), int(e_idx[b, n])
                p_in = (cum[b, j + 1] - cum[b, i]) / (j - i + 1)
                cands.append(Candidate(starts[w] + i, starts[w] + j, float(score[b, n] * p_in), w))
    spans = merge_candidates(cands, k, nms_iou)
    best = spans[0].window if spans else 0
    return WindowAnswer(spans=spans, starts=starts, route=routes[best], route_probs=probs[best])
