"""Honest FLOP counts (oneDNN off for counting, LSTM cross-checked by hooks) and the top
operators of a step.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode


def count_flops(fn: Callable[[], Any]) -> tuple[int, dict[str, int]]:
    """FLOPs of one call, and per-module totals, with oneDNN and cuDNN off: their fused LSTM
    kernels are invisible to ``FlopCounterMode`` (it counts 0 for them), while the native LSTM
    decomposes into counted matmuls. (On CUDA with cuDNN on, a paper-shape step counted
    259 GFLOP instead of 420.)"""
    from dynpath.model import gemm

    with warnings.catch_warnings():
        # torch's mkldnn.flags() warns about TF32 on Intel GPUs whenever it is entered
        warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")
        with (
            gemm.backend("mkl"),  # oneDNN's linear is invisible to the counter as well
            torch.backends.mkldnn.flags(enabled=False),
            torch.backends.cudnn.flags(enabled=False),
            FlopCounterMode(display=False) as fc,
        ):
            fn()
    per_module = {
        name: int(sum(ops.values())) for name, ops in fc.get_flop_counts().items() if name
    }
    return int(fc.get_total_flops()), per_module


@contextlib.contextmanager
def lstm_work(model: nn.Module) -> Iterator[dict[str, int]]:
    """Analytic forward+backward FLOPs of every ``nn.LSTM`` call made inside the block.

    A forward hook sees the real input of each call (B*s subsequences of the MS-LSTM, the
    packed text batch), so the count is exact for what ran: 3 x 2*N*4H*(I+H) per layer and
    direction, N = time steps x sequences (padding included: the kernels compute it).
    """
    totals = {"flops": 0, "calls": 0}

    def hook(mod: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        assert isinstance(mod, nn.LSTM)
        x = args[0]
        if isinstance(x, torch.nn.utils.rnn.PackedSequence):
            steps = int(x.batch_sizes.sum())
        else:
            steps = int(x.shape[0] * x.shape[1])
        dirs = 2 if mod.bidirectional else 1
        for layer in range(mod.num_layers):
            inp = mod.input_size if layer == 0 else mod.hidden_size * dirs
            totals["flops"] += dirs * 3 * 2 * steps * 4 * mod.hidden_size * (inp + mod.hidden_size)
        totals["calls"] += 1

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.LSTM)]
    try:
        yield totals
    finally:
        for h in handles:
            h.remove()


class Float64Audit(TorchDispatchMode):
    """Counts the ops that produce a float64 tensor (the hot path must have none)."""

    def __init__(self) -> None:
        super().__init__()
        self.hits: dict[str, int] = {}

    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.dtype == torch.float64:
                self.hits[str(func)] = self.hits.get(str(func), 0) + 1
        return out


def top_operators(
    fn: Callable[[], Any], k: int = 12
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Where one call's time goes (torch.profiler: self CPU time, or self CUDA time when a GPU
    runs), and the LSTM kernels used."""
    from torch.profiler import ProfilerActivity, profile

    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        fn()
        if cuda:
            torch.cuda.synchronize()
    events = list(prof.key_averages())

    def self_us(e: Any) -> float:
        return float(e.self_device_time_total if cuda else e.self_cpu_time_total)

    rows = sorted(events, key=self_us, reverse=True)
    total = sum(self_us(e) for e in rows) or 1.0
    top = [
        {
            "op": e.key,
            "self_ms": self_us(e) / 1000.0,
            "share": self_us(e) / total,
            "calls": e.count,
            "clock": "cuda" if cuda else "cpu",
        }
        for e in rows[:k]
    ]
    counts = {e.key: e.count for e in events}
    kernels = {
        "aten::lstm calls": counts.get("aten::lstm", 0),
        "oneDNN layer calls (mkldnn_rnn_layer)": counts.get("aten::mkldnn_rnn_layer", 0),
        "cuDNN calls (_cudnn_rnn)": counts.get("aten::_cudnn_rnn", 0),
    }
    return top, kernels
