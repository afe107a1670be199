"""Timing rules of the benchmark: interleaved wall/CPU repeats (``dynpath.timing``, shared with
the latency measurements of the model and evaluator), thread pinning, the trainer's
determinism flags (why: see the measurement rules in ``dynpath.bench``).
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Iterator, Sequence

import torch

from dynpath.timing import interleaved, sync, timed

__all__ = ["interleaved", "median", "sync", "timed", "torch_threads", "trainer_determinism"]


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
    """The flags ``Trainer.fit`` trains under (restored afterwards), subnormal flushing
    included."""
    from dynpath.engine.distributed import configure_determinism, denormals_flushed

    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    fill = torch.utils.deterministic.fill_uninitialized_memory  # type: ignore[attr-defined]
    configure_determinism(device)
    try:
        with denormals_flushed(device):
            yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.utils.deterministic.fill_uninitialized_memory = fill  # type: ignore[attr-defined]
