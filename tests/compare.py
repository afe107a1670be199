"""Comparing localizer answers produced in different processes.

A fresh process may pick other kernels or thread counts than the test process (oneDNN chooses
per CPU and per thread count), so scores can differ in the 7th significant digit: seen on a 2-core
AVX-512 machine, 0.0044822911731898785 in-process against 0.004482293501496315 in a subprocess.
Spans are decoded on the clip grid, so their boundaries are exact; a score is compared within a
relative tolerance. Everything else (route, duration, model name) must be equal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

SCORE_REL = 1e-4


def assert_same_answer(got: Mapping[str, Any], expected: Mapping[str, Any]) -> None:
    """One ``Localizer.predict`` answer against another: spans exact, scores close."""
    assert set(got) == set(expected), (sorted(got), sorted(expected))
    for key, value in expected.items():
        if key != "spans":
            assert got[key] == value, key
    spans, want = got["spans"], expected["spans"]
    assert [(s["start"], s["end"]) for s in spans] == [(s["start"], s["end"]) for s in want]
    assert [s["score"] for s in spans] == pytest.approx([s["score"] for s in want], rel=SCORE_REL)
    for s, w in zip(spans, want, strict=True):
        assert set(s) == set(w)


def assert_same_answers(
    got: Sequence[Mapping[str, Any]], expected: Sequence[Mapping[str, Any]]
) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert_same_answer(g, e)
