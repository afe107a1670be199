"""What a caller hands the Localizer, checked before any work: queries, top-k, durations and
feature matrices (a clear :class:`UsageError`/:class:`InputTypeError`/:class:`DataError` naming
the argument, never a shape error deep in the model), and the duration a video file or a feature
store implies when the caller gives none.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from dynpath.config import MAX_TOPK
from dynpath.errors import DataError, InputTypeError, UsageError

# Longest video duration accepted (seconds, 31 days): beyond it a span in seconds is meaningless
# and products with it may overflow to inf; 1e308 or inf is a typo, not a video.
MAX_DURATION = 31 * 24 * 3600.0


def check_duration(duration: Any, where: str = "duration") -> float:
    """A duration in seconds: a real number (not a bool, not text), finite, > 0 and at most
    :data:`MAX_DURATION`; anything else is a :class:`UsageError`/:class:`InputTypeError`."""
    if isinstance(duration, bool) or not isinstance(
        duration, int | float | np.integer | np.floating
    ):
        raise InputTypeError(f"{where} must be a number of seconds, got {duration!r}")
    value = float(duration)
    if not math.isfinite(value) or not 0 < value <= MAX_DURATION:
        raise UsageError(
            f"{where} must be a finite number of seconds in (0, {MAX_DURATION:.0f}], got {value}"
        )
    return value


def check_topk(topk: Any) -> int:
    """``topk``: an int in 1..:data:`~dynpath.config.MAX_TOPK` (a bool, a float or text such as
    ``"5"`` is refused; so is 1e9, which would run for hours without an answer)."""
    if isinstance(topk, bool) or not isinstance(topk, int | np.integer):
        raise InputTypeError(f"topk must be an integer >= 1, got {topk!r}")
    if topk < 1:
        raise UsageError(f"topk must be >= 1, got {topk}")
    if topk > MAX_TOPK:
        raise UsageError(f"topk must be at most {MAX_TOPK}, got {topk}")
    return int(topk)


def check_query(query: Any) -> str:
    """``query``: text (``bytes`` must be decoded by the caller, which knows the encoding)."""
    if isinstance(query, bytes | bytearray):
        raise InputTypeError("query must be text (str), got bytes; decode it first")
    if not isinstance(query, str):
        raise InputTypeError(f"query must be text (str), got {type(query).__name__}")
    return query


def as_matrix(features: Any) -> np.ndarray:
    """Array-likes (nested lists, object arrays of rows) to a float32 [T, D] matrix."""
    if isinstance(features, str | bytes):
        raise InputTypeError("features must be a [T, D] array of numbers, got text")
    try:
        arr = np.asarray(features)
        if arr.dtype == object:
            arr = np.stack([np.asarray(row, dtype=np.float32) for row in arr])
        if arr.dtype == bool or arr.dtype.kind not in "biuf":
            raise TypeError(arr.dtype)
        with np.errstate(over="ignore"):
            arr = arr.astype(np.float32, copy=False)
    except (TypeError, ValueError):
        raise InputTypeError("features must be a [T, D] array of numbers") from None
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise DataError(f"features must be a non-empty [T, D] matrix, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise DataError("features contain NaN/Inf")
    return arr


def video_duration(path: Path) -> float:
    """Duration in seconds from the container (stream duration, else container duration)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        if container.duration is not None:
            return float(container.duration) / 1_000_000
    raise DataError(f"{path}: the container declares no duration")


def store_duration(attrs: dict[str, Any], positions: int, store: str, video_id: str) -> float:
    """Duration of a video in a feature store, from the best metadata available.

    ``attrs["video"]`` (the video's dataset attributes written by ``dynpath extract``):
    ``n_frames / fps`` (frames fed to the backbone at their rate); else a file-level
    ``durations`` mapping; else ``T * stride / fps`` from the file attributes (``fps`` 0 means
    "each video's own rate" and cannot be used). The annotation's duration, when the caller has
    it, is better than all of these: pass ``duration``.
    """
    video = attrs.get("video") or {}
    where = f"{store}: video {video_id!r}"
    n_frames = _store_number(video.get("n_frames"), f"{where} attribute n_frames")
    video_fps = _store_number(video.get("fps"), f"{where} attribute fps")
    if n_frames and video_fps:
        return _store_seconds(
            n_frames / video_fps, f"{where}: n_frames {n_frames:g} / fps {video_fps:g}"
        )
    durations = attrs.get("durations")
    if isinstance(durations, dict) and video_id in durations:
        value = _store_number(durations[video_id], f"{store}: durations[{video_id!r}]")
        return _store_seconds(value or 0.0, f"{store}: durations[{video_id!r}]")
    fps = _store_number(attrs.get("fps"), f"{store}: file attribute fps")
    stride = _store_number(attrs.get("stride"), f"{store}: file attribute stride")
    if fps and stride:
        return _store_seconds(
            positions * stride / fps,
            f"{where}: {positions} positions x stride {stride:g} / fps {fps:g}",
        )
    raise DataError(f"{store}: no duration for {video_id!r}; pass the duration in seconds")


def _store_number(value: Any, where: str) -> float | None:
    """A frame count or rate read from a feature store: None when absent or 0 ("not known");
    else a finite number > 0, or a :class:`DataError` naming the store, the video and the
    attribute (a bool, a text, NaN, inf or a negative value is a damaged store, not a rate)."""
    if value is None or (isinstance(value, str | bytes) and not value):
        return None
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value.item()
    if isinstance(value, bool | np.bool_) or not isinstance(
        value, int | float | np.integer | np.floating
    ):
        raise DataError(f"{where} must be a number > 0, got {value!r}; re-extract the features")
    number = float(value)
    if number == 0:
        return None
    if not math.isfinite(number) or number < 0:
        raise DataError(
            f"{where} must be a finite number > 0, got {number}; re-extract the features"
        )
    return number


def _store_seconds(seconds: float, where: str) -> float:
    """A duration computed from store attributes, in (0, MAX_DURATION], or a DataError naming
    the attributes it came from (1e308 frames at 1e-308 fps is not a video length)."""
    if not math.isfinite(seconds) or not 0 < seconds <= MAX_DURATION:
        raise DataError(
            f"{where} give a duration of {seconds:g} seconds, not in (0, {MAX_DURATION:.0f}]; "
            "fix the store's attributes or pass the duration in seconds"
        )
    return seconds
