"""Rendering a plan to frames (pure numpy) and the H.264 mp4 round trip (PyAV, x264
single-threaded so the same plan gives identical decoded frames).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import av
import numpy as np

from dynpath.data.synthetic.grammar import (
    BACKGROUND,
    BLINK_PERIOD,
    COLOURS,
    CORNER,
    GROW_FACTOR,
    MOVE_SPEED,
    MOVE_TO,
    OBJECT_RADIUS,
    POSTURE_SCALE,
    SHRINK_FACTOR,
    SPIN_SPEED,
)
from dynpath.data.synthetic.planner import EventSpec, VideoSpec
from dynpath.errors import DataError
from dynpath.io import atomic_path


@dataclass
class _State:
    x: float  # centre, fractions of the frame side
    y: float
    scale: float = 1.0
    angle: float = 0.0
    visible: bool = True
    hollow: bool = False
    striped: bool = False


_CORNERS = {
    "top_left": (CORNER, CORNER),
    "top_right": (1 - CORNER, CORNER),
    "bottom_left": (CORNER, 1 - CORNER),
    "bottom_right": (1 - CORNER, 1 - CORNER),
}


def _apply_sub(action: str, st: _State, dt: float, length: float) -> _State:
    """State ``dt`` seconds into a sub-action of ``length`` seconds that started in ``st``."""
    out = replace(st)
    if action in MOVE_TO:  # slide towards the edge line, then stay there: position is coarse
        axis, line = MOVE_TO[action]
        start = st.x if axis == 0 else st.y
        travel = line - start
        pos = start + math.copysign(min(abs(travel), MOVE_SPEED * dt), travel)
        if axis == 0:
            out.x = pos
        else:
            out.y = pos
    elif action in ("grow", "shrink"):
        factor = GROW_FACTOR if action == "grow" else SHRINK_FACTOR
        out.scale *= factor ** min(1.0, dt / max(length, 1e-6))
    elif action == "spin":
        out.angle += SPIN_SPEED * dt
    elif action == "blink":
        out.visible = (dt % BLINK_PERIOD) >= BLINK_PERIOD / 2
    else:
        raise DataError(f"synth: unknown sub-action {action!r}")
    return out


def _state_at(ev: EventSpec, t: float, home: tuple[float, float]) -> _State:
    """The object's state at time t inside event ``ev`` (the object is reset after ``end``)."""
    st = _State(*home)
    if ev.kind == "posture":
        p = ev.actions[0]
        if p in POSTURE_SCALE:
            st.scale = POSTURE_SCALE[p]
        elif p == "hollow":
            st.hollow = True
        elif p == "striped":
            st.striped = True
        elif p in _CORNERS:
            st.x, st.y = _CORNERS[p]
        else:
            raise DataError(f"synth: unknown posture {p!r}")
        return st
    assert ev.switch is not None
    if t < ev.switch:
        return _apply_sub(ev.actions[0], st, t - ev.start, ev.switch - ev.start)
    mid = _apply_sub(ev.actions[0], st, ev.switch - ev.start, ev.switch - ev.start)
    mid.visible = True  # a blink ends visible, whatever its phase
    return _apply_sub(ev.actions[1], mid, t - ev.switch, ev.end - ev.switch)


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside test in object coordinates (radius 1, y down)."""
    if shape == "circle":
        return u * u + v * v <= 1.0
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.86
    if shape == "triangle":  # equilateral, apex up, inradius 0.6
        m = v <= 0.6
        for ang in (math.radians(210), math.radians(330)):
            m &= u * math.cos(ang) + v * math.sin(ang) <= 0.6
        return m
    if shape == "cross":
        au, av_ = np.abs(u), np.abs(v)
        return ((au <= 0.36) & (av_ <= 1.0)) | ((av_ <= 0.36) & (au <= 1.0))
    raise DataError(f"synth: unknown shape {shape!r}")


def render_video(spec: VideoSpec) -> np.ndarray:
    """All frames of ``spec`` as uint8 [F, S, S, 3] RGB (vectorised over frames per object)."""
    n, size = spec.num_frames, spec.size
    frames = np.empty((n, size, size, 3), dtype=np.uint8)
    frames[:] = np.array(BACKGROUND, dtype=np.uint8)
    grid = (np.arange(size, dtype=np.float32) + 0.5) / size
    times = np.arange(n, dtype=np.float64) / spec.fps
    by_obj: dict[int, list[EventSpec]] = {}
    for ev in spec.events:
        by_obj.setdefault(ev.obj, []).append(ev)
    for o, obj in enumerate(spec.objects):
        cx = np.empty(n, np.float32)
        cy = np.empty(n, np.float32)
        radius = np.empty(n, np.float32)
        angle = np.zeros(n, np.float32)
        visible = np.ones(n, bool)
        hollow = np.zeros(n, bool)
        striped = np.zeros(n, bool)
        evs = by_obj.get(o, [])
        for k, t in enumerate(times):
            st = _State(*obj.home)
            for ev in evs:
                if ev.start <= t < ev.end:
                    st = _state_at(ev, float(t), obj.home)
                    break
            cx[k] = st.x
            cy[k] = st.y
            radius[k] = OBJECT_RADIUS * st.scale
            angle[k] = st.angle
            visible[k] = st.visible
            hollow[k] = st.hollow
            striped[k] = st.striped
        # Offsets in frame sides (the frame edge clips), rotated into object coordinates.
        ddx = grid[None, None, :] - cx[:, None, None]
        ddy = grid[None, :, None] - cy[:, None, None]
        cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
        r = radius[:, None, None]
        u = (ddx * cos + ddy * sin) / r
        v = (-ddx * sin + ddy * cos) / r
        mask = _shape_mask(obj.shape, u, v)
        if hollow.any():
            inner = _shape_mask(obj.shape, u / 0.55, v / 0.55)
            mask &= ~(inner & hollow[:, None, None])
        if striped.any():
            stripes = (np.floor((u + 8.0) * 2.5) % 2) == 0
            mask &= ~(~stripes & striped[:, None, None])
        if not visible.all():
            mask &= visible[:, None, None]
        frames[mask] = np.array(COLOURS[obj.colour], dtype=np.uint8)
    return frames


def encode_video(frames: np.ndarray, path: Path, fps: int, crf: int = 20) -> None:
    """Write frames as H.264 mp4 (libx264 ultrafast, yuv420p, one thread for determinism)."""
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream(
            "libx264", rate=fps, options={"preset": "ultrafast", "crf": str(crf), "threads": "1"}
        )
        stream.width = frames.shape[2]
        stream.height = frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.thread_count = 1
        for img in frames:
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def decode_video(path: Path) -> np.ndarray:
    """Decode every frame of ``path`` as uint8 [F, H, W, 3] RGB (tests and quick checks)."""
    try:
        with av.open(str(path)) as container:
            imgs = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    except (av.FFmpegError, OSError) as err:
        raise DataError(f"{path}: cannot decode video: {err}") from None
    if not imgs:
        raise DataError(f"{path}: no video frames")
    return np.stack(imgs)


def _render_one(job: tuple[VideoSpec, str]) -> tuple[str, int]:
    spec, path = job
    frames = render_video(spec)
    with atomic_path(path, suffix=".mp4") as tmp:
        encode_video(frames, tmp, spec.fps)
    return spec.vid, int(frames.shape[0])
