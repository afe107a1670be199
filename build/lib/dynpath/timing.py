"""The one way dynpath times code: round-robin repeats with CUDA synchronised around each call.

Latency was once measured three ways (the benchmark, the model registry, the evaluator), each
with its own loop and its own idea of when to synchronise CUDA; a fix to one (e.g. a missing
synchronise, which makes GPU timings measure only the kernel launch) did not reach the others.
Now there are two measurements, both timed through :func:`interleaved`: per-variant model latency
on synthetic inputs (``dynpath.bench.inference.variant_latency``, the benchmark's) and real
batch-1 queries of an evaluated split (``dynpath.engine.evaluator.measure_latency``, the evaluate
step's). It sits in the foundation layer because ``engine/`` (below ``bench/``) times too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import torch


def sync(device: torch.device) -> None:
    """Wait for ``device``'s queued kernels (CUDA runs asynchronously; the CPU does not)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call of ``fn``, synchronised on ``device``."""
    sync(device)
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    sync(device)
    return time.perf_counter() - w0, time.process_time() - c0


def interleaved(
    rows: Mapping[str, Callable[[], Any]], repeats: int, warmup: int, device: torch.device
) -> dict[str, dict[str, list[float]]]:
    """Wall/CPU seconds of each row's ``repeats`` calls after ``warmup`` untimed rounds.

    Rows are timed round-robin (A, B, C, A, B, C, ...) so that a change in machine load hits every
    row alike and per-round ratios stay meaningful on a shared machine.
    """
    out: dict[str, dict[str, list[float]]] = {k: {"wall": [], "cpu": []} for k in rows}
    for i in range(warmup + repeats):
        for name, fn in rows.items():
            wall, cpu = timed(fn, device)
            if i >= warmup:
                out[name]["wall"].append(wall)
                out[name]["cpu"].append(cpu)
    return out
