"""This machine's matmul peaks (every fp32 GEMM path, bf16 beside) and the fraction of them a
step reaches: the yardstick the training targets are stated against.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

from dynpath.bench.timing import interleaved, median

log = logging.getLogger(__name__)


class MatmulPeak:
    """Dense matmul throughput of this machine in ``dtype`` through one library: the roofline.

    ``path``: ``"mm"`` is ``torch.mm`` (MKL on CPU, cuBLAS on CUDA); ``"onednn"`` the same
    float32 product through oneDNN (``torch.ops.mkldnn._linear_pointwise``, CPU only). They
    differ by 2x on some CPUs (MKL takes its AVX2 path on AMD's AVX-512 parts), so the peak a
    step is judged against is the best of them (:func:`matmul_peaks`), never one library's.
    """

    #: products per sample: one product is short enough (~0.1 s) for a single hiccup to
    #: move a round's peak fraction by 20 points.
    PER_SAMPLE = 3

    def __init__(
        self,
        device: torch.device,
        n: int,
        dtype: torch.dtype = torch.float32,
        path: str = "mm",
    ) -> None:
        g = torch.Generator().manual_seed(0)
        self.a = torch.randn(n, n, generator=g).to(device, dtype)
        self.b = torch.randn(n, n, generator=g).to(device, dtype)
        self.bt = self.b.t().contiguous()  # [out, in]: the oneDNN linear's weight layout
        self.out = torch.empty(n, n, device=device, dtype=dtype)
        self.flops = self.PER_SAMPLE * 2 * n**3
        self.n = n
        self.dtype = dtype
        self.path = path
        self()  # warm the kernel and its buffers

    def __call__(self) -> torch.Tensor:
        for _ in range(self.PER_SAMPLE):
            if self.path == "onednn":
                self.out = torch.ops.mkldnn._linear_pointwise(self.a, self.bt, None, "none", [], "")
            else:
                torch.mm(self.a, self.b, out=self.out)
        return self.out

    def summary(self, times: dict[str, list[float]]) -> dict[str, Any]:
        return {
            "n": self.n,
            "dtype": str(self.dtype).removeprefix("torch."),
            "path": self.path,
            "gflops": self.flops / median(times["wall"]) / 1e9,
            "gflops_cpu_time": self.flops / median(times["cpu"]) / 1e9,
        }


def matmul_peaks(device: torch.device, n: int, repeats: int) -> tuple[MatmulPeak, dict[str, Any]]:
    """Every matmul path torch offers here, timed interleaved; the best float32 one is the peak.

    Rows: fp32 ``torch.mm``; fp32 oneDNN (CPU, when this torch has it); bf16 ``torch.mm``
    (reported beside, never the fp32 peak: a bf16 step is judged against it separately).
    """
    from dynpath.model.gemm import onednn_available

    rows: dict[str, MatmulPeak] = {"fp32_mm": MatmulPeak(device, n)}
    if device.type == "cpu" and onednn_available():
        rows["fp32_onednn"] = MatmulPeak(device, n, path="onednn")
    if device.type == "cpu" or torch.cuda.is_bf16_supported():
        rows["bf16_mm"] = MatmulPeak(device, n, torch.bfloat16)
    t = interleaved(dict(rows), repeats, 1, device)
    table = {k: m.summary(t[k]) for k, m in rows.items()}
    fp32 = [k for k in rows if k.startswith("fp32")]
    best = max(fp32, key=lambda k: table[k]["gflops"])
    summary = {
        "paths": table,
        "best_fp32": best,
        "best_fp32_gflops": table[best]["gflops"],
        "onednn_vs_mm": (
            table["fp32_onednn"]["gflops"] / table["fp32_mm"]["gflops"]
            if "fp32_onednn" in table
            else None
        ),
    }
    return rows[best], summary


def peak_fractions(
    flops: float, step_times: Sequence[float], peak: MatmulPeak, peak_times: Sequence[float]
) -> tuple[list[float], float]:
    """Per-round fraction of the peak, never above 1, and the largest raw fraction.

    A kernel faster than the "peak" means the peak was measured on a slower path than the
    machine has (or the round was disturbed): the peak is then raised to that kernel's figure
    (its fraction clipped to 1) with a warning, and the raw value is reported beside.
    """
    raw = [(flops / s) / (peak.flops / p) for s, p in zip(step_times, peak_times, strict=True)]
    top = max(raw, default=0.0)
    if top > 1.0:
        log.warning(
            "a measured step ran at %.0f%% of the %s %s matmul peak: the peak is too low, "
            "raised to that step's figure for the rounds above it",
            100 * top,
            peak.path,
            str(peak.dtype).removeprefix("torch."),
        )
    return [min(f, 1.0) for f in raw], top
