"""`dynpath bench`: how fast dynpath does its job, against the hardware and the alternatives.

A benchmark, not a test: every figure is measured in this one process and written to one JSON
plus a short table, with pass/fail against the targets of the performance issue. How to read
and reproduce it: ``docs/performance.md``.

Measurement rules (each one is there because the obvious way gave wrong numbers on a shared,
loaded 2-core machine):

- **Interleaved repeats.** Rows that are compared (variants, batched vs looped, step vs matmul
  peak) are timed A, B, C, A, B, C, ... so a change in machine load hits all of them alike, and
  ratios are taken per round before the median.
- **The matmul peak is sampled next to every training step**, with the same thread count, and
  the peak fraction is the median of the per-round fractions.
- **Wall and CPU time both.** Targets use wall time; the process CPU time is recorded too
  because it is what a loaded machine cannot distort (a descheduled process accrues none).
- **FLOPs are counted honestly.** ``FlopCounterMode`` counts nothing inside oneDNN's fused LSTM
  on CPU, so the counting pass runs with oneDNN switched off (the LSTM then decomposes into
  counted matmuls) while the timed passes use the default fast kernels. The LSTM part is
  cross-checked against ``3 x 2*N*4H*(I+H)`` per layer and direction (forward + 2x backward)
  from the sequences each LSTM actually received (forward hooks). The temporal convolution is
  counted as the sum over its real kernels (3+5+7+9 taps), never as a zero-padded kernel 9.
- **The real training step.** The timed step is ``Trainer._train_step`` (fused Adam, clipping,
  LR schedule, the trainer's determinism flags), not a re-implementation of it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

from dynpath.config import Config, ModelConfig
from dynpath.data.batch import Batch
from dynpath.device import resolve_device
from dynpath.io import write_json
from dynpath.model.layers import Masks, MultiScaleLSTM
from dynpath.model.loss import localization_loss
from dynpath.model.output import ModelOutput
from dynpath.model.registry import build_model, count_parameters
from dynpath.model.selection import DynamicSelection

log = logging.getLogger(__name__)

#: Targets of the performance issue (ratios are dynamic / other).
TARGETS = {
    "dynamic_vs_soft_latency_max": 0.55,
    "dynamic_vs_exploitation_latency_max": 1.15,
    "loader_share_max": 0.05,
    "train_peak_fraction_min": 0.65,
    "dvc_noop_seconds_max": 5.0,
    # GPU targets (issue 17; one H100/H200-class GPU)
    "gpu_dynamic_samples_per_s_min": 500.0,
    "gpu_ablation_hours_max": 4.0,
    "gpu_extraction_hours_max": 1.0,
}

#: Peers' training-step peak fractions at the paper's shape, as stated in the performance issue
#: (their code is not part of this project, so they are quoted, not measured).
PEERS_REPORTED = {
    "EAMAT (predecessor, 3 runs)": "55-69%",
    "VSLNet d=512": "55-67%",
    "bare nn.LSTM(512, 512), oneDNN": "~85%",
    "bare nn.LSTM(512, 512), non-oneDNN": "~45%",
}

PAPER_SHAPE = {"batch": 16, "clips": 128, "feature_dim": 1024, "words": 20}
VOCAB = 1000

# --quick: the same code paths on tiny shapes (a smoke test of the benchmark, not its figures).
QUICK_SHAPE = {"batch": 4, "clips": 16, "feature_dim": 64, "words": 6}
QUICK_MODEL = {"dim": 32, "heads": 4, "text_lstm_layers": 1}


# --------------------------------------------------------------------------- timing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    _sync(device)
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    _sync(device)
    return time.perf_counter() - w0, time.process_time() - c0


def interleaved(
    rows: dict[str, Callable[[], Any]], repeats: int, warmup: int, device: torch.device
) -> dict[str, dict[str, list[float]]]:
    """Wall/CPU seconds of each row, timed round-robin (A, B, C, A, B, C, ...)."""
    out: dict[str, dict[str, list[float]]] = {k: {"wall": [], "cpu": []} for k in rows}
    for i in range(warmup + repeats):
        for name, fn in rows.items():
            wall, cpu = _timed(fn, device)
            if i >= warmup:
                out[name]["wall"].append(wall)
                out[name]["cpu"].append(cpu)
    return out


def _median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


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
            "gflops": self.flops / _median(times["wall"]) / 1e9,
            "gflops_cpu_time": self.flops / _median(times["cpu"]) / 1e9,
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


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    old = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@contextlib.contextmanager
def _trainer_determinism(device: torch.device) -> Iterator[None]:
    """The flags ``Trainer.fit`` trains under (restored afterwards)."""
    from dynpath.engine.trainer import configure_determinism

    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    fill = torch.utils.deterministic.fill_uninitialized_memory  # type: ignore[attr-defined]
    configure_determinism(device)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.utils.deterministic.fill_uninitialized_memory = fill  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- inputs and models


def random_batch(
    batch: int, clips: int, feature_dim: int, words: int, vocab: int, seed: int
) -> Batch:
    """A full-length random batch with valid labels (the paper's shape by default).

    Videos are full length (the timing must not depend on how a random batch happens to pad);
    query lengths vary between ``words // 2`` and ``words`` as real queries do, so the text
    encoder's packed path is exercised as in training.
    """
    g = torch.Generator().manual_seed(seed)
    start = torch.randint(0, clips // 2, (batch,), generator=g)
    end = start + torch.randint(1, clips // 2, (batch,), generator=g)
    pos = torch.arange(clips)
    inner = ((pos >= start[:, None]) & (pos <= end[:, None])).float()
    n_words = torch.randint(max(1, words // 2), words + 1, (batch,), generator=g)
    n_words[0] = words
    word_mask = torch.arange(words)[None, :] < n_words[:, None]
    ids = torch.randint(2, vocab, (batch, words), generator=g).masked_fill(~word_mask, 0)
    dur = torch.full((batch,), 30.0)
    return Batch(
        video=torch.randn(batch, clips, feature_dim, generator=g),
        video_mask=torch.ones(batch, clips, dtype=torch.bool),
        words=ids,
        word_mask=word_mask,
        start=start,
        end=end,
        inner=inner,
        durations=dur,
        gt_seconds=torch.stack([start * 30.0 / clips, (end + 1) * 30.0 / clips], 1),
        num_positions=torch.full((batch,), clips),
        qids=[str(i) for i in range(batch)],
        vids=[str(i) for i in range(batch)],
        queries=["" for _ in range(batch)],
    )


def _model(arch: str, model_cfg: ModelConfig, feature_dim: int, seed: int) -> Any:
    torch.manual_seed(seed)
    emb = np.random.default_rng(seed).standard_normal((VOCAB, 300)).astype(np.float32)
    emb[0] = 0.0
    return build_model(arch, Config(model=model_cfg), emb, feature_dim)


def _forward(model: Any, batch: Batch) -> ModelOutput:
    out: ModelOutput = model(batch.video, batch.video_mask, batch.words, batch.word_mask)
    return out


def trainer_step(
    model: nn.Module, cfg: Config, device: torch.device, batch: Batch, out_dir: Path
) -> tuple[Callable[[], Any], Any]:
    """The trainer's own step (``Trainer._train_step``) on ``batch``, and the trainer."""
    from dynpath.engine.trainer import Trainer
    from dynpath.steps.train import train_options

    options = train_options(cfg, epochs=1, batch_size=len(batch), compile=False, progress=False)

    def loss_fn(out: ModelOutput, batch: Batch) -> tuple[torch.Tensor, Mapping[str, Any]]:
        return localization_loss(out, batch, cfg.train.lambda_bound, cfg.train.lambda_inner)

    trainer = Trainer(
        model,
        loss_fn,
        num_train=10**6,  # a long schedule: the LR stays ~constant over the timed steps
        loader_fn=lambda indices, size: [],
        validate=lambda m: {},
        options=options,
        out_dir=out_dir,
        meta={},
        device=device,
    )
    on_device = batch.to(device)
    return (lambda: trainer._train_step(on_device)), trainer


# --------------------------------------------------------------------------- FLOPs


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


class _Float64Audit(TorchDispatchMode):
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


# --------------------------------------------------------------------------- sections


def _other_gemm(current: str, device: torch.device, amp: torch.dtype | None) -> str | None:
    """The GEMM library the trainer did not pick, when the step could run on it (CPU fp32)."""
    from dynpath.model.gemm import onednn_available

    if device.type != "cpu" or amp is not None or not onednn_available():
        return None
    return "mkl" if current == "onednn" else "onednn"


def _step_on(backend: str, step: Callable[[], Any]) -> Any:
    from dynpath.model import gemm

    with gemm.backend(backend):
        return step()


def train_throughput(
    arch: str,
    model_cfg: ModelConfig,
    shape: dict[str, int],
    cfg: Config,
    device: torch.device,
    repeats: int,
    peak: MatmulPeak,
    detail: bool,
) -> dict[str, Any]:
    """Samples/s of the trainer's step, its FLOPs and their fraction of the matmul peak."""
    model = _model(arch, model_cfg, shape["feature_dim"], cfg.seed)
    batch = random_batch(
        shape["batch"], shape["clips"], shape["feature_dim"], shape["words"], VOCAB, cfg.seed
    )
    with tempfile.TemporaryDirectory() as tmp:
        step, trainer = trainer_step(model, cfg, device, batch, Path(tmp))
        with lstm_work(model) as lstm:
            flops, per_module = count_flops(step)
        lstm_names = {n for n, m in model.named_modules() if isinstance(m, nn.LSTM)}
        lstm_counted = sum(
            v for name, v in per_module.items() if name.split(".", 1)[-1] in lstm_names
        )
        peak_rows = peak
        if trainer.amp_dtype is not None:  # the step runs its matmuls in bf16/fp16
            peak_rows = MatmulPeak(device, peak.n, trainer.amp_dtype)
        rows: dict[str, Callable[[], Any]] = {"peak": peak_rows, "step": step}
        other = _other_gemm(trainer.gemm, device, trainer.amp_dtype) if detail else None
        if other is not None:  # the same step on the other GEMM library: before/after
            rows[f"step[{other}]"] = partial(_step_on, other, step)
        with _trainer_determinism(device):
            t = interleaved(rows, repeats, 1, device)
            out: dict[str, Any] = {}
            if detail:
                out["top_operators"], out["lstm_kernels"] = top_operators(step)
                audit = _Float64Audit()
                with audit:
                    step()
                out["float64_ops"] = audit.hits
    wall, cpu = t["step"]["wall"], t["step"]["cpu"]
    fractions, raw_max = peak_fractions(flops, wall, peak_rows, t["peak"]["wall"])
    fractions_cpu, _ = peak_fractions(flops, cpu, peak_rows, t["peak"]["cpu"])
    med = _median(wall)
    if other is not None:
        alt = t[f"step[{other}]"]["wall"]
        alt_fr, _ = peak_fractions(flops, alt, peak_rows, t["peak"]["wall"])
        out["gemm_paths"] = {
            trainer.gemm: {"step_s": med, "peak_fraction": _median(fractions)},
            other: {"step_s": _median(alt), "peak_fraction": _median(alt_fr)},
            f"speedup_{trainer.gemm}_vs_{other}": _median(
                [a / s for a, s in zip(alt, wall, strict=True)]
            ),
        }
    return {
        "arch": arch,
        "shape": shape,
        "model": {
            "dim": model_cfg.dim,
            "heads": model_cfg.heads,
            "lstm_scales": model_cfg.lstm_scales,
            "kernels": list(model_cfg.kernels),
            "text_lstm_layers": model_cfg.text_lstm_layers,
            "dropout": model_cfg.dropout,
        },
        "parameters": count_parameters(model),
        "precision": str(trainer.amp_dtype or torch.float32).removeprefix("torch."),
        "gemm": trainer.gemm,
        "step_s": med,
        "step_s_all": wall,
        "step_cpu_s": _median(cpu),
        "samples_per_s": shape["batch"] / med,
        "flops_per_step": flops,
        "lstm_flops_counted": lstm_counted,
        "lstm_flops_analytic": lstm["flops"],
        "achieved_gflops": flops / med / 1e9,
        "matmul_peak": peak_rows.summary(t["peak"]),
        "peak_fraction": _median(fractions),
        "peak_fraction_all": fractions,
        "peak_fraction_of_medians": (flops / med) / (peak_rows.flops / _median(t["peak"]["wall"])),
        "peak_fraction_cpu_time": _median(fractions_cpu),
        "peak_fraction_raw_max": raw_max,
        **out,
    }


def lstm_peer(
    shape: dict[str, int], dim: int, device: torch.device, repeats: int, peak: MatmulPeak
) -> dict[str, Any]:
    """A bare nn.LSTM(d, d) training step (forward + backward) at the paper's shape, with and
    without oneDNN: the ceiling the model's LSTMs can reach on this machine."""
    torch.manual_seed(0)
    lstm = nn.LSTM(dim, dim, batch_first=True).to(device)
    x = torch.randn(shape["batch"], shape["clips"], dim, device=device, requires_grad=True)
    flops = 3 * 2 * shape["batch"] * shape["clips"] * 4 * dim * 2 * dim

    def step() -> None:
        lstm(x)[0].sum().backward()

    def native() -> None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")
            with torch.backends.mkldnn.flags(enabled=False):
                step()

    t = interleaved({"peak": peak, "onednn": step, "native": native}, repeats, 1, device)
    out: dict[str, Any] = {"flops": flops}
    for k in ("onednn", "native"):
        fr, raw_max = peak_fractions(flops, t[k]["wall"], peak, t["peak"]["wall"])
        out[k] = {
            "step_ms": 1000 * _median(t[k]["wall"]),
            "peak_fraction": _median(fr),
            "peak_fraction_raw_max": raw_max,
        }
    return out


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
    models = {a: _model(a, model_cfg, shape["feature_dim"], seed).to(device).eval() for a in archs}
    batch_models = dict(models)
    if "dynamic" in models:
        balanced = _model("dynamic", model_cfg, shape["feature_dim"], seed).to(device).eval()
        assert isinstance(balanced.fusion, DynamicSelection)
        with torch.inference_mode():
            masks = Masks.build(many.video_mask, many.word_mask, many.video.dtype)
            _, fs = balanced.text(many.words, masks)
            balanced.fusion.balance(fs)
        batch_models["dynamic[balanced]"] = balanced
    with torch.inference_mode():
        one = interleaved(
            {a: partial(_forward, m, single) for a, m in models.items()},
            repeats * 5,
            2,
            device,
        )
        big = interleaved(
            {a: partial(_forward, m, many) for a, m in batch_models.items()},
            max(2, repeats - 4),
            1,
            device,
        )
        routes = {a: _forward(m, many).route for a, m in batch_models.items()}
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
                "batch_s": _median(big[a]["wall"]),
                "queries_per_s": throughput_batch / _median(big[a]["wall"]),
                "exploitation_share": float((r == 0).float().mean()) if r.ge(0).all() else None,
            }
        )
        rows[a] = row

    def per_round(a: str, b: str, t: dict[str, dict[str, list[float]]]) -> float:
        return _median([x / y for x, y in zip(t[a]["wall"], t[b]["wall"], strict=True)])

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
            "batched_ms": 1000 * _median(tt["batched"]["wall"]),
            "loop_ms": 1000 * _median(tt["loop"]["wall"]),
            "speedup": _median(
                [lo / ba for lo, ba in zip(tt["loop"]["wall"], tt["batched"]["wall"], strict=True)]
            ),
        }
    return out


def data_loading(
    cfg: Config, device: torch.device, repeats: int, quick: bool, peak: MatmulPeak
) -> dict[str, Any]:
    """HDF5 read throughput, and the data loader's share of a default-profile training step.

    The loader is the training step's own (``make_loader``: MomentDataset + collate, the
    profile's workers and batch size) over a synthetic feature store of realistic size; its
    time per batch is measured on the first epoch (HDF5 reads) and on a later one (the feature
    cache warm, as in every epoch after the first).
    """
    from dynpath.data.dataset import collate, make_loader
    from dynpath.data.features import FeatureStore, write_features
    from dynpath.data.types import Moment
    from dynpath.data.vocab import PAD, UNK, Vocabulary
    from dynpath.extract.backbones import get_backbone

    rng = np.random.default_rng(cfg.seed)
    dim = 64 if quick else get_backbone(cfg.extract.backbone).dim  # the profile's features
    n_videos = 16 if quick else 200
    t_raw = 3 * cfg.data.max_len // 2
    with tempfile.TemporaryDirectory() as tmp:
        h5 = Path(tmp) / "features.h5"
        feats = {
            f"v{i:04d}": rng.standard_normal((t_raw, dim)).astype(np.float32)
            for i in range(n_videos)
        }
        attrs = {
            "backbone": "bench",
            "dim": dim,
            "fps": 8.0,
            "window": 16,
            "stride": 16,
            "pretrained": False,
            "weights": "none",
        }
        write_features(h5, feats, attrs)
        nbytes = sum(f.nbytes for f in feats.values())
        t0 = time.perf_counter()
        with FeatureStore(h5) as store:
            for vid in store.keys():  # noqa: SIM118 (FeatureStore has no __iter__)
                store.read(vid)
        read_s = time.perf_counter() - t0
        words = [PAD, UNK, "the", "red", "circle", "moves", "left", "then", "grows"]
        vocab = Vocabulary(words, embeddings=np.zeros((len(words), 300), np.float32))
        moments = [
            Moment(
                f"q{i}",
                f"v{i % n_videos:04d}",
                "the red circle moves left then grows",
                2.0,
                9.0,
                30.0,
                "train",
            )
            for i in range(4 * n_videos)
        ]
        bench_cfg = cfg.model_copy(
            update={"data": cfg.data.model_copy(update={"features": str(h5)})}
        )
        bs = cfg.train.batch_size
        loader = make_loader(moments, bench_cfg, vocab, shuffle=True, seed=cfg.seed, batch_size=bs)

        def epoch() -> float:
            t0 = time.perf_counter()
            n = 0
            for _ in loader:
                n += 1
            return (time.perf_counter() - t0) / max(n, 1)

        first = epoch()  # cold feature cache: every video read from HDF5 once
        warm = _median([epoch() for _ in range(2)])
        items = [loader.dataset[i] for i in range(min(bs, len(moments)))]
        collate_s = _median(interleaved({"c": lambda: collate(items)}, 5, 1, device)["c"]["wall"])
    model_cfg = cfg.model
    shape = {"batch": bs, "clips": cfg.data.max_len, "feature_dim": dim, "words": 10}
    train = train_throughput("dynamic", model_cfg, shape, cfg, device, repeats, peak, False)
    step_s = train["step_s"]
    return {
        "videos": n_videos,
        "hdf5_read_mb_per_s": nbytes / read_s / 1e6,
        "loader_batch_ms_first_epoch": first * 1000,
        "loader_batch_ms": warm * 1000,
        "collate_ms": collate_s * 1000,
        "train_step_ms": step_s * 1000,
        "loader_share_first_epoch": first / (first + step_s),
        "loader_share": warm / (warm + step_s),
        "train_default": train,
    }


def extraction(cfg: Config, device: torch.device, repeats: int, quick: bool) -> dict[str, Any]:
    """Clips/s of each backbone through the extractor's own batch path (``run_clips``: uint8
    frames -> normalisation -> network, in the precision the extractor picks), at the backbone's
    default resolution and at the profile's ``extract.size``."""
    from dynpath.extract.backbones import BACKBONES, build_backbone
    from dynpath.extract.extractor import ClipFeatureExtractor

    rows: dict[str, Any] = {}
    batch = 2 if quick else cfg.extract.batch_size
    rng = np.random.default_rng(0)
    for name in BACKBONES.names():
        spec = BACKBONES.get(name)
        sizes = [cfg.extract.size] if quick else sorted({spec.default_size, cfg.extract.size})
        extractor = ClipFeatureExtractor(
            build_backbone(name, None, cfg.seed), cfg.extract, device=device
        )
        for size in sizes:
            window = 8 if quick else cfg.extract.window
            clips = [
                rng.integers(0, 256, (window, size, size, 3), dtype=np.uint8) for _ in range(batch)
            ]
            t = interleaved({"x": partial(extractor.run_clips, clips)}, repeats, 1, device)
            wall = _median(t["x"]["wall"])
            rows[f"{name}@{size}"] = {
                "batch": batch,
                "window": window,
                "precision": extractor.precision,
                "default_size": size == spec.default_size,
                "clips_per_s": batch / wall,
            }
    return rows


#: Charades-STA as the paper uses it (annotation files of the TALL release, charades.json):
#: queries and videos per split after the reader's checks, and the video durations' range/mean.
CHARADES_COUNTS = {"train": (12404, 5338), "test": (3720, 1334)}
CHARADES_DURATION = {"min": 5.5, "max": 194.3, "mean": 30.6}
#: The ten-variant ablation: variants not timed take the rate of the timed architecture that
#: computes the same pathways in training (an approximation, stated in the JSON).
ABLATION_RATE_OF = {
    "dynamic": "dynamic",
    "soft_dynamic": "soft_dynamic",
    "network_parallel": "soft_dynamic",
    "sum_fusion": "soft_dynamic",
    "multiply_fusion": "soft_dynamic",
    "concat_fusion": "soft_dynamic",
    "exploitation_only": "exploitation_only",
    "exploration_only": "exploitation_only",
    "exploitation_wo_lml": "exploitation_only",
    "exploration_wo_te": "exploitation_only",
}


def charades_moments(root: Path, seed: int) -> tuple[dict[str, list[Any]], str]:
    """Charades-STA's train/test moments: the real annotation files when ``root`` holds them,
    otherwise a generated list with the same counts (queries, videos per split) and a
    log-normal duration distribution with the real mean and range."""
    from dynpath.data.annotations import read_charades_sta
    from dynpath.data.types import Moment

    if (root / "charades_sta_train.txt").is_file() and (root / "charades_sta_test.txt").is_file():
        splits, _ = read_charades_sta(root)
        return {k: list(splits[k]) for k in ("train", "test")}, f"real annotations in {root}"
    rng = np.random.default_rng(seed)
    sigma = 0.45
    mu = math.log(CHARADES_DURATION["mean"]) - sigma**2 / 2
    words = ["person", "opens", "the", "door", "takes", "a", "book", "sits", "on", "chair"]
    out: dict[str, list[Any]] = {}
    for split, (n_queries, n_videos) in CHARADES_COUNTS.items():
        dur = np.clip(
            rng.lognormal(mu, sigma, n_videos), CHARADES_DURATION["min"], CHARADES_DURATION["max"]
        )
        moments = []
        for i in range(n_queries):
            v = i % n_videos
            length = float(min(dur[v], max(1.0, rng.gamma(4.0, 2.0))))  # Charades: ~8 s mean
            start = float(rng.uniform(0, dur[v] - length))
            query = " ".join(rng.choice(words, int(rng.integers(4, 13))))
            moments.append(
                Moment(
                    f"{split}{i}",
                    f"{split}v{v:05d}",
                    query,
                    start,
                    start + length,
                    float(dur[v]),
                    split,
                )
            )
        out[split] = moments
    return out, f"generated (no charades_sta_*.txt under {root})"


def charades_workload(
    cfg: Config,
    device: torch.device,
    scale: float,
    model_cfg: ModelConfig,
    feature_dim: int = 1024,
    archs: Sequence[str] = ("dynamic", "soft_dynamic", "exploitation_only"),
    peak: MatmulPeak | None = None,
) -> dict[str, Any]:
    """Training and evaluation at Charades-STA's real shape, on ``device``.

    The moments are Charades-STA's (:func:`charades_moments`); each video gets I3D-shaped
    features (``feature_dim`` wide, one clip per ``extract.stride`` frames at
    ``extract.frame_rate``, 24 fps when unset, as the charades_sta profile extracts) written to
    a real HDF5 store and read by the training loader (``make_loader``: resampling to
    ``data.max_len``, padding per batch), so batches have the real length mix. ``scale`` is the
    fraction of one epoch timed per architecture (at least 2 steps after 1 warm-up step): 1.0
    times a whole epoch, 0.01 runs in seconds at small widths (the tests).

    Reported per architecture: training samples/s (the trainer's step, its precision and
    kernels), loader share, peak memory (device memory on CUDA; the process's max RSS on CPU,
    a high-water mark over the whole process), FLOPs per sample (counted on the first batch) and
    the fraction of the matmul peak measured in this run; evaluation queries/s (forward, eval
    batch) for the first architecture; and the projected wall time of the ten-variant ablation
    (``train.epochs`` epochs, one seed each).
    """
    import resource

    from dynpath.data.dataset import make_loader
    from dynpath.data.features import write_features
    from dynpath.data.vocab import PAD, UNK, Vocabulary, tokenize

    splits, source = charades_moments(Path(cfg.data.root), cfg.seed)
    bs = PAPER_SHAPE["batch"]
    steps_per_epoch = math.ceil(len(splits["train"]) / bs)
    steps = max(2, round(scale * steps_per_epoch))
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(splits["train"]))[: (steps + 1) * bs]
    train = [splits["train"][i] for i in order]
    n_eval = max(cfg.eval.batch_size, round(scale * len(splits["test"])))
    test = splits["test"][:n_eval]
    fps = cfg.extract.frame_rate or 24.0
    stride = cfg.extract.stride
    durations = {m.vid: m.duration for m in train + test}
    lengths = {v: max(1, int(d * fps) // stride) for v, d in durations.items()}
    vocab_words = sorted({w for m in train + test for w in tokenize(m.query)})
    vocab = Vocabulary([PAD, UNK, *vocab_words])
    emb = np.random.default_rng(cfg.seed).standard_normal((len(vocab), 300)).astype(np.float32)
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        h5 = Path(tmp) / "charades_i3d.h5"
        frng = np.random.default_rng(cfg.seed)
        write_features(
            h5,
            {
                v: frng.standard_normal((n, feature_dim), dtype=np.float32)
                for v, n in lengths.items()
            },
            {
                "backbone": "i3d-shaped",
                "dim": feature_dim,
                "fps": fps,
                "window": stride,
                "stride": stride,
                "pretrained": False,
                "weights": "none",
            },
        )
        wcfg = cfg.model_copy(
            update={
                "model": model_cfg,
                "data": cfg.data.model_copy(update={"features": str(h5)}),
            }
        )
        for arch in archs:
            torch.manual_seed(cfg.seed)
            model = build_model(arch, wcfg, emb, feature_dim)
            loader = make_loader(train, wcfg, vocab, shuffle=False, seed=cfg.seed, batch_size=bs)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            load_s = step_s = 0.0
            samples = 0
            flops_per_sample = None
            with tempfile.TemporaryDirectory() as out_dir:
                first = random_batch(2, 4, feature_dim, 3, len(vocab), cfg.seed)
                step, trainer = trainer_step(model, wcfg, device, first, Path(out_dir))
                del step
                with _trainer_determinism(device):
                    it = iter(loader)
                    for i in range(steps + 1):
                        t0 = time.perf_counter()
                        batch = next(it).to(device)
                        t1 = time.perf_counter()
                        if i == 0:  # warm-up, and the FLOPs of one real batch
                            flops, _ = count_flops(partial(trainer._train_step, batch))
                            flops_per_sample = flops / len(batch)
                            trainer._train_step(batch)
                            _sync(device)
                            continue
                        trainer._train_step(batch)
                        _sync(device)
                        load_s += t1 - t0
                        step_s += time.perf_counter() - t1
                        samples += len(batch)
                amp = trainer.amp_dtype
            sps = samples / step_s
            row: dict[str, Any] = {
                "steps_timed": steps,
                "samples_per_s": sps,
                "samples_per_s_with_loader": samples / (step_s + load_s),
                "loader_share": load_s / (load_s + step_s),
                "precision": str(amp or torch.float32).removeprefix("torch."),
                "gemm": trainer.gemm,
                "flops_per_sample_first_batch": flops_per_sample,
                "epoch_s": len(splits["train"]) / (samples / (step_s + load_s)),
            }
            if device.type == "cuda":
                row["peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
            else:
                row["peak_rss_mb_process"] = (
                    resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                )
            if peak is not None and flops_per_sample:
                p = peak if amp is None else MatmulPeak(device, peak.n, amp)
                pt = interleaved({"p": p}, 3, 0, device)["p"]
                row["matmul_peak"] = p.summary(pt)
                row["peak_fraction_estimate"] = min(
                    1.0, flops_per_sample * sps / (row["matmul_peak"]["gflops"] * 1e9)
                )
            if arch == archs[0]:
                ev = make_loader(
                    test, wcfg, vocab, shuffle=False, seed=0, batch_size=cfg.eval.batch_size
                )
                model.eval()
                n_q, t_eval = 0, 0.0
                with torch.inference_mode():
                    for eb in ev:
                        eb = eb.to(device)
                        t0 = time.perf_counter()
                        _forward(model, eb)
                        _sync(device)
                        t_eval += time.perf_counter() - t0
                        n_q += len(eb)
                row["eval_queries_per_s"] = n_q / t_eval
                row["eval_batch"] = cfg.eval.batch_size
            rows[arch] = row
    epochs = cfg.train.epochs
    per_variant = {v: epochs * rows[a]["epoch_s"] for v, a in ABLATION_RATE_OF.items() if a in rows}
    return {
        "source": source,
        "train_queries": len(splits["train"]),
        "test_queries": len(splits["test"]),
        "videos": len({m.vid for m in splits["train"]}) + len({m.vid for m in splits["test"]}),
        "clips_per_video": {
            "fps": fps,
            "stride": stride,
            "mean_before_cap": float(np.mean(list(lengths.values()))),
            "max_len": cfg.data.max_len,
            "capped_share": float(np.mean([n > cfg.data.max_len for n in lengths.values()])),
        },
        "model": model_cfg.model_dump(include={"dim", "heads", "lstm_scales", "text_lstm_layers"}),
        "batch": bs,
        "scale": scale,
        "archs": rows,
        "ablation": {
            "epochs": epochs,
            "rate_of": {v: a for v, a in ABLATION_RATE_OF.items() if a in rows},
            "per_variant_hours": {v: s / 3600 for v, s in per_variant.items()},
            "ten_variants_hours": sum(per_variant.values()) / 3600
            if len(per_variant) == len(ABLATION_RATE_OF)
            else None,
        },
    }


def copy_worktree(repo: Path, dest: Path) -> Path:
    """The working tree's tracked and not-ignored files (what a fresh clone would have)."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=repo,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for raw in files:
        rel = raw.decode()
        if rel and (repo / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(repo / rel, dest / rel)
    return dest


def _dvc(
    repo: Path, *args: str, timeout: float = 7200
) -> tuple[float, subprocess.CompletedProcess[str]]:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    t0 = time.perf_counter()
    proc = subprocess.run(
        ["dvc", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=timeout
    )
    return time.perf_counter() - t0, proc


def dvc_timings(repo: Path, full: bool) -> dict[str, Any]:
    """No-op ``dvc repro`` in ``repo`` (only when it is up to date: otherwise a repro would run
    stages) and, when ``full``, a complete ``dvc repro`` of ``repo``'s params in a fresh
    temporary copy followed by a no-op one there."""
    out: dict[str, Any] = {}
    if shutil.which("git") is None or not (repo / "dvc.yaml").exists():
        return {"skipped": "no dvc.yaml here (run from the project root) or no git"}
    if not (Path(sys.executable).parent / "dvc").exists() and shutil.which("dvc") is None:
        return {"skipped": "dvc is not installed"}
    if (repo / "dvc.lock").exists():
        _, status = _dvc(repo, "status")
        if status.returncode == 0 and "up to date" in status.stdout:
            secs, proc = _dvc(repo, "repro")
            out["noop_here"] = {"seconds": secs, "returncode": proc.returncode}
        else:
            out["noop_here"] = {"skipped": "the pipeline here is not up to date"}
    else:
        out["noop_here"] = {"skipped": "no dvc.lock here: run `dvc repro` once first"}
    if not full:
        out["full"] = {"skipped": "--quick"}
        return out
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "repo"
        copy_worktree(repo, copy)
        for stale in ("dvc.lock", "mlflow.db"):
            (copy / stale).unlink(missing_ok=True)
        git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
        for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "bench"]):
            subprocess.run(git + cmd, cwd=copy, check=True, capture_output=True)
        secs, proc = _dvc(copy, "repro")
        out["full"] = {"seconds": secs, "returncode": proc.returncode}
        if proc.returncode != 0:
            out["full"]["error"] = (proc.stdout + proc.stderr)[-2000:]
            return out
        secs, proc = _dvc(copy, "repro")
        out["noop"] = {
            "seconds": secs,
            "returncode": proc.returncode,
            "ran_stages": proc.stdout.count("Running stage"),
        }
    return out


# --------------------------------------------------------------------------- driver


def _env(device: torch.device, threads: int, quick: bool) -> dict[str, Any]:
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    env = {
        "torch": torch.__version__,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu,
        "threads": threads,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "onednn": torch.backends.mkldnn.is_available(),
        "quick": quick,
    }
    if device.type == "cpu":
        from dynpath.model.gemm import cpu_info

        info = cpu_info()
        env["cpu_vendor"] = info["vendor"]
        env["cpu_flags"] = info["flags"]  # the SIMD sets that decide the GEMM paths
        env["torch_cpu_capability"] = info.get("torch_capability")
    with contextlib.suppress(OSError):
        env["load_average_start"] = list(os.getloadavg())
    return env


#: Sections of ``dynpath bench`` (``--sections``); ``charades`` runs only when asked for or
#: when ``charades_scale`` is given.
SECTIONS = ("paper", "data", "inference", "mslstm", "extraction", "dvc", "charades")
DEFAULT_SECTIONS = SECTIONS[:-1]
#: Charades videos (charades.json) at the charades_sta profile's extraction rate.
CHARADES_VIDEOS = 9848


def parse_sections(text: str) -> tuple[str, ...]:
    """``--sections`` (comma-separated names, or ``all``) -> section names; unknown names are
    an error naming them and the valid ones."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["all"]:
        return SECTIONS
    unknown = [n for n in names if n not in SECTIONS]
    if unknown or not names:
        raise ValueError(
            f"--sections: unknown {', '.join(unknown) or '(empty)'}; use 'all' or a "
            f"comma-separated list of {', '.join(SECTIONS)}"
        )
    return tuple(names)


def run_bench(
    cfg: Config,
    output: Path,
    quick: bool = False,
    device: str = "auto",
    sections: Sequence[str] = DEFAULT_SECTIONS,
    charades_scale: float = 0.02,
) -> dict[str, Any]:
    """Run the ``sections``, write ``output`` (JSON) and print the table; returns a summary."""
    dev = resolve_device(device, setting="--device")
    repeats = 2 if quick else 7
    threads = cfg.train.threads if dev.type == "cpu" else 0
    paper_shape = QUICK_SHAPE if quick else PAPER_SHAPE
    # The paper's configuration: the schema defaults (d=512, 8 heads, 3 scales, kernels 3/5/7/9,
    # 3-layer text BiLSTM, dropout 0.5); --quick shrinks the widths only.
    paper_model = ModelConfig.model_validate(QUICK_MODEL if quick else {})
    result: dict[str, Any] = {}
    t_start = time.perf_counter()
    with _threads(threads):
        result["env"] = _env(dev, torch.get_num_threads(), quick)
        result["env"]["sections"] = list(sections)
        log.info("bench: matmul peaks (every fp32 path, bf16 beside)")
        peak, result["matmul_peaks"] = matmul_peaks(dev, 256 if quick else 2048, repeats)
        if "paper" in sections:
            log.info("bench: training step at the paper's configuration")
            result["train_paper"] = train_throughput(
                "dynamic", paper_model, paper_shape, cfg, dev, repeats, peak, True
            )
            result["train_paper"]["peers_reported"] = PEERS_REPORTED
            result["train_paper"]["peer_lstm_measured"] = lstm_peer(
                paper_shape, paper_model.dim, dev, repeats, peak
            )
        if "data" in sections:
            log.info("bench: data loading and the default profile's training step")
            result["data"] = data_loading(cfg, dev, repeats, quick, peak)
            result["train_default"] = result["data"].pop("train_default")
        if "inference" in sections:
            log.info("bench: inference latency")
            result["inference"] = inference_latency(
                ("dynamic", "soft_dynamic", "exploitation_only"),
                paper_model.model_copy(update={"dropout": 0.0}),
                paper_shape,
                cfg.seed,
                dev,
                repeats,
                8 if quick else 64,
            )
        if "mslstm" in sections:
            log.info("bench: MS-LSTM batched vs looped")
            result["mslstm"] = mslstm_ratio(
                paper_shape, paper_model.dim, paper_model.lstm_scales, dev, repeats
            )
        if "extraction" in sections:
            log.info("bench: extraction")
            result["extraction"] = extraction(cfg, dev, 2 if quick else 3, quick)
            projected = extraction_projection(
                result, cfg.extract.frame_rate or 24.0, cfg.extract.stride
            )
            if projected is not None:
                result["charades_extraction"] = projected
        if "charades" in sections:
            log.info("bench: Charades-STA-shaped workload (scale %s)", charades_scale)
            result["charades"] = charades_workload(
                cfg,
                dev,
                charades_scale,
                paper_model,
                QUICK_SHAPE["feature_dim"] if quick else 1024,
                peak=peak,
            )
    if "dvc" in sections:
        log.info("bench: dvc")
        result["dvc"] = dvc_timings(Path.cwd(), full=not quick)
    with contextlib.suppress(OSError):
        result["env"]["load_average_end"] = list(os.getloadavg())
    result["env"]["bench_seconds"] = time.perf_counter() - t_start
    result["targets"] = check_targets(result)
    write_json(output, result)
    print(format_table(result))
    return {
        "output": str(output),
        "targets": {k: v["status"] for k, v in result["targets"].items()},
    }


def extraction_projection(r: dict[str, Any], cfg_fps: float, stride: int) -> dict[str, Any] | None:
    """Hours to extract all Charades videos at the measured i3d@224 rate (network only: decoding
    runs on CPU workers beside it and is not in this figure)."""
    row = r.get("extraction", {}).get("i3d@224")
    if row is None:
        return None
    clips = CHARADES_VIDEOS * CHARADES_DURATION["mean"] * cfg_fps / stride
    return {"clips": clips, "hours": clips / row["clips_per_s"] / 3600, "backbone": "i3d@224"}


def _dvc_noop_seconds(dvc: dict[str, Any]) -> float | None:
    for key in ("noop", "noop_here"):
        if "seconds" in dvc.get(key, {}):
            return float(dvc[key]["seconds"])
    return None


def _get(r: dict[str, Any], *keys: str) -> Any:
    """r[k1][k2]... or None when a section was not run."""
    for k in keys:
        if not isinstance(r, dict) or k not in r:
            return None
        r = r[k]
    return r


def check_targets(r: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target of the issue: measured value, limit, pass/FAIL (or n/a when not measured).

    The GPU targets (Charades-scale training rate, ablation hours, extraction hours) are judged
    on CUDA only: on a CPU the same figures are reported but no GPU target applies.
    """
    gpu = r["env"]["device"].startswith("cuda")
    rows: dict[str, tuple[Any, float, str]] = {
        "dynamic <= 0.55x soft_dynamic latency (p50, one query)": (
            _get(r, "inference", "ratios", "dynamic_vs_soft_p50"),
            TARGETS["dynamic_vs_soft_latency_max"],
            "max",
        ),
        "dynamic <= 1.15x exploitation_only latency (p50, one query)": (
            _get(r, "inference", "ratios", "dynamic_vs_exploitation_p50"),
            TARGETS["dynamic_vs_exploitation_latency_max"],
            "max",
        ),
        "data loading < 5% of a training step (first epoch)": (
            _get(r, "data", "loader_share_first_epoch"),
            TARGETS["loader_share_max"],
            "max",
        ),
        "data loading < 5% of a training step (cached epochs)": (
            _get(r, "data", "loader_share"),
            TARGETS["loader_share_max"],
            "max",
        ),
        "train step (paper config) >= 65% of the best fp32 matmul peak": (
            _get(r, "train_paper", "peak_fraction"),
            TARGETS["train_peak_fraction_min"],
            "min",
        ),
        "no-op dvc repro < 5 s": (
            _dvc_noop_seconds(r["dvc"]) if "dvc" in r else None,
            TARGETS["dvc_noop_seconds_max"],
            "max",
        ),
    }
    if gpu:
        rows["GPU: Charades-scale dynamic training >= 500 samples/s"] = (
            _get(r, "charades", "archs", "dynamic", "samples_per_s"),
            TARGETS["gpu_dynamic_samples_per_s_min"],
            "min",
        )
        rows["GPU: ten-variant Charades-STA ablation <= 4 h"] = (
            _get(r, "charades", "ablation", "ten_variants_hours"),
            TARGETS["gpu_ablation_hours_max"],
            "max",
        )
        rows["GPU: Charades-STA extraction (i3d@224, network only) <= 1 h"] = (
            _get(r, "charades_extraction", "hours"),
            TARGETS["gpu_extraction_hours_max"],
            "max",
        )
    out: dict[str, dict[str, Any]] = {}
    for name, (value, limit, kind) in rows.items():
        if r["env"]["quick"]:
            status = "n/a (--quick: tiny shapes)"
        elif value is None or (isinstance(value, float) and math.isnan(value)):
            status = "n/a"
        elif kind == "max":
            status = "pass" if value <= limit else "FAIL"
        else:
            status = "pass" if value >= limit else "FAIL"
        out[name] = {"value": value, "limit": limit, "status": status}
    return out


def format_table(r: dict[str, Any]) -> str:
    """A short human-readable summary of the JSON (the sections that ran)."""
    env = r["env"]
    load = env.get("load_average_start", ["?"])[0]
    loaded = env["device"] == "cpu" and isinstance(load, float) and load > env["cpus"] / 2
    lines = [
        f"{env['device_name']} ({env['device']}), {env['threads']} threads, torch "
        f"{env['torch']}, load average {load}{'  [--quick: tiny shapes]' if env['quick'] else ''}",
        *(
            [
                "WARNING: the machine was busy (load average above half its CPUs): wall times "
                "include waiting; the CPU-time figures are the robust ones"
            ]
            if loaded
            else []
        ),
        *(
            f"matmul {name:<21} {row['gflops']:8.1f} GFLOP/s (n={row['n']})"
            + ("  <- fp32 peak" if name == r["matmul_peaks"]["best_fp32"] else "")
            for name, row in r["matmul_peaks"]["paths"].items()
        ),
    ]
    if "train_paper" in r:
        tp, td = r["train_paper"], r.get("train_default")
        lines += [
            f"peak used for the step       {tp['matmul_peak']['gflops']:8.1f} GFLOP/s "
            f"({tp['matmul_peak']['dtype']}, {tp['matmul_peak']['path']}, in the step's rounds)",
            f"train step (paper config)    {tp['samples_per_s']:8.2f} samples/s  "
            f"{tp['achieved_gflops']:.1f} GFLOP/s = {100 * tp['peak_fraction']:.0f}% of peak "
            f"({100 * tp['peak_fraction_cpu_time']:.0f}% by CPU time; GEMMs on {tp['gemm']})",
        ]
        if "gemm_paths" in tp:
            lines.append(
                "train step per GEMM library  "
                + ", ".join(
                    f"{k} {v['step_s']:.2f} s ({100 * v['peak_fraction']:.0f}%)"
                    for k, v in tp["gemm_paths"].items()
                    if isinstance(v, dict)
                )
            )
        if td is not None:
            lines.append(
                f"train step (default profile) {td['samples_per_s']:8.2f} samples/s  "
                f"{100 * td['peak_fraction']:.0f}% of peak"
            )
        peer = tp["peer_lstm_measured"]
        lines.append(
            f"bare nn.LSTM step            oneDNN {100 * peer['onednn']['peak_fraction']:.0f}% / "
            f"native {100 * peer['native']['peak_fraction']:.0f}% of peak"
        )
        for op in tp.get("top_operators", [])[:5]:
            lines.append(f"  {op['op'][:40]:<40} {100 * op['share']:5.1f}%  ({op['calls']} calls)")
    if "inference" in r:
        lat = r["inference"]
        for arch in ("dynamic", "soft_dynamic", "exploitation_only"):
            row = lat[arch]
            lines.append(
                f"infer {arch:<22} p50 {row['p50_ms']:8.1f} ms  p95 {row['p95_ms']:8.1f} ms  "
                f"{row['queries_per_s']:7.1f} q/s @ batch {row['batch']}"
            )
        if "dynamic[balanced]" in lat:
            row = lat["dynamic[balanced]"]
            lines.append(
                f"infer dynamic (balanced)      {row['queries_per_s']:36.1f} q/s "
                f"@ batch {row['batch']}"
            )
    if "mslstm" in r:
        ms = r["mslstm"]
        lines.append(
            f"MS-LSTM batched vs loop      {ms['inference']['speedup']:8.2f}x (inference)  "
            f"{ms['inference_batch1']['speedup']:.2f}x (one query)  "
            f"{ms['training']['speedup']:.2f}x (training)"
        )
    if "data" in r:
        d = r["data"]
        lines.append(
            f"data loader share of step    {100 * d['loader_share_first_epoch']:8.2f}% first "
            f"epoch, {100 * d['loader_share']:.2f}% cached; HDF5 read "
            f"{d['hdf5_read_mb_per_s']:.0f} MB/s"
        )
    for name, row in r.get("extraction", {}).items():
        lines.append(f"extract {name:<20} {row['clips_per_s']:8.1f} clips/s ({row['precision']})")
    if "charades_extraction" in r:
        lines.append(
            f"Charades-STA extraction      {r['charades_extraction']['hours']:8.2f} h "
            "(i3d@224, network only, projected)"
        )
    if "charades" in r:
        ch = r["charades"]
        lines.append(f"Charades-STA workload ({ch['source']}; scale {ch['scale']})")
        for arch, row in ch["archs"].items():
            frac = row.get("peak_fraction_estimate")
            lines.append(
                f"  train {arch:<20} {row['samples_per_s']:8.2f} samples/s, loader "
                f"{100 * row['loader_share']:.1f}%"
                + (f", ~{100 * frac:.0f}% of peak" if frac is not None else "")
                + (
                    f", eval {row['eval_queries_per_s']:.1f} q/s"
                    if "eval_queries_per_s" in row
                    else ""
                )
            )
        hours = ch["ablation"]["ten_variants_hours"]
        if hours is not None:
            lines.append(
                f"  ten-variant ablation, {ch['ablation']['epochs']} epochs  {hours:8.2f} h "
                "(projected, one seed)"
            )
    dvc = r.get("dvc", {})
    for key, label in (
        ("full", "full dvc repro"),
        ("noop", "no-op dvc repro"),
        ("noop_here", "no-op dvc repro (here)"),
    ):
        if "seconds" in dvc.get(key, {}):
            lines.append(f"{label:<28} {dvc[key]['seconds']:8.2f} s")
    lines += [
        f"[{v['status']}] {k}: {v['value'] if v['value'] is None else round(v['value'], 3)}"
        for k, v in r["targets"].items()
    ]
    return "\n".join(lines)
