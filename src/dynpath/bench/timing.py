"""Timing rules of the benchmark: interleaved wall/CPU repeats, thread pinning, the trainer's
determinism flags (why: see the measurement rules in ``dynpath.bench``).
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    sync(device)
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    sync(device)
    return time.perf_counter() - w0, time.process_time() - c0


def interleaved(
    rows: dict[str, Callable[[], Any]], repeats: int, warmup: int, device: torch.device
) -> dict[str, dict[str, list[float]]]:
    """Wall/CPU seconds of each row, timed round-robin (A, B, C, A, B, C, ...)."""
    out: dict[str, dict[str, list[float]]] = {k: {"wall": [], "cpu": []} for k in rows}
    for i in range(warmup + repeats):
        for name, fn in rows.items():
            wall, cpu = timed(fn, device)
            if i >= warmup:
                out[name]["wall"].append(wall)
                out[name]["cpu"].append(cpu)
    return out


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    old = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@contextlib.contextmanager
def trainer_determinism(device: torch.device) -> Iterator[None]:
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
