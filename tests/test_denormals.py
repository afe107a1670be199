"""Subnormal floats are flushed to zero while the trainer trains on the CPU, and only then.

Why it matters: subnormal operands cost x86 cores a microcode assist each; once gradients
shrink into that range, oneDNN's LSTM backward ran 4x slower (docs/performance.md, "Subnormal
floats"). The flag is process-global, so the tests also check that it is switched off again.
"""

from __future__ import annotations

from pathlib import Path

import torch
from trainer_double import build_trainer

from dynpath.engine.distributed import denormals_flushed

SUBNORMAL = 1e-39  # below float32's smallest normal number, ~1.18e-38


def flushing() -> bool:
    """Whether float32 arithmetic flushes subnormal results (and operands) to zero right now."""
    x = torch.tensor([SUBNORMAL * 4], dtype=torch.float32)
    return float((x * 0.5)[0]) == 0.0


def test_flag_is_off_by_default_in_this_process() -> None:
    assert not flushing()


def test_inside_the_block_subnormals_flush_and_afterwards_they_do_not() -> None:
    with denormals_flushed(torch.device("cpu")):
        assert flushing()
    assert not flushing()


def test_the_flag_is_reset_when_the_block_raises() -> None:
    try:
        with denormals_flushed(torch.device("cpu")):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert not flushing()


def test_a_non_cpu_device_leaves_the_cpu_flag_alone() -> None:
    with denormals_flushed(torch.device("meta")):
        assert not flushing()


def test_the_trainer_steps_with_subnormals_flushed_and_restores_the_flag(tmp_path: Path) -> None:
    seen: list[bool] = []
    build_trainer(tmp_path, on_step=lambda step: seen.append(flushing())).fit()
    assert seen and all(seen)
    assert not flushing()
