"""Shared fixtures. Tests that read ../shared skip cleanly when it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

# Tests use tiny models: threads only add contention on a 2-core CI machine (measured ~10x slower
# for the model tests under load). Benchmarks, not tests, measure multi-threaded speed.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED = (REPO / ".." / "shared").resolve()


@pytest.fixture
def shared_data() -> Path:
    """The real Charades-STA annotations in ../shared/data (skip when this clone has none)."""
    root = SHARED / "data"
    if not (root / "charades_sta" / "charades_sta_train.txt").exists():
        pytest.skip("../shared/data is not present in this checkout")
    return root


@pytest.fixture
def repo_root() -> Path:
    return REPO
