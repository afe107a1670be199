"""The ``inference`` and ``mslstm`` sections: per-variant latency and the batched vs looped
MS-LSTM ratio.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import torch

from dynpath.bench.inputs import VOCAB, bench_model, model_forward, random_batch
from dynpath.bench.timing import interleaved, median
from dynpath.config import ModelConfig
from dynpath.model.layers import Masks, MultiScaleLSTM
from dynpath.model.selection import DynamicSelection


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

    ``dynamic`` at batch ``throughput_batch`` is measured twice: with its selector as initialised
    ("natural": an untrained FC_3 may send every sample one way) and "balanced" (FC_3's bias
    shifted so half the batch takes each route, the realistic mix of a trained model).
    """
    single = random_batch(1, shape["clips"], shape["feature_dim"], shape["words"], VOCAB, 1)
    many = random_batch(
        throughput_batch, shape["clips"], shape["feature_dim"], shape["words"], VOCAB, 2
    )
    single, many = single.to(device), many.to(device)
    models = {
        a: bench_model(a, model_cfg, shape["feature_dim"], seed).to(device).eval() for a in archs
    }
    batch_models = dict(models)
    if "dynamic" in models:
        balanced = bench_model("dynamic", model_cfg, shape["feature_dim"], seed).to(device).eval()
        assert isinstance(balanced.fusion, DynamicSelection)
        with torch.inference_mode():
            masks = Masks.build(many.video_mask, many.word_mask, many.video.dtype)
            _, fs = balanced.text(many.words, masks)
            balanced.fusion.balance(fs)
        batch_models["dynamic[balanced]"] = balanced
    with torch.inference_mode():
        one = interleaved(
            {a: partial(model_forward, m, single) for a, m in models.items()},
            repeats * 5,
            2,
            device,
        )
        big = interleaved(
            {a: partial(model_forward, m, many) for a, m in batch_models.items()},
            max(2, repeats - 4),
            1,
            device,
        )
        routes = {a: model_forward(m, many).route for a, m in batch_models.items()}
    rows: dict[str, Any] = {}
    for a in batch_models:
        row: dict[str, Any] = {}
        if a in one:
            t1 = one[a]["wall"]
            row["p50_ms"] = float(np.percentile(t1, 50) * 1000)
            row["p95_ms"] = float(np.percentile(t1, 95) * 1000)
        r = routes[a]
        row.update(
            {
                "batch": throughput_batch,
                "batch_s": median(big[a]["wall"]),
                "queries_per_s": throughput_batch / median(big[a]["wall"]),
                "exploitation_share": float((r == 0).float().mean()) if r.ge(0).all() else None,
            }
        )
        rows[a] = row

    def per_round(a: str, b: str, t: dict[str, dict[str, list[float]]]) -> float:
        return median([x / y for x, y in zip(t[a]["wall"], t[b]["wall"], strict=True)])

    if {"dynamic", "soft_dynamic", "exploitation_only"} <= set(models):
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
