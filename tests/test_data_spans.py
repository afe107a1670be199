"""The seconds <-> index mapping (docs/design.md), property-style over random values."""

from __future__ import annotations

import numpy as np
import pytest

from dynpath.data.spans import indices_to_seconds, seconds_to_indices


def test_design_examples() -> None:
    # 10 positions over 20 s: position k covers [2k, 2k+2).
    assert seconds_to_indices(0.0, 20.0, 20.0, 10) == (0, 9)
    assert seconds_to_indices(3.0, 7.5, 20.0, 10) == (1, 3)
    assert seconds_to_indices(4.0, 6.0, 20.0, 10) == (2, 2)  # end on a bin edge is exclusive
    assert seconds_to_indices(4.0, 4.5, 20.0, 10) == (2, 2)
    assert seconds_to_indices(19.9, 25.0, 20.0, 10) == (9, 9)  # end clamped to T-1
    assert indices_to_seconds(1, 3, 20.0, 10) == (2.0, 8.0)
    assert indices_to_seconds(0, 9, 20.0, 10) == (0.0, 20.0)


def test_scalar_types_and_errors() -> None:
    i, j = seconds_to_indices(1.0, 2.0, 10.0, 5)
    assert isinstance(i, int) and isinstance(j, int)
    s, e = indices_to_seconds(1, 2, 10.0, 5)
    assert isinstance(s, float) and isinstance(e, float)
    with pytest.raises(ValueError):
        seconds_to_indices(1.0, 2.0, 0.0, 5)
    with pytest.raises(ValueError):
        seconds_to_indices(1.0, 2.0, 3.0, 0)


def test_indices_seconds_indices_round_trip() -> None:
    rng = np.random.default_rng(0)
    n = 20000
    T = rng.integers(1, 300, n)
    i = rng.integers(0, T)
    j = i + (rng.random(n) * (T - i)).astype(np.int64)
    D = rng.uniform(0.5, 500.0, n)
    s, e = indices_to_seconds(i, j, D, T)
    i2, j2 = seconds_to_indices(s, e, D, T)
    np.testing.assert_array_equal(i2, i)
    np.testing.assert_array_equal(j2, j)
    # also through float32, as a Batch stores seconds
    i3, j3 = seconds_to_indices(s.astype(np.float32), e.astype(np.float32), D, T)
    assert (np.abs(i3 - i) <= 1).all() and (np.abs(j3 - j) <= 1).all()


def test_seconds_indices_seconds_covers_span_within_one_bin() -> None:
    rng = np.random.default_rng(1)
    n = 20000
    T = rng.integers(1, 300, n)
    D = rng.uniform(0.5, 500.0, n)
    a, b = rng.uniform(0, 1, n) * D, rng.uniform(0, 1, n) * D
    start, end = np.minimum(a, b), np.maximum(a, b) + 1e-3
    end = np.minimum(end, D)
    i, j = seconds_to_indices(start, end, D, T)
    assert ((i >= 0) & (i <= j) & (j < T)).all()
    s, e = indices_to_seconds(i, j, D, T)
    step = D / T
    tol = 1e-6 * step
    assert (s <= start + tol).all() and (start - s < step + tol).all()
    assert (e >= end - tol).all() and (e - end < step + tol).all()
    # i is exactly the DESIGN floor (away from float noise)
    np.testing.assert_array_equal(i, np.floor(start * T / D + 1e-6).astype(np.int64))
