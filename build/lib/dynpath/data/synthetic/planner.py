"""Plans: which objects, events, moments and sentences each video has, from ``(seed, index)``
and the sizes only, so a video's plan never depends on another's (deterministic, parallel).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from dynpath.data.synthetic.grammar import (
    COLOURS,
    HOME_RING,
    MIN_CLIPS,
    MIN_GAP,
    MIN_TRAVEL,
    MOMENT_FRACTION,
    MOVE_TO,
    ORDERED_TEMPLATES,
    POSTURE_TEMPLATES,
    POSTURES,
    SHAPES,
    SLACK,
    SUB_ACTIONS,
)
from dynpath.errors import DataError


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
