"""Video decoding with PyAV (any container/codec the bundled FFmpeg reads), streamed frame by frame.

:class:`VideoReader` yields RGB uint8 frames of ``size x size``: short side resized to ``size``
(FFmpeg's swscale, bilinear, aspect kept), then centre-cropped — the frame geometry both supported
ports feed their networks (pytorch-i3d: short side ~224 then 224 crop; c3d-pytorch: 112 x 200
then 112 crop). Frames are streamed, never all held in memory, so hour-long videos at 224 px work.

Frame rate: ``frame_rate=None`` keeps the video's own rate (every decoded frame is used). This is
what the synthetic benchmark needs (its frames are at the video's fps) and what the common
Charades I3D features used (all frames at 24 fps). A number resamples by sample-and-hold on the
presentation timestamps: output frame ``k`` is the last source frame shown at time ``k / rate``,
so frames are dropped (downsampling) or repeated (upsampling) and durations are preserved.

Any decoding failure (unreadable container, no video stream, a corrupt or truncated stream that
makes FFmpeg raise, zero decoded frames) is a :class:`dynpath.errors.DataError` naming the file:
a partially decoded video would silently cover less time than its annotations say.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from dynpath.errors import DataError

VIDEO_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".mov", ".avi", ".webm", ".mkv", ".mpg", ".mpeg", ".flv", ".wmv", ".ts",
     ".3gp", ".ogv"}
)  # fmt: skip

_DECODE_ERRORS = (av.FFmpegError, EOFError, UnicodeDecodeError)


def list_videos(directory: Path) -> list[Path]:
    """Video files directly in ``directory`` (by suffix, sorted); ids are file stems, unique."""
    if not directory.is_dir():
        raise DataError(f"{directory}: videos directory not found")
    paths = sorted(
        p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES
    )
    seen: dict[str, Path] = {}
    for p in paths:
        if p.stem in seen:
            raise DataError(
                f"{directory}: two videos share the id {p.stem!r}: {seen[p.stem].name}, {p.name}"
            )
        seen[p.stem] = p
    return paths


def resize_dims(width: int, height: int, size: int) -> tuple[int, int]:
    """(w, h) with the short side equal to ``size`` and the aspect ratio kept (rounded)."""
    if width <= height:
        return size, max(size, round(height * size / width))
    return max(size, round(width * size / height)), size


class VideoReader:
    """Iterate the RGB frames of one video at a target rate, resized and centre-cropped.

    Use as a context manager; ``fps`` (the rate of the yielded frames) and ``source_fps`` are
    known after opening, ``frames`` (the count yielded) after iterating.
    """

    def __init__(self, path: str | Path, size: int, frame_rate: float | None = None) -> None:
        self.path = Path(path)
        self.size = size
        self.frame_rate = frame_rate
        self.frames = 0
        try:
            self._container = av.open(str(self.path), mode="r")
        except _DECODE_ERRORS as err:
            raise DataError(f"{self.path}: cannot open video: {err}") from None
        except OSError as err:
            raise DataError(f"{self.path}: cannot read video: {err}") from None
        if not self._container.streams.video:
            self._container.close()
            raise DataError(f"{self.path}: no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        rate = self._stream.average_rate or self._stream.guessed_rate or self._stream.base_rate
        self.source_fps = float(rate) if rate else 0.0
        if self.source_fps <= 0 and frame_rate is None:
            self._container.close()
            raise DataError(
                f"{self.path}: the stream declares no frame rate; set extract.frame_rate"
            )
        self.fps = float(frame_rate) if frame_rate else self.source_fps
        # one converter for all the frames: ``VideoFrame.reformat`` builds a new swscale
        # context for every frame (~0.7 ms for a 64x64 frame here, against ~0.04 ms reused;
        # the pixels are the same, tests/test_extract_video.py)
        self._reformatter = VideoReformatter()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    def _to_rgb(self, frame: av.VideoFrame) -> np.ndarray:
        w, h = resize_dims(frame.width, frame.height, self.size)
        if (w, h) != (frame.width, frame.height) or frame.format.name != "rgb24":
            frame = self._reformatter.reformat(
                frame, width=w, height=h, format="rgb24", interpolation="BILINEAR"
            )
        img = frame.to_ndarray()
        top, left = (h - self.size) // 2, (w - self.size) // 2
        return np.ascontiguousarray(img[top : top + self.size, left : left + self.size])

    def _decoded(self) -> Iterator[tuple[av.VideoFrame, float]]:
        """Decoded frames with their time in seconds from the first frame."""
        t0: float | None = None
        t: float | None = None
        index = 0
        try:
            for frame in self._container.decode(self._stream):
                t = frame.time
                if t is None:  # no timestamps: fall back to the nominal rate
                    t = index / self.source_fps if self.source_fps > 0 else float(index)
                if t0 is None:
                    t0 = t
                index += 1
                yield frame, t - t0
        except _DECODE_ERRORS as err:
            raise DataError(
                f"{self.path}: decoding failed after {index} frames (corrupt or truncated): {err}"
            ) from None
        if index:
            self._check_complete(index, (t or 0.0) - (t0 or 0.0))

    def _check_complete(self, decoded: int, last_t: float) -> None:
        """Reject streams that end well before their header says (a truncated download).

        FFmpeg decodes a cut Matroska/WebM file without any error, so the decoded frame count
        and span are compared with the container's own declaration: the frame count when the
        header has one (MP4, AVI), else the duration (the video stream's, else the container's),
        with a tolerance of 2% of the frames, or max(1 s, 10%) of the duration.
        """
        declared = int(self._stream.frames or 0)
        if declared > 0 and decoded < declared - max(2, 0.02 * declared):
            raise DataError(
                f"{self.path}: truncated: decoded {decoded} of the {declared} frames its header "
                "declares"
            )
        if self._stream.duration is not None and self._stream.time_base is not None:
            duration = float(self._stream.duration * self._stream.time_base)
        elif self._container.duration is not None:
            duration = self._container.duration / av.time_base
        else:
            return
        span = last_t + (1.0 / self.source_fps if self.source_fps > 0 else 0.0)
        if duration > 0 and span < duration - max(1.0, 0.1 * duration):
            raise DataError(
                f"{self.path}: truncated: frames cover {span:.2f} s of the {duration:.2f} s its "
                "header declares"
            )

    def __iter__(self) -> Iterator[np.ndarray]:
        """Yield [size, size, 3] uint8 RGB frames; DataError if none can be decoded."""
        self.frames = 0
        if self.frame_rate is None:
            for frame, _ in self._decoded():
                self.frames += 1
                yield self._to_rgb(frame)
        else:
            yield from self._resampled(float(self.frame_rate))
        if self.frames == 0:
            raise DataError(f"{self.path}: no video frames could be decoded (empty video)")

    def _resampled(self, rate: float) -> Iterator[np.ndarray]:
        """Sample-and-hold at ``rate``: output k is the last frame with time <= k / rate."""
        eps = 1e-6
        k = 0
        held: av.VideoFrame | None = None
        held_rgb: np.ndarray | None = None
        last_t = 0.0
        for frame, t in self._decoded():
            while held is not None and k / rate < t - eps:
                if held_rgb is None:  # convert lazily: dropped frames are never converted
                    held_rgb = self._to_rgb(held)
                self.frames += 1
                k += 1
                yield held_rgb
            held, held_rgb, last_t = frame, None, t
        if held is None:
            return
        frame_dur = 1.0 / self.source_fps if self.source_fps > 0 else 1.0 / rate
        end = last_t + frame_dur
        n_total = max(1, math.floor(end * rate + 0.5))  # the duration at the new rate, >= 1 frame
        while k < n_total:
            if held_rgb is None:
                held_rgb = self._to_rgb(held)
            self.frames += 1
            k += 1
            yield held_rgb


def read_frames(path: str | Path, size: int, frame_rate: float | None = None) -> np.ndarray:
    """All frames of a (short) video as [N, size, size, 3] uint8; for tests and small inputs."""
    with VideoReader(path, size, frame_rate) as reader:
        return np.stack(list(reader))
