"""The ``default`` section: every variant's training step as ``make run`` trains it on the params'
own profile (the synthetic default: d=64, batch 32), at one and two threads, with the time split
between operator kernels and framework overhead, and ``dynamic``'s step on its reference paths
(``dynpath.model.fastpath``) timed beside it.

Why a section of its own: the ``paper`` section judges the paper configuration against the
matmul peak, but the configuration that runs every day is the default profile, where a step is
thousands of small operators and per-operator overhead, not FLOPs, sets the cost.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from dynpath.bench.inputs import VOCAB, bench_model, random_batch, trainer_step
from dynpath.bench.timing import interleaved, median, torch_threads, trainer_determinism
from dynpath.config import Config

#: Variants timed by ``--quick`` (one of each kind: selector, one module, fusion).
QUICK_VARIANTS = ("dynamic", "exploitation_only", "sum_fusion")

#: Words of the benchmark's queries (the synthetic queries have 5-9).
WORDS = 10


def default_shape(cfg: Config, feature_dim: int) -> dict[str, int]:
    """The batch ``make run`` trains on: ``train.batch_size`` videos of ``data.max_len`` clips
    at most, and for the synthetic dataset its real clip counts (one clip per ``extract.stride``
    frames of ``synth.min_duration``-``max_duration`` s videos at ``synth.fps``), so the batch
    pads as a real one does."""
    clips, min_clips = cfg.data.max_len, cfg.data.max_len
    if cfg.data.dataset == "synthetic":
        per_s = cfg.synth.fps / cfg.extract.stride
        clips = min(cfg.data.max_len, max(2, round(cfg.synth.max_duration * per_s)))
        min_clips = min(clips, max(2, round(cfg.synth.min_duration * per_s)))
    return {
        "batch": cfg.train.batch_size,
        "clips": clips,
        "min_clips": min_clips,
        "feature_dim": feature_dim,
        "words": WORDS,
    }


@contextlib.contextmanager
def _reference(device: torch.device) -> Iterator[None]:
    """The step as it ran before issue 24's work: the model's reference code paths
    (``dynpath.model.fastpath``) and, on the CPU, subnormal floats not flushed (the timed steps
    run inside ``trainer_determinism``, which flushes them as ``Trainer.fit`` does)."""
    from dynpath.model import fastpath

    cpu = device.type == "cpu"
    with fastpath.reference():
        if cpu:
            torch.set_flush_denormal(False)
        try:
            yield
        finally:
            if cpu:
                torch.set_flush_denormal(True)


def profile_split(step: Callable[[], Any], k: int = 10) -> dict[str, Any]:
    """One step under ``torch.profiler``: the time inside aten operators (their self CPU time:
    the kernels and their dispatch) against the rest of the step's wall time (Python, module
    calls, the autograd engine's bookkeeping), the operator-call count and the top operators."""
    import time

    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        step()
        wall = time.perf_counter() - t0
    events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    aten_ms = sum(e.self_cpu_time_total for e in events) / 1000.0
    calls = sum(e.count for e in events)
    rows = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:k]
    step_ms = wall * 1000.0
    return {
        "step_ms_profiled": step_ms,
        "operator_ms": aten_ms,
        "overhead_ms": max(step_ms - aten_ms, 0.0),
        "overhead_share": max(step_ms - aten_ms, 0.0) / step_ms if step_ms > 0 else 0.0,
        "operator_calls": calls,
        "top_operators": [
            {
                "op": e.key,
                "self_ms": e.self_cpu_time_total / 1000.0,
                "share_of_step": e.self_cpu_time_total / 1000.0 / step_ms if step_ms else 0.0,
                "calls": e.count,
            }
            for e in rows
        ],
    }


def default_profile(
    cfg: Config, device: torch.device, repeats: int, quick: bool, threads: tuple[int, ...] = (1, 2)
) -> dict[str, Any]:
    """Samples/s of every variant's real training step on the params' profile at each thread
    count (interleaved rounds), ``dynamic[reference]`` beside ``dynamic``, and a profiler split
    of each variant's step at the first thread count."""
    from dynpath.extract.backbones import get_backbone

    dim = 64 if quick else get_backbone(cfg.extract.backbone).dim
    shape = default_shape(cfg, dim)
    if quick:
        shape.update(batch=4, clips=8, min_clips=5)
    names = [v for v in cfg.variants if not quick or v in QUICK_VARIANTS] or ["dynamic"]
    batch = random_batch(
        shape["batch"], shape["clips"], dim, shape["words"], VOCAB, cfg.seed, shape["min_clips"]
    )
    steps: dict[str, Callable[[], Any]] = {}
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        for name in names:
            arch, vcfg = cfg.variant(name) if name in cfg.variants else ("dynamic", cfg)
            model = bench_model(arch, vcfg.model, dim, cfg.seed)
            step, _ = trainer_step(model, vcfg, device, batch, tmp / name, full_loss=True)
            steps[name] = step
            if name == "dynamic":

                def reference(step: Callable[[], Any] = step) -> Any:
                    with _reference(device):
                        return step()

                steps["dynamic[reference]"] = reference
        out: dict[str, Any] = {"shape": shape, "variants": {}, "threads": list(threads)}
        stack.enter_context(trainer_determinism(device))
        for n_threads in threads:
            with torch_threads(n_threads):
                t = interleaved(steps, repeats, 1, device)
            for name, times in t.items():
                row = out["variants"].setdefault(name, {})
                wall, cpu = times["wall"], times["cpu"]
                row[f"threads_{n_threads}"] = {
                    "samples_per_s": shape["batch"] / median(wall),
                    "samples_per_s_cpu_time": shape["batch"] / median(cpu),
                    "step_ms": 1000.0 * median(wall),
                    "step_ms_all": [1000.0 * w for w in wall],
                }
            if "dynamic[reference]" in t:
                ref, fast = t["dynamic[reference]"], t["dynamic"]
                out[f"dynamic_speedup_vs_reference_threads_{n_threads}"] = {
                    "wall": median([r / f for r, f in zip(ref["wall"], fast["wall"], strict=True)]),
                    "cpu": median([r / f for r, f in zip(ref["cpu"], fast["cpu"], strict=True)]),
                }
        with torch_threads(threads[0]):
            for name, step in steps.items():
                out["variants"][name]["profile"] = profile_split(step)
    return out
