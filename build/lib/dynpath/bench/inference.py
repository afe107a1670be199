"""The ``inference`` and ``mslstm`` sections: per-variant latency and the batched vs looped
MS-LSTM ratio.

:func:`variant_latency` is dynpath's one measurement of per-variant model latency on synthetic
inputs (the model registry and this section once each had their own, with their own inputs and
their own "balanced" selector). Real queries of an evaluated split are timed by the evaluate step
(``dynpath.engine.evaluator.measure_latency``) through the same timing loop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch

from dynpath.bench.inputs import VOCAB, balance_routes, bench_model, model_forward, random_batch
from dynpath.bench.timing import interleaved, median
from dynpath.config import ModelConfig
from dynpath.data.batch import Batch
from dynpath.model.layers import Masks, MultiScaleLSTM
from dynpath.model.network import DynamicPathwayModel
from dynpath.model.output import NO_ROUTE, ModelOutput
from dynpath.model.selection import DynamicSelection


@dataclass(frozen=True)
class VariantTiming:
    """One row of :func:`variant_latency`: seconds of each timed forward and the routes taken."""

    wall: list[float]
    cpu: list[float]
    #: share of the batch the (last) forward routed to exploitation; None without a selector
    exploitation_share: float | None


def variant_models(
    archs: Sequence[str], model_cfg: ModelConfig, feature_dim: int, seed: int, device: torch.device
) -> dict[str, DynamicPathwayModel]:
    """The eval-mode models :func:`variant_latency` times, by arch (:func:`bench_model`)."""
    return {a: bench_model(a, model_cfg, feature_dim, seed).to(device).eval() for a in archs}


def variant_latency(
    archs: Sequence[str],
    model_cfg: ModelConfig,
    batch: Batch,
    *,
    seed: int,
    device: torch.device,
    repeats: int,
    warmup: int,
    balanced: bool,
    built: Mapping[str, DynamicPathwayModel] | None = None,
) -> dict[str, VariantTiming]:
    """Eval-mode forward seconds of each variant of ``archs`` on ``batch``, timed interleaved.

    ``batch`` comes from :func:`random_batch` (full-length videos, so a route group's length
    trimming saves nothing and the comparison isolates pathway selection). Every variant is built
    by :func:`bench_model` with ``seed``. With ``balanced``, each variant whose selection decides
    what is computed (``DynamicSelection``) gets a second row ``"<arch>[balanced]"``: the same
    weights with the selector shifted by :func:`balance_routes` to split ``batch`` evenly, beside
    the "natural" row (its selector as initialised, which may send every sample one way). Rows
    are keyed by arch, the balanced ones last; the route shares come from each row's last timed
    forward (eval mode: every forward routes alike). ``built`` holds models of ``archs`` already
    built this way (by :func:`variant_models`), so that timing one set of models at two batch
    sizes builds them once.
    """
    on_device = batch.to(device)
    feature_dim = int(batch.video.shape[-1])
    models = dict(built) if built is not None else {}
    models.update(
        variant_models([a for a in archs if a not in models], model_cfg, feature_dim, seed, device)
    )
    models = {a: models[a] for a in archs}
    if balanced:
        for a in archs:
            if isinstance(models[a].fusion, DynamicSelection):
                twin = bench_model(a, model_cfg, feature_dim, seed).to(device).eval()
                models[f"{a}[balanced]"] = balance_routes(twin, on_device)
    last: dict[str, ModelOutput] = {}

    def call(name: str, model: DynamicPathwayModel) -> None:
        last[name] = model_forward(model, on_device)

    with torch.inference_mode():
        times = interleaved(
            {name: partial(call, name, m) for name, m in models.items()}, repeats, warmup, device
        )
    rows = {}
    for name in models:
        route = last[name].route
        share = float((route == 0).float().mean()) if bool(route.ne(NO_ROUTE).all()) else None
        rows[name] = VariantTiming(times[name]["wall"], times[name]["cpu"], share)
    return rows


def inference_latency(
    archs: tuple[str, ...],
    model_cfg: ModelConfig,
    shape: dict[str, int],
    seed: int,
    device: torch.device,
    repeats: int,
    throughput_batch: int,
) -> dict[str, Any]:
    """p50/p95 of one query (batch 1) and batch throughput, per variant, eval mode, interleaved.

    Both are :func:`variant_latency`; at batch ``throughput_batch`` a ``dynamic`` variant is
    measured twice: "natural" (its selector as initialised) and ``dynamic[balanced]`` (half the
    batch takes each route, the realistic mix of a trained model).
    """

    def shaped(size: int, batch_seed: int) -> Batch:
        return random_batch(
            size, shape["clips"], shape["feature_dim"], shape["words"], VOCAB, batch_seed
        )

    built = variant_models(archs, model_cfg, shape["feature_dim"], seed, device)
    common: dict[str, Any] = {"seed": seed, "device": device, "built": built}
    one = variant_latency(
        archs, model_cfg, shaped(1, 1), **common, repeats=repeats * 5, warmup=2, balanced=False
    )
    big = variant_latency(
        archs,
        model_cfg,
        shaped(throughput_batch, 2),
        **common,
        repeats=max(2, repeats - 4),
        warmup=1,
        balanced=True,
    )
    rows: dict[str, Any] = {}
    for a, timing in big.items():
        row: dict[str, Any] = {}
        if a in one:
            t1 = one[a].wall
            row["p50_ms"] = float(np.percentile(t1, 50) * 1000)
            row["p95_ms"] = float(np.percentile(t1, 95) * 1000)
        row.update(
            {
                "batch": throughput_batch,
                "batch_s": median(timing.wall),
                "queries_per_s": throughput_batch / median(timing.wall),
                "exploitation_share": timing.exploitation_share,
            }
        )
        rows[a] = row

    def per_round(a: str, b: str, t: dict[str, VariantTiming]) -> float:
        return median([x / y for x, y in zip(t[a].wall, t[b].wall, strict=True)])

    if {"dynamic", "soft_dynamic", "exploitation_only"} <= set(archs):
        rows["ratios"] = {
            "dynamic_vs_soft_p50": rows["dynamic"]["p50_ms"] / rows["soft_dynamic"]["p50_ms"],
            "dynamic_vs_exploitation_p50": rows["dynamic"]["p50_ms"]
            / rows["exploitation_only"]["p50_ms"],
            "dynamic_vs_soft_per_round": per_round("dynamic", "soft_dynamic", one),
            "dynamic_vs_exploitation_per_round": per_round("dynamic", "exploitation_only", one),
            "batch_dynamic_balanced_vs_soft": per_round("dynamic[balanced]", "soft_dynamic", big),
            "batch_dynamic_balanced_vs_exploitation": per_round(
                "dynamic[balanced]", "exploitation_only", big
            ),
        }
    return rows


def mslstm_ratio(
    shape: dict[str, int], dim: int, scales: int, device: torch.device, repeats: int
) -> dict[str, Any]:
    """The batched MS-LSTM (one LSTM call per scale) against a Python loop over the subsets,
    on the same weights, in inference and in training (forward + backward)."""
    b, t = shape["batch"], shape["clips"]
    torch.manual_seed(0)
    block = MultiScaleLSTM(dim, scales, dropout=0.0).to(device)
    x = torch.randn(b, t, dim, device=device)
    xg = x.clone().requires_grad_()
    masks = Masks.build(
        torch.ones(b, t, dtype=torch.bool, device=device),
        torch.ones(b, 1, dtype=torch.bool, device=device),
        x.dtype,
    )

    def looped(inp: torch.Tensor) -> torch.Tensor:
        outs = []
        for s, lstm in zip(block.scales, block.lstms, strict=True):
            ys = inp.new_zeros(b, t, dim)
            for i in range(s):  # one LSTM call per subset: what the batched form replaces
                ys[:, i::s] = lstm(inp[:, i::s])[0]
            outs.append(ys)
        return masks.zero_pad(block.ffn(torch.cat(outs, -1)))

    with torch.no_grad():
        torch.testing.assert_close(looped(x), block(x, masks), atol=1e-4, rtol=1e-4)
    x1, masks1 = x[:1], masks.select(slice(0, 1), t)

    def looped1() -> torch.Tensor:
        outs = []
        for s, lstm in zip(block.scales, block.lstms, strict=True):
            ys = x1.new_zeros(1, t, dim)
            for i in range(s):
                ys[:, i::s] = lstm(x1[:, i::s])[0]
            outs.append(ys)
        return masks1.zero_pad(block.ffn(torch.cat(outs, -1)))

    with torch.inference_mode():
        t_inf = interleaved(
            {"batched": lambda: block(x, masks), "loop": lambda: looped(x)}, repeats, 1, device
        )
        t_one = interleaved(
            {"batched": lambda: block(x1, masks1), "loop": looped1}, repeats, 1, device
        )
    t_train = interleaved(
        {
            "batched": lambda: block(xg, masks).sum().backward(),
            "loop": lambda: looped(xg).sum().backward(),
        },
        repeats,
        1,
        device,
    )
    out: dict[str, Any] = {"shape": {"batch": b, "clips": t, "dim": dim, "scales": scales}}
    for name, tt in (("inference", t_inf), ("inference_batch1", t_one), ("training", t_train)):
        out[name] = {
            "batched_ms": 1000 * median(tt["batched"]["wall"]),
            "loop_ms": 1000 * median(tt["loop"]["wall"]),
            "speedup": median(
                [lo / ba for lo, ba in zip(tt["loop"]["wall"], tt["batched"]["wall"], strict=True)]
            ),
        }
    return out
