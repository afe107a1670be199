"""The ``paper`` section: training throughput and peak fraction at the paper's configuration,
and a bare LSTM peer measured beside it.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dynpath.bench.flops import Float64Audit, count_flops, lstm_work, top_operators
from dynpath.bench.inputs import VOCAB, bench_model, random_batch, trainer_step
from dynpath.bench.peaks import MatmulPeak, peak_fractions
from dynpath.bench.timing import interleaved, median, trainer_determinism
from dynpath.config import Config, ModelConfig
from dynpath.model.registry import count_parameters

#: Peers' training-step peak fractions at the paper's shape, as stated in the performance issue
#: (their code is not part of this project, so they are quoted, not measured).
PEERS_REPORTED = {
    "EAMAT (predecessor, 3 runs)": "55-69%",
    "VSLNet d=512": "55-67%",
    "bare nn.LSTM(512, 512), oneDNN": "~85%",
    "bare nn.LSTM(512, 512), non-oneDNN": "~45%",
}


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


def _model_fields(model_cfg: ModelConfig) -> dict[str, Any]:
    """The model sizes a timing depends on, as the JSON reports them."""
    return {
        "dim": model_cfg.dim,
        "heads": model_cfg.heads,
        "lstm_scales": model_cfg.lstm_scales,
        "kernels": list(model_cfg.kernels),
        "text_lstm_layers": model_cfg.text_lstm_layers,
        "dropout": model_cfg.dropout,
    }


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
    model = bench_model(arch, model_cfg, shape["feature_dim"], cfg.seed)
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
        with trainer_determinism(device):
            t = interleaved(rows, repeats, 1, device)
            out: dict[str, Any] = {}
            if detail:
                out["top_operators"], out["lstm_kernels"] = top_operators(step)
                audit = Float64Audit()
                with audit:
                    step()
                out["float64_ops"] = audit.hits
    wall, cpu = t["step"]["wall"], t["step"]["cpu"]
    fractions, raw_max = peak_fractions(flops, wall, peak_rows, t["peak"]["wall"])
    fractions_cpu, _ = peak_fractions(flops, cpu, peak_rows, t["peak"]["cpu"])
    med = median(wall)
    if other is not None:
        alt = t[f"step[{other}]"]["wall"]
        alt_fr, _ = peak_fractions(flops, alt, peak_rows, t["peak"]["wall"])
        out["gemm_paths"] = {
            trainer.gemm: {"step_s": med, "peak_fraction": median(fractions)},
            other: {"step_s": median(alt), "peak_fraction": median(alt_fr)},
            f"speedup_{trainer.gemm}_vs_{other}": median(
                [a / s for a, s in zip(alt, wall, strict=True)]
            ),
        }
    return {
        "arch": arch,
        "shape": shape,
        "model": _model_fields(model_cfg),
        "parameters": count_parameters(model),
        "precision": str(trainer.amp_dtype or torch.float32).removeprefix("torch."),
        "gemm": trainer.gemm,
        "step_s": med,
        "step_s_all": wall,
        "step_cpu_s": median(cpu),
        "samples_per_s": shape["batch"] / med,
        "flops_per_step": flops,
        "lstm_flops_counted": lstm_counted,
        "lstm_flops_analytic": lstm["flops"],
        "achieved_gflops": flops / med / 1e9,
        "matmul_peak": peak_rows.summary(t["peak"]),
        "peak_fraction": median(fractions),
        "peak_fraction_all": fractions,
        "peak_fraction_of_medians": (flops / med) / (peak_rows.flops / median(t["peak"]["wall"])),
        "peak_fraction_cpu_time": median(fractions_cpu),
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
            "step_ms": 1000 * median(t[k]["wall"]),
            "peak_fraction": median(fr),
            "peak_fraction_raw_max": raw_max,
        }
    return out
