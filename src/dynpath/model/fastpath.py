"""A switch between the model's optimised code paths and the reference paths they replace.

Why: every optimisation of the default profile's training step (docs/performance.md, "The
default profile") keeps the code it replaced, reachable through :func:`reference`, so that
``tests/test_fast_paths.py`` can run both on the same weights and inputs and compare values and
gradients, and the benchmark can time both side by side. Training always takes the fast paths.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

_state = {"fast": True}


def enabled() -> bool:
    """Whether the optimised paths run (the default)."""
    return _state["fast"]


@contextlib.contextmanager
def reference() -> Iterator[None]:
    """Inside the block, every switchable path runs its reference (pre-optimisation) code."""
    old = _state["fast"]
    _state["fast"] = False
    try:
        yield
    finally:
        _state["fast"] = old
