"""The one place where seconds and feature indices are converted (docs/design.md "Data semantics").

With ``T`` feature positions covering a video of ``D`` seconds, position ``k`` covers the interval
``[k*D/T, (k+1)*D/T)``. Ground truth in seconds becomes inclusive indices ``(i, j)``; a predicted
pair ``(i, j)`` becomes seconds ``(i*D/T, (j+1)*D/T)``.

The start index is ``floor(start*T/D)`` exactly as docs/design.md writes it. The end index is
``floor(end*T/D)`` too, EXCEPT when ``end*T/D`` falls on a bin boundary (an integer, within
``_EPS``): there the end is exclusive, so the bin starting at ``end`` (which overlaps the moment for
zero seconds) is not labelled. Written as ``ceil(end*T/D) - 1``, this makes indices -> seconds ->
indices an exact round trip, which the plain floor is not (``(j+1)*D/T`` would map to ``j+1``).
Both are clamped to ``[0, T-1]`` with ``start <= end``. ``_EPS`` absorbs float rounding, so that
``i*D/T*T/D`` maps back to ``i`` and not ``i-1``.

Every function is numpy-vectorised and also accepts Python scalars (then it returns ints/floats).
"""

from __future__ import annotations

from typing import overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from dynpath.errors import DataValueError

_EPS = 1e-6  # in index units


@overload
def seconds_to_indices(start: float, end: float, duration: float, T: int) -> tuple[int, int]: ...


@overload
def seconds_to_indices(
    start: ArrayLike, end: ArrayLike, duration: ArrayLike, T: ArrayLike
) -> tuple[NDArray[np.int64], NDArray[np.int64]]: ...


def seconds_to_indices(
    start: ArrayLike, end: ArrayLike, duration: ArrayLike, T: ArrayLike
) -> tuple[int, int] | tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Inclusive feature indices ``(i, j)`` of a span in seconds (broadcasts over arrays)."""
    s = np.asarray(start, dtype=np.float64)
    e = np.asarray(end, dtype=np.float64)
    d = np.asarray(duration, dtype=np.float64)
    n = np.asarray(T, dtype=np.int64)
    # a NaN or infinite time would cast to an arbitrary index (NaN -> INT64_MIN -> clipped to 0)
    if not (np.isfinite(s).all() and np.isfinite(e).all()):
        raise DataValueError("span times must be finite numbers of seconds")
    if not np.isfinite(d).all() or np.any(d <= 0):
        raise DataValueError("duration must be a finite number > 0")
    if np.any(n < 1):
        raise DataValueError("T must be >= 1")
    scale = n / d
    last = n - 1
    i = np.clip(np.floor(s * scale + _EPS).astype(np.int64), 0, last)
    j = np.clip(np.ceil(e * scale - _EPS).astype(np.int64) - 1, 0, last)
    j = np.maximum(i, j)
    if i.ndim == 0:
        return int(i), int(j)
    return i, j


@overload
def indices_to_seconds(i: int, j: int, duration: float, T: int) -> tuple[float, float]: ...


@overload
def indices_to_seconds(
    i: ArrayLike, j: ArrayLike, duration: ArrayLike, T: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]: ...


def indices_to_seconds(
    i: ArrayLike, j: ArrayLike, duration: ArrayLike, T: ArrayLike
) -> tuple[float, float] | tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Seconds ``(i*D/T, (j+1)*D/T)`` of inclusive indices (the end capped at ``D``)."""
    ii = np.asarray(i, dtype=np.float64)
    jj = np.asarray(j, dtype=np.float64)
    d = np.asarray(duration, dtype=np.float64)
    n = np.asarray(T, dtype=np.float64)
    if not np.isfinite(d).all() or np.any(d <= 0):
        raise DataValueError("duration must be a finite number > 0")
    if np.any(n < 1):
        raise DataValueError("T must be >= 1")
    step = d / n
    s = ii * step
    e = np.minimum((jj + 1.0) * step, d)
    if s.ndim == 0:
        return float(s), float(e)
    return s, e
