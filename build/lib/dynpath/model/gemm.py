"""Which library runs the model's large float32 CPU GEMMs: MKL (torch's default) or oneDNN.

Why this exists: on some x86 CPUs torch's fp32 ``addmm``/``mm`` (MKL) is far from the machine's
peak. On the AMD EPYC development machine (AVX-512, AVX512_BF16) MKL takes its AVX2 code path:
at 2 threads an n=2048 ``torch.mm`` reaches ~200 GFLOP/s, the same product through oneDNN
(``torch.ops.mkldnn._linear_pointwise``, the kernel torch.compile's CPU backend emits) ~430
(docs/performance.md). PyTorch only sends fp32 matmuls to oneDNN in its reduced-precision
modes, so the plain float32 path needs asking for explicitly.

What it changes: the dense layers that carry most of a step's GEMM FLOPs (the FFNs, the
attention projections, the fused temporal convolution) call :func:`linear` / :func:`addmm_into`
here. With the ``onednn`` backend their forward product and their input-gradient product run
through oneDNN; the weight gradient (a product of two activations' transposes) stays on
``torch.mm``. The result is the same float32 function up to summation order: nothing is
rounded to a lower precision (``tests/test_model_gemm.py`` compares outputs and gradients).
Parameters and checkpoints are untouched: only the kernel differs.

How the backend is chosen: ``train.gemm`` in the params (``auto``, ``mkl``, ``onednn``). ``auto``
is a capability check, never a timing, so two runs on one machine always take the same kernels
(exact resume and determinism depend on it): oneDNN when the CPU is not Intel and has AVX-512
(MKL's fast paths are Intel-only there), MKL otherwise. ``dynpath bench`` measures both.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dynpath.errors import DynpathError

BACKENDS = ("auto", "mkl", "onednn")

_state = {"backend": "mkl"}


def onednn_available() -> bool:
    """Whether this torch build has oneDNN and its fp32 linear operator."""
    return bool(torch.backends.mkldnn.is_available()) and hasattr(
        torch.ops.mkldnn, "_linear_pointwise"
    )


@functools.cache
def cpu_info() -> dict[str, Any]:
    """Vendor, model name and the SIMD flags of /proc/cpuinfo that decide the GEMM paths."""
    info: dict[str, Any] = {"vendor": "", "model": "", "flags": []}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key == "vendor_id" and not info["vendor"]:
                info["vendor"] = value
            elif key == "model name" and not info["model"]:
                info["model"] = value
            elif key == "flags" and not info["flags"]:
                interesting = ("avx", "fma", "amx", "sse4", "f16c")
                info["flags"] = sorted(f for f in value.split() if f.startswith(interesting))
    with contextlib.suppress(Exception):
        info["torch_capability"] = torch.backends.cpu.get_cpu_capability()
    return info


def auto_backend() -> str:
    """The capability check behind ``auto`` (deterministic on a given machine)."""
    info = cpu_info()
    avx512 = "avx512f" in info["flags"]
    if onednn_available() and avx512 and info["vendor"] not in ("", "GenuineIntel"):
        return "onednn"
    return "mkl"


def resolve(name: str) -> str:
    """``auto`` -> a concrete backend; an unknown name or an unavailable oneDNN is an error."""
    if name not in BACKENDS:
        raise DynpathError(f"train.gemm: {name!r} is not one of {', '.join(BACKENDS)}")
    if name == "auto":
        return auto_backend()
    if name == "onednn" and not onednn_available():
        raise DynpathError(
            "train.gemm: 'onednn' asked for, but this torch build has no oneDNN linear "
            "operator (torch.ops.mkldnn._linear_pointwise); use 'auto' or 'mkl'"
        )
    return name


def set_backend(name: str) -> str:
    """Select the process-wide backend (``auto`` resolved); returns the concrete one."""
    _state["backend"] = resolve(name)
    return _state["backend"]


def get_backend() -> str:
    return _state["backend"]


@contextlib.contextmanager
def backend(name: str) -> Iterator[str]:
    """The backend ``name`` inside the block (the bench's FLOP count needs MKL: oneDNN's linear
    is invisible to ``FlopCounterMode``)."""
    old = _state["backend"]
    try:
        yield set_backend(name)
    finally:
        _state["backend"] = old


def _use_onednn(x: Tensor) -> bool:
    return (
        _state["backend"] == "onednn"
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
    )


def _lp(x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    """x @ w.T + b through oneDNN (fp32 in, fp32 accumulate, fp32 out)."""
    return cast(Tensor, torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], ""))


class _OneDNNLinear(torch.autograd.Function):
    """F.linear with the forward and the input-gradient GEMMs on oneDNN."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        return _lp(x, w, b)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, w = ctx.saved_tensors
        g2 = grad.reshape(-1, grad.shape[-1])
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = _lp(grad, w.t(), None)  # grad @ w
        if ctx.needs_input_grad[1]:
            gw = g2.t() @ x.reshape(-1, x.shape[-1])
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = g2.sum(0)
        return gx, gw, gb


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear`` on the selected backend."""
    if _use_onednn(x):
        return cast(Tensor, _OneDNNLinear.apply(x, weight, bias))
    return F.linear(x, weight, bias)


def addmm_into(out: Tensor, bias: Tensor | None, a: Tensor, w: Tensor) -> None:
    """``out = bias + a @ w.T`` (``out`` may be a column block of a larger matrix), no autograd:
    for the fused temporal convolution's own autograd function."""
    if _use_onednn(a):
        out.copy_(_lp(a, w, bias))
    elif bias is None:
        torch.mm(a, w.t(), out=out)
    else:
        torch.addmm(bias, a, w.t(), out=out)


def addmm_acc(out: Tensor, a: Tensor, b: Tensor) -> None:
    """``out += a @ b`` in place (``out`` may be a column block), no autograd."""
    if _use_onednn(a):
        out.add_(_lp(a, b.t(), None))
    else:
        torch.addmm(out, a, b, out=out)


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, same state dict) whose product runs on the backend."""

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias)
