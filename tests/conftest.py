"""Shared fixtures. Tests that read ../shared skip cleanly when it is absent."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from hypothesis import settings

# Tests use tiny models: threads only add contention on a 2-core CI machine (measured ~10x slower
# for the model tests under load). Benchmarks, not tests, measure multi-threaded speed.
torch.set_num_threads(1)

# Property tests (tests/test_properties.py) explore new random examples on a developer's machine,
# which is how they find bugs; CI (.ci/run sets DYNPATH_HYPOTHESIS_PROFILE=ci) replays a fixed
# derandomized set, so that whether a commit lands never depends on the luck of a draw. A failure
# found locally is kept as an @example on the test, so CI replays it from then on.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile(os.environ.get("DYNPATH_HYPOTHESIS_PROFILE", "dev"))

REPO = Path(__file__).resolve().parents[1]
SHARED = (REPO / ".." / "shared").resolve()


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """One intra-op thread in every test (set above at import), restored after a test that
    changed it (the trainer applies ``train.threads``): tiny models gain nothing from threads,
    and on a busy 2-core machine OpenMP spin-waits made the model tests ~10x slower."""
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(1)


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


@pytest.fixture(autouse=True)
def _restore_sys_path() -> Iterator[None]:
    """Put sys.path back after each test: a test (or the code it calls, e.g. importing the
    checkout's ``pipeline``/``components`` packages) that prepends an entry must not make a later
    test pass or fail depending on the order they run in."""
    saved = list(sys.path)
    yield
    sys.path[:] = saved


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    """Print pytest-randomly's seed last, also under ``-q`` (which hides the header that has it):
    an order-dependent failure is reproduced with ``--randomly-seed=N``; ``-p no:randomly`` runs
    the tests in file order (for debugging)."""
    try:
        seed = config.getoption("randomly_seed")
    except ValueError:  # pytest-randomly disabled (-p no:randomly) or not installed
        terminalreporter.write_line("test order: file order (pytest-randomly off)")
        return
    terminalreporter.write_line(
        f"test order: random, seed {seed} (reproduce: pytest --randomly-seed={seed}; "
        "file order: pytest -p no:randomly)"
    )
