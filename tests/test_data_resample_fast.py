"""``resample``'s vectorised bin sums equal numpy's ``add.reduceat`` (the plain formulation it
replaced for speed, docs/performance.md) on the shapes features come in."""

from __future__ import annotations

import numpy as np
import pytest

from dynpath.data.features import resample


@pytest.mark.parametrize(("t", "d", "m"), [(96, 7, 64), (130, 5, 128), (1001, 3, 256), (9, 2, 4)])
def test_resample_equals_reduceat(t: int, d: int, m: int) -> None:
    x = np.random.default_rng(t).standard_normal((t, d)).astype(np.float32)
    edges = np.round(np.arange(m + 1) * (t / m)).astype(np.int64)
    ref = np.add.reduceat(x, edges[:-1], axis=0) / np.diff(edges).astype(np.float32)[:, None]
    out = resample(x, m)
    assert out.dtype == np.float32 and out.shape == (m, d)
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)
    assert not np.shares_memory(out, x)
    x_before = x.copy()
    resample(x, m)
    np.testing.assert_array_equal(x, x_before)  # the input is never modified
