"""The embedded synthetic benchmark: procedurally animated videos with Charades-STA annotations.

Why it exists: ``dvc repro`` on a fresh machine must run the WHOLE chain (decode video -> features
-> vocab -> train -> evaluate -> report) with no download. So this module writes real mp4 files
(H.264 through PyAV), ``charades_sta_{train,test}.txt``, ``charades.json`` and a GloVe-format text
file, and every later step reads them exactly as it reads the real Charades-STA.

The grammar (documented in docs/synthetic.md) mirrors the paper's two kinds of actions:

* exploitation-type ("ordered"): an object performs two sub-actions in a given order, e.g.
  "the red circle moves left and then grows". Its distractor is the SAME object performing the
  same two sub-actions in the OTHER order elsewhere in the video, so temporal order is needed.
* exploration-type ("posture"): an object holds a static state, e.g. "the blue square rests in
  the top left corner". Its distractor is the same posture held by ANOTHER object elsewhere.

Each pair of events is queried both ways (each event is the target of one query and the distractor
of the other), so no annotation is wasted. Events come one at a time (they never overlap: a clip
feature then shows one action), in a random order with randomly cut free time between them,
independently of the text; query texts recur across videos at different positions. A model that
reads only the query cannot beat the prior of span positions and lengths.

The visual signal is deliberately coarse (large saturated shapes on a plain background, fast
motion, instant onset/offset), because features later come from a 3D-CNN with RANDOM weights.

Determinism: a video's plan depends only on ``(seed, index)`` and the sizes; rendering is pure
numpy on that plan; x264 runs single-threaded. The same seed gives byte-identical annotations and
identical decoded frames.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import av
import numpy as np
from tqdm import tqdm

from dynpath.errors import DataError
from dynpath.io import atomic_path, write_json, write_text

GRAMMAR_VERSION = 1

# ----------------------------------------------------------------------------------- grammar

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (235, 35, 35),
    "green": (30, 205, 60),
    "blue": (45, 85, 250),
    "yellow": (245, 225, 30),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
BACKGROUND: tuple[int, int, int] = (40, 40, 40)

# Sub-actions of the ordered (exploitation-type) family, with their verb phrase.
SUB_ACTIONS: dict[str, str] = {
    "left": "moves left",
    "right": "moves right",
    "up": "moves up",
    "down": "moves down",
    "grow": "grows",
    "shrink": "shrinks",
    "spin": "spins",
    "blink": "blinks",
}
# Held postures of the exploration-type family, with their verb phrase.
POSTURES: dict[str, str] = {
    "big": "stays big",
    "small": "stays small",
    "hollow": "is hollow",
    "striped": "is striped",
    "top_left": "rests in the top left corner",
    "top_right": "rests in the top right corner",
    "bottom_left": "rests in the bottom left corner",
    "bottom_right": "rests in the bottom right corner",
}
ORDERED_TEMPLATES: tuple[str, ...] = (
    "the {obj} {a} and then {b}",
    "the {obj} first {a} then {b}",
    "the {obj} {a} before it {b}",
)
POSTURE_TEMPLATES: tuple[str, ...] = (
    "the {obj} {p}",
    "the {obj} {p} for a while",
)
FAMILIES = {"ordered": "exploitation", "posture": "exploration"}

# Kinematics (units: frame sides and seconds): fast, coarse changes a random 3D-CNN can see.
OBJECT_RADIUS = 0.125  # base radius as a fraction of the frame side (diameter ~ 1/4 frame)
HOME_RING = 0.22  # homes sit on a ring around the centre, 120 degrees apart
MOVE_SPEED = 0.3  # frame sides per second, until the move's edge line is reached
MOVE_TO = {"left": (0, 0.18), "right": (0, 0.82), "up": (1, 0.18), "down": (1, 0.82)}  # axis, line
MIN_TRAVEL = 0.2  # a move must cover at least this much of the frame side (else not planned)
SPIN_SPEED = math.pi  # radians per second
BLINK_PERIOD = 1.0  # seconds; hidden for the first half of each period
GROW_FACTOR = 2.0  # scale multiplier over a whole "grows" sub-action
SHRINK_FACTOR = 0.4
POSTURE_SCALE = {"big": 1.9, "small": 0.5}
CORNER = 0.14  # corner-posture centre distance from the two edges, fraction of the side
MOMENT_FRACTION = (0.10, 0.45)  # moment length / video duration (Beta(2, 2.4) inside, mean 0.26)
MIN_GAP = 1.5  # seconds between two events (the reset must be visible)
SLACK = 0.2  # least share of the free time left between events for random placement
MIN_CLIPS = 3  # shortest moment, in feature clips (clip seconds come from the extract config)


def vocabulary() -> list[str]:
    """Every word the grammar can produce, in a fixed order (the GloVe file's rows)."""
    words: list[str] = []
    phrases = [*COLOURS, *SHAPES, *SUB_ACTIONS.values(), *POSTURES.values()]
    phrases += [*ORDERED_TEMPLATES, *POSTURE_TEMPLATES]
    for phrase in phrases:
        for w in re.findall(r"[a-z]+", re.sub(r"\{[a-z]+\}", " ", phrase)):
            if w not in words:
                words.append(w)
    return words


# ------------------------------------------------------------------------------------ plans


@dataclass(frozen=True)
class SynthParams:
    """Sizes of one synthetic dataset (from cfg.synth, cfg.seed, cfg.vocab.dim, cfg.extract)."""

    seed: int = 12345
    num_videos: int = 240
    queries_per_video: int = 4
    min_duration: float = 24.0
    max_duration: float = 48.0
    fps: int = 8
    size: int = 64
    test_fraction: float = 0.2
    embedding_dim: int = 300
    clip_seconds: float = 1.0  # one feature's span: extract stride / frame rate (8 / 8 fps)

    def check(self) -> None:
        if self.size % 2:
            raise DataError(f"synth.size must be even for yuv420p H.264, got {self.size}")
        if not 0 < self.min_duration <= self.max_duration:
            raise DataError(
                f"synth.min_duration ({self.min_duration}) must be > 0 and <= "
                f"synth.max_duration ({self.max_duration})"
            )
        if self.min_duration * self.fps < 4:
            raise DataError(f"synth.min_duration x synth.fps gives under 4 frames: {self}")
        n_test = test_count(self.num_videos, self.test_fraction)
        if not 1 <= n_test < self.num_videos:
            raise DataError(
                f"synth.test_fraction={self.test_fraction} of {self.num_videos} videos leaves "
                "an empty train or test split"
            )


@dataclass(frozen=True)
class ObjectSpec:
    colour: str
    shape: str
    home: tuple[float, float]  # centre (x, y), fractions of the frame side

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass(frozen=True)
class EventSpec:
    """One thing an object does on [start, end) seconds (0.1 s grid).

    ``kind`` is "ordered" (two sub-actions, switching at ``switch``) or "posture" (one held
    posture). ``query`` is None for an unqueried distractor (odd queries_per_video).
    """

    obj: int
    kind: str
    actions: tuple[str, ...]
    start: float
    end: float
    switch: float | None = None
    query: str | None = None
    partner: int | None = None  # index of the distractor event in the video's event list


@dataclass(frozen=True)
class VideoSpec:
    vid: str
    split: str  # train | test
    duration: float
    fps: int
    size: int
    objects: tuple[ObjectSpec, ...]
    events: tuple[EventSpec, ...] = field(default_factory=tuple)

    @property
    def num_frames(self) -> int:
        return round(self.duration * self.fps)


def test_count(num_videos: int, test_fraction: float) -> int:
    return round(num_videos * test_fraction)


def video_ids(num_videos: int) -> list[str]:
    """Charades-like short ids: S0000, S0001, ... (width grows past 10 000 videos)."""
    width = max(4, len(str(num_videos - 1)))
    return [f"S{i:0{width}d}" for i in range(num_videos)]


VID_PATTERN = re.compile(r"^S\d{4,}\.mp4$")


def _moment_lengths(
    rng: np.random.Generator, n: int, duration: float, min_len: float
) -> np.ndarray:
    """Lengths (ticks of 0.1 s) of ``n`` sequential events that fit in the video.

    Each is drawn as a fraction ``0.10 + 0.35 * Beta(2, 2.4)`` of the video, at least ``min_len``
    seconds (capped at 45% of the video). When they do not fit with MIN_GAP between them and at
    least a SLACK share of free time left for random placement, the part above the floor is
    shrunk proportionally, and in a very short video the floor itself.
    """
    lo, hi = MOMENT_FRACTION
    floor = min(min_len, hi * duration)
    lengths = np.maximum((lo + (hi - lo) * rng.beta(2.0, 2.4, size=n)) * duration, floor)
    budget = (duration - (n - 1) * MIN_GAP) * (1 - SLACK)
    if lengths.sum() > budget:
        floor = min(floor, budget / n)
        excess = lengths - floor
        keep = max(0.0, 1 - (lengths.sum() - budget) / max(float(excess.sum()), 1e-9))
        lengths = floor + excess * keep
    return np.maximum(2, np.floor(lengths * 10)).astype(np.int64)


def _arrange(rng: np.random.Generator, lengths: np.ndarray, duration: float) -> np.ndarray:
    """Start ticks of events of ``lengths`` placed in a random order, never overlapping.

    The free time (the video minus the events and the MIN_GAP between neighbours) is cut at
    uniformly random points, so every arrangement of the gaps is equally likely whatever the text.
    """
    n = len(lengths)
    gap = round(MIN_GAP * 10)
    slack = math.floor(duration * 10 + 1e-6) - int(lengths.sum()) - (n - 1) * gap
    if slack < 0:
        raise DataError(f"synth: {n} events do not fit in a {duration} s video")
    cuts = np.sort(rng.integers(0, slack + 1, size=n))
    before = np.diff(np.concatenate([[0], cuts]))  # free ticks before each event (in order)
    starts = np.empty(n, dtype=np.int64)
    t = 0
    for k, i in enumerate(rng.permutation(n)):
        t += int(before[k]) + (gap if k else 0)
        starts[i] = t
        t += int(lengths[i])
    return starts


def _sub_actions_for(shape: str) -> list[str]:
    # A spinning circle looks exactly like a resting one: never ask for it.
    return [a for a in SUB_ACTIONS if not (a == "spin" and shape == "circle")]


def _moves_ok(actions: tuple[str, ...], home: tuple[float, float]) -> bool:
    """Every move of the sequence travels at least MIN_TRAVEL from where the object is."""
    pos = list(home)
    for action in actions:
        if action in MOVE_TO:
            axis, line = MOVE_TO[action]
            if abs(line - pos[axis]) < MIN_TRAVEL:
                return False
            pos[axis] = line
    return True


def plan_video(params: SynthParams, index: int, split: str) -> VideoSpec:
    """The scene, the events and the queries of video ``index`` (pure function of its inputs)."""
    # The duration is drawn once, outside the retries: retrying crowded plans must not favour
    # long videos (durations stay uniform in [min_duration, max_duration]).
    drawn = np.random.default_rng([params.seed, index]).uniform(
        params.min_duration, params.max_duration
    )
    duration = max(round(float(drawn), 2), 4 / params.fps)
    for attempt in range(100):
        rng = np.random.default_rng([params.seed, index, attempt])
        spec = _try_plan(rng, params, index, split, duration)
        if spec is not None:
            return spec
    raise DataError(
        f"synth: cannot fit {params.queries_per_video} queries into video #{index}; raise "
        "synth.min_duration or lower synth.queries_per_video"
    )


def _try_plan(
    rng: np.random.Generator, params: SynthParams, index: int, split: str, duration: float
) -> VideoSpec | None:
    vid = video_ids(params.num_videos)[index]
    colours = rng.permutation(list(COLOURS))[:3]
    shapes = rng.permutation(list(SHAPES))[:3]
    theta = rng.uniform(0, 2 * math.pi)
    objects = tuple(
        ObjectSpec(
            colour=str(colours[k]),
            shape=str(shapes[k]),
            home=(
                round(0.5 + HOME_RING * math.cos(theta + k * 2 * math.pi / 3), 4),
                round(0.5 + HOME_RING * math.sin(theta + k * 2 * math.pi / 3), 4),
            ),
        )
        for k in range(3)
    )
    # What happens: pairs of (target, distractor) events, each event queried once.
    content: list[tuple[int, str, tuple[str, ...]]] = []
    members: list[tuple[int, str, tuple[str, ...]]]
    for k_pair in range(math.ceil(params.queries_per_video / 2)):
        # Families alternate (not drawn) so that retries of crowded plans cannot skew the mix.
        if (index + k_pair) % 2 == 0:
            o = int(rng.integers(len(objects)))
            subs = _sub_actions_for(objects[o].shape)
            for _ in range(100):  # both orders must be visible from the object's home
                a, b = (str(x) for x in rng.choice(subs, 2, False))
                if _moves_ok((a, b), objects[o].home) and _moves_ok((b, a), objects[o].home):
                    break
            else:
                return None
            members = [(o, "ordered", (a, b)), (o, "ordered", (b, a))]
        else:
            p = str(rng.choice(list(POSTURES)))
            o1, o2 = (int(x) for x in rng.choice(len(objects), size=2, replace=False))
            members = [(o1, "posture", (p,)), (o2, "posture", (p,))]
        if any(m in content for m in members):
            return None  # every (object, family, content) at most once: one answer per query
        content += members
    # When: one event at a time (like the single actor of Charades-STA), in a random order.
    lengths = _moment_lengths(rng, len(content), duration, MIN_CLIPS * params.clip_seconds)
    starts = _arrange(rng, lengths, duration)
    events: list[EventSpec] = []
    for i, (o, kind, acts) in enumerate(content):
        s, e = int(starts[i]), int(starts[i] + lengths[i])
        switch = None
        if kind == "ordered":  # the sub-actions switch at 40-60% of the moment
            switch = (s + round((e - s) * rng.uniform(0.4, 0.6))) / 10
        query: str | None = _sentence(rng, objects[o], kind, acts)
        if i == len(content) - 1 and params.queries_per_video % 2:
            query = None  # odd count: the last pair's second event is a distractor only
        events.append(EventSpec(o, kind, acts, s / 10, e / 10, switch, query, i ^ 1))
    return VideoSpec(vid, split, duration, params.fps, params.size, objects, tuple(events))


def _sentence(
    rng: np.random.Generator, obj: ObjectSpec, family: str, actions: tuple[str, ...]
) -> str:
    if family == "ordered":
        template = str(rng.choice(ORDERED_TEMPLATES))
        a, b = (SUB_ACTIONS[x] for x in actions)
        return template.format(obj=obj.name, a=a, b=b)
    template = str(rng.choice(POSTURE_TEMPLATES))
    return template.format(obj=obj.name, p=POSTURES[actions[0]])


def plan_dataset(params: SynthParams) -> list[VideoSpec]:
    """All video plans; the test videos are a seeded random subset (video-disjoint splits)."""
    params.check()
    n_test = test_count(params.num_videos, params.test_fraction)
    perm = np.random.default_rng([params.seed, 7919]).permutation(params.num_videos)
    test = set(int(i) for i in perm[:n_test])
    return [
        plan_video(params, i, "test" if i in test else "train") for i in range(params.num_videos)
    ]


# ---------------------------------------------------------------------------------- render


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


# ------------------------------------------------------------------------------- writers


def annotation_lines(specs: Sequence[VideoSpec], split: str) -> list[str]:
    """Charades-STA lines ``VID start end##sentence`` (1 decimal), video order, event order."""
    out = []
    for spec in specs:
        if spec.split != split:
            continue
        for ev in spec.events:
            if ev.query is not None:
                out.append(f"{spec.vid} {ev.start:.1f} {ev.end:.1f}##{ev.query}")
    return out


def durations_json(specs: Sequence[VideoSpec]) -> dict[str, dict[str, Any]]:
    """The real ``charades.json`` layout; "actions" stays empty (no Charades classes here)."""
    subset = {"train": "training", "test": "testing"}
    return {
        s.vid: {"subset": subset[s.split], "duration": s.duration, "actions": []} for s in specs
    }


def glove_text(dim: int, seed: int) -> str:
    """Seeded GloVe-format vectors for the grammar's words.

    Words of one role (colours, shapes, directions, ...) share a random group direction, so the
    frozen embeddings carry a little of the structure real GloVe vectors have.
    """
    groups = {
        **{w: "colour" for w in COLOURS},
        **{w: "shape" for w in SHAPES},
        **{w: "direction" for w in ("left", "right", "up", "down", "top", "bottom")},
        **{w: "size" for w in ("grows", "shrinks", "big", "small")},
        **{w: "appearance" for w in ("hollow", "striped", "blinks", "spins")},
    }
    rng = np.random.default_rng([seed, 31337])
    names = sorted(set(groups.values()))
    centres = {g: rng.standard_normal(dim).astype(np.float32) for g in names}
    lines = []
    for word in vocabulary():
        vec = rng.standard_normal(dim).astype(np.float32)
        if word in groups:
            vec = 0.6 * centres[groups[word]] + 0.8 * vec
        vec *= 4.0 / max(float(np.linalg.norm(vec)), 1e-6)  # GloVe-like norm
        lines.append(word + " " + " ".join(f"{x:.5f}" for x in vec))
    return "\n".join(lines) + "\n"


def meta_json(params: SynthParams, specs: Sequence[VideoSpec]) -> dict[str, Any]:
    """Ground truth beyond Charades-STA: each query's family and distractor (for analyses)."""
    queries = []
    for spec in specs:
        for ev in spec.events:
            if ev.query is None:
                continue
            partner = spec.events[ev.partner] if ev.partner is not None else None
            queries.append(
                {
                    "vid": spec.vid,
                    "split": spec.split,
                    "start": ev.start,
                    "end": ev.end,
                    "query": ev.query,
                    "family": FAMILIES[ev.kind],
                    "object": spec.objects[ev.obj].name,
                    "actions": list(ev.actions),
                    "distractor": [partner.start, partner.end] if partner else None,
                }
            )
    return {
        "generator": "dynpath.data.synthetic",
        "grammar_version": GRAMMAR_VERSION,
        "params": asdict(params),
        "videos": [asdict(s) for s in specs],
        "queries": queries,
    }


META_FILE = "synthetic_meta.json"
ANNOTATION_FILES = ("charades_sta_train.txt", "charades_sta_test.txt", "charades.json")


def glove_name(dim: int) -> str:
    return f"glove.synthetic.{dim}d.txt"


def _check_out_dir(out_dir: Path) -> None:
    """Refuse to overwrite a real dataset: only a directory this generator wrote is reused."""
    if any((out_dir / f).exists() for f in ANNOTATION_FILES) and not (out_dir / META_FILE).exists():
        raise DataError(
            f"{out_dir}: holds Charades-STA files not written by `dynpath synth` (no {META_FILE}); "
            "choose another --out or remove them"
        )


def _workers(requested: int | None) -> int:
    if requested is not None:
        return max(1, requested)
    env = os.environ.get("DYNPATH_SYNTH_WORKERS")
    if env:
        return max(1, int(env))
    return max(1, min(8, len(os.sched_getaffinity(0))))


def generate(
    params: SynthParams, out_dir: Path, workers: int | None = None, progress: bool = True
) -> dict[str, Any]:
    """Write the whole dataset under ``out_dir``; annotations land last, each atomically.

    A killed run leaves, at worst, complete videos and the previous annotation files (or none):
    never a half-written annotation file nor a truncated mp4.
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    specs = plan_dataset(params)
    videos = out_dir / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    wanted = {f"{s.vid}.mp4" for s in specs}
    for stale in sorted(videos.iterdir()):  # a previous, larger run's videos would be extracted
        if VID_PATTERN.match(stale.name) and stale.name not in wanted:
            stale.unlink()
    jobs = [(s, str(videos / f"{s.vid}.mp4")) for s in specs]
    n_workers = min(_workers(workers), len(jobs))
    frames = 0
    # disable=None: drawn on a terminal only (a log file would get one line per redraw)
    bar = tqdm(
        total=len(jobs), desc="synth videos", unit="video", disable=None if progress else True
    )
    try:
        results: Iterator[tuple[str, int]]
        if n_workers == 1:
            results = map(_render_one, jobs)
            for _, n in results:
                frames += n
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=n_workers) as pool:
                for _, n in pool.map(_render_one, jobs, chunksize=4):
                    frames += n
                    bar.update()
    finally:
        bar.close()
    write_text(
        out_dir / glove_name(params.embedding_dim), glove_text(params.embedding_dim, params.seed)
    )
    write_json(out_dir / META_FILE, meta_json(params, specs))
    write_json(out_dir / "charades.json", durations_json(specs))
    counts: dict[str, Any] = {}
    for split in ("train", "test"):
        lines = annotation_lines(specs, split)
        write_text(out_dir / f"charades_sta_{split}.txt", "\n".join(lines) + "\n")
        counts[f"{split}_queries"] = len(lines)
        counts[f"{split}_videos"] = sum(s.split == split for s in specs)
    families: dict[str, int] = {}
    for s in specs:
        for ev in s.events:
            if ev.query is not None:
                families[FAMILIES[ev.kind]] = families.get(FAMILIES[ev.kind], 0) + 1
    return {
        "out_dir": str(out_dir),
        "videos": len(specs),
        **counts,
        "families": families,
        "frames": frames,
        "vocabulary": len(vocabulary()),
        "workers": n_workers,
        "seconds": round(time.perf_counter() - t0, 2),
    }
