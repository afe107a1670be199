"""Inference over a split: top-k spans in seconds, metrics, per-route breakdown, controls, latency.

- :func:`predict` runs the model in eval mode over in-order batches and decodes top-k spans with
  temporal NMS (:mod:`dynpath.engine.decode`), mapped to seconds with
  :func:`dynpath.data.spans.indices_to_seconds` over each sample's unpadded T and duration.
- :func:`score` computes R@k / mIoU in seconds against the clipped ground truth
  (:mod:`dynpath.engine.metrics`); :func:`route_breakdown` does the same per selected pathway.
- The shuffled-video control (:func:`derangement`, :func:`resample_features`) scores every query
  against ANOTHER video of the same split: videos are permuted by a seeded derangement (no video
  keeps its own features), the partner's features are linearly resampled to the query's own T,
  and the query keeps its own ground truth, duration and masks. A model that really reads the
  video must collapse towards the length prior here; one that matches it exploits annotation
  priors instead.
- :func:`measure_latency` times batch-1 inference (forward + decoding) per query.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dynpath.data.batch import Batch
from dynpath.data.spans import indices_to_seconds
from dynpath.engine.decode import topk_spans
from dynpath.engine.metrics import localization_metrics, metric_keys
from dynpath.model.output import NO_ROUTE, ROUTE_NAMES, ModelOutput
from dynpath.timing import interleaved

BatchTransform = Callable[[Batch], Batch]


@dataclass
class Prediction:
    """One query's decoded spans (seconds, best first) and what the model routed it to."""

    qid: str
    vid: str
    query: str
    spans: list[list[float]]  # [[start, end, score], ...]
    route: int  # 0 exploitation, 1 exploration, -1 no selector
    gt: tuple[float, float]
    duration: float

    def to_json(self) -> dict[str, Any]:
        return {
            "qid": self.qid,
            "vid": self.vid,
            "query": self.query,
            "topk": self.spans,
            "route": ROUTE_NAMES[self.route] if self.route >= 0 else None,
            "gt": [self.gt[0], self.gt[1]],
            "duration": self.duration,
        }


def _autocast(
    device: torch.device, dtype: torch.dtype | None
) -> contextlib.AbstractContextManager[Any]:
    if dtype is None or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=dtype)


def forward(model: nn.Module, batch: Batch, amp_dtype: torch.dtype | None = None) -> ModelOutput:
    """One eval-mode forward pass (the caller moves ``batch`` to the model's device)."""
    with _autocast(batch.video.device, amp_dtype):
        out: ModelOutput = model(batch.video, batch.video_mask, batch.words, batch.word_mask)
    return out


@torch.no_grad()
def predict(
    model: nn.Module,
    batches: Iterable[Batch],
    device: torch.device | str,
    k: int = 5,
    nms_iou: float = 0.5,
    amp_dtype: torch.dtype | None = None,
    transform: BatchTransform | None = None,
) -> list[Prediction]:
    """Decode the top-``k`` spans of every query in ``batches`` (order preserved)."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    preds: list[Prediction] = []
    try:
        for batch in batches:
            if transform is not None:
                batch = transform(batch)
            b = batch.to(device, non_blocking=True)
            preds.extend(decode_batch(model, b, k, nms_iou, amp_dtype)[1])
    finally:
        model.train(was_training)
    return preds


def decode_batch(
    model: nn.Module,
    batch: Batch,
    k: int = 5,
    nms_iou: float = 0.5,
    amp_dtype: torch.dtype | None = None,
) -> tuple[ModelOutput, list[Prediction]]:
    """Forward + top-``k`` decoding (temporal NMS) + seconds of one batch already on the model's
    device; the model's raw output comes back too (route probabilities, for the Localizer).

    The one decoding path: evaluation (:func:`predict`) and user inference
    (:class:`dynpath.inference.localizer.Localizer`) both go through it, so a served model
    answers exactly what the evaluation scored. The caller sets eval mode and no-grad.
    """
    out = forward(model, batch, amp_dtype)
    top = topk_spans(out.start_logits.float(), out.end_logits.float(), batch.video_mask, k, nms_iou)
    return out, _to_predictions(batch, top.start, top.end, top.score, top.valid, out.route)


def _to_predictions(
    batch: Batch, start: Tensor, end: Tensor, score: Tensor, valid: Tensor, route: Tensor
) -> list[Prediction]:
    s_idx = start.cpu().numpy()
    e_idx = end.cpu().numpy()
    sc = score.float().cpu().numpy()
    ok = valid.cpu().numpy()
    n_pos = batch.num_positions.cpu().numpy()[:, None]
    dur = batch.durations.cpu().numpy().astype(np.float64)
    s_sec, e_sec = indices_to_seconds(s_idx, e_idx, dur[:, None], n_pos)
    routes = route.cpu().numpy() if route is not None else np.full(len(batch), NO_ROUTE)
    gts = batch.gt_seconds.cpu().numpy().astype(np.float64)
    out = []
    for i in range(len(batch)):
        spans = [
            [float(s_sec[i, j]), float(e_sec[i, j]), float(sc[i, j])]
            for j in range(s_idx.shape[1])
            if ok[i, j]
        ]
        out.append(
            Prediction(
                qid=batch.qids[i],
                vid=batch.vids[i],
                query=batch.queries[i],
                spans=spans,
                route=int(routes[i]),
                gt=(float(gts[i, 0]), float(gts[i, 1])),
                duration=float(dur[i]),
            )
        )
    return out


def _arrays(preds: Sequence[Prediction], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k spans [N, k, 2] (NaN where missing) and ground truth [N, 2]."""
    spans = np.full((len(preds), k, 2), np.nan)
    for i, p in enumerate(preds):
        for j, (s, e, _score) in enumerate(p.spans[:k]):
            spans[i, j] = (s, e)
    gts = np.array([p.gt for p in preds], dtype=np.float64).reshape(-1, 2)
    return spans, gts


def score(
    preds: Sequence[Prediction],
    ks: Sequence[int] = (1, 5),
    thresholds: Sequence[float] = (0.3, 0.5, 0.7),
) -> dict[str, float]:
    """R@k at each IoU threshold and mIoU (percent), in seconds."""
    spans, gts = _arrays(preds, max(ks))
    return localization_metrics(spans, gts, ks=ks, thresholds=thresholds)


def route_breakdown(
    preds: Sequence[Prediction],
    has_selector: bool,
    ks: Sequence[int] = (1, 5),
    thresholds: Sequence[float] = (0.3, 0.5, 0.7),
) -> dict[str, dict[str, Any]]:
    """Per pathway: ``share`` (fraction of queries, 0..1), ``n`` and its metrics; {} w/o selector.

    A route no query took reports share 0, n 0 and null metrics (there is nothing to measure).
    """
    if not has_selector:
        return {}
    total = max(len(preds), 1)
    out: dict[str, dict[str, Any]] = {}
    for idx, name in enumerate(ROUTE_NAMES):
        group = [p for p in preds if p.route == idx]
        entry: dict[str, Any] = {"share": len(group) / total, "n": len(group)}
        if group:
            entry.update(score(group, ks, thresholds))
        else:
            entry.update(dict.fromkeys(metric_keys(ks, thresholds)))
        out[name] = entry
    return out


# --------------------------------------------------------------------------- shuffled control


def derangement(vids: Sequence[str], seed: int) -> dict[str, str]:
    """A seeded permutation of the distinct videos with no fixed point (video -> partner).

    Built as a random cyclic shift: shuffle the videos, then map each to the next one in the
    shuffled order, which can never map a video to itself when there are at least two.
    """
    uniq = sorted(set(vids))
    if len(uniq) < 2:
        raise ValueError("the shuffled-video control needs at least two videos in the split")
    order = np.random.default_rng(seed).permutation(len(uniq))
    ring = [uniq[i] for i in order]
    return {ring[i]: ring[(i + 1) % len(ring)] for i in range(len(ring))}


def resample_features(features: Tensor, length: int) -> Tensor:
    """Linearly resample [T', D] features to [length, D] (identity when T' == length)."""
    if features.shape[0] == length:
        return features
    x = features.float().t().unsqueeze(0)  # [1, D, T']
    y = F.interpolate(x, size=length, mode="linear", align_corners=True)
    return y.squeeze(0).t().to(features.dtype)


def swap_videos(batch: Batch, partner_features: Callable[[str], Tensor]) -> Batch:
    """``batch`` with each sample's video replaced by its partner's features, resampled to its T.

    ``partner_features(vid)`` returns the [T', D] features that stand in for video ``vid``.
    Ground truth, durations, masks and T stay those of the query's own video.
    """
    video = torch.zeros_like(batch.video)
    for i, vid in enumerate(batch.vids):
        t = int(batch.num_positions[i])
        video[i, :t] = resample_features(partner_features(vid).to(video.dtype), t)
    return Batch(
        video=video,
        video_mask=batch.video_mask,
        words=batch.words,
        word_mask=batch.word_mask,
        start=batch.start,
        end=batch.end,
        inner=batch.inner,
        durations=batch.durations,
        gt_seconds=batch.gt_seconds,
        num_positions=batch.num_positions,
        qids=batch.qids,
        vids=batch.vids,
        queries=batch.queries,
    )


# --------------------------------------------------------------------------- latency


@torch.no_grad()
def measure_latency(
    model: nn.Module,
    batches: Iterable[Batch],
    device: torch.device | str,
    k: int = 5,
    nms_iou: float = 0.5,
    amp_dtype: torch.dtype | None = None,
    warmup: int = 3,
) -> dict[str, float]:
    """p50/p95 milliseconds per query of forward + decoding on batch-1 inputs already loaded.

    Feature loading is excluded (it is I/O, not the model); each timing synchronises CUDA.

    Separate from the benchmark's per-variant latency (``dynpath.bench.inference.
    variant_latency``) because it answers another question: how long the evaluated model takes on
    the split's own queries (their real lengths, decoding included), reported in metrics.json;
    the benchmark compares variants on identical synthetic batches. What they share is the timing
    loop (:func:`dynpath.timing.interleaved`); ``engine/`` sits below ``bench/`` and cannot use
    the benchmark's input builders, nor does it need them: its inputs are the dataset's.
    """
    device = torch.device(device)
    items = [b.to(device) for b in batches]
    if not items:
        return {"p50": float("nan"), "p95": float("nan"), "n": 0}
    # The warm-up queries run first, then every query once: one round-robin row whose call takes
    # the next query, so the timing loop (and its CUDA synchronisation) is dynpath.timing's.
    queue = iter(items[:warmup] + items)

    def next_query() -> None:
        b = next(queue)
        out = forward(model, b, amp_dtype)
        topk_spans(out.start_logits.float(), out.end_logits.float(), b.video_mask, k, nms_iou)

    was_training = model.training
    model.eval()
    try:
        timing = interleaved({"query": next_query}, len(items), len(items[:warmup]), device)
    finally:
        model.train(was_training)
    times = [t * 1000.0 for t in timing["query"]["wall"]]
    arr = np.asarray(times)
    return {
        "p50": float(np.percentile(arr, 50)),
        "p95": float(np.percentile(arr, 95)),
        "n": len(times),
    }
