"""The synthetic benchmark: grammar, plan properties, rendering, files, determinism, atomicity."""

from __future__ import annotations

import itertools
import json
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from dynpath.config import Config
from dynpath.data import synthetic as syn
from dynpath.data.synthetic import EventSpec, ObjectSpec, SynthParams, VideoSpec
from dynpath.errors import DataError
from dynpath.steps import synth as synth_step

TINY = SynthParams(
    seed=7, num_videos=6, queries_per_video=2, min_duration=4.0, max_duration=8.0, size=32
)
# The default profile's sizes with the recommended durations (planning only: no rendering).
DEFAULT = SynthParams(num_videos=480, queries_per_video=4, min_duration=16.0, max_duration=32.0)
LINE = re.compile(r"^(S\d{4,}) (\d+\.\d) (\d+\.\d)##([a-z ]+)$")


@pytest.fixture(scope="module")
def default_plan() -> list[VideoSpec]:
    return syn.plan_dataset(DEFAULT)


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict, dict]:
    a, b = tmp_path_factory.mktemp("syn_a"), tmp_path_factory.mktemp("syn_b")
    ra = syn.generate(TINY, a, workers=1, progress=False)
    rb = syn.generate(TINY, b, workers=2, progress=False)
    return a, b, ra, rb


# ------------------------------------------------------------------------------- grammar


def test_vocabulary_is_small_and_covers_every_sentence(default_plan: list[VideoSpec]) -> None:
    vocab = syn.vocabulary()
    assert 30 <= len(vocab) <= 60
    assert len(set(vocab)) == len(vocab)
    used = {w for s in default_plan for e in s.events if e.query for w in e.query.split()}
    assert used <= set(vocab)
    assert len(used) >= len(vocab) - 2  # the grammar is actually exercised


def test_glove_text_format_and_determinism() -> None:
    text = syn.glove_text(12, seed=3)
    rows = text.splitlines()
    assert [r.split()[0] for r in rows] == syn.vocabulary()
    assert all(len(r.split()) == 13 for r in rows)
    assert text == syn.glove_text(12, seed=3)
    assert text != syn.glove_text(12, seed=4)
    vec = {r.split()[0]: np.array(r.split()[1:], dtype=np.float32) for r in rows}

    def cos(a: str, b: str) -> float:
        return float(vec[a] @ vec[b] / np.linalg.norm(vec[a]) / np.linalg.norm(vec[b]))

    # colour words share structure; a colour and a shape much less so (on average over pairs)
    assert cos("red", "blue") > cos("red", "square")


# --------------------------------------------------------------------------------- plans


def test_plan_properties(default_plan: list[VideoSpec]) -> None:
    specs = default_plan
    assert len(specs) == 480
    n_test = sum(s.split == "test" for s in specs)
    assert n_test == 96
    families: Counter[str] = Counter()
    for s in specs:
        assert DEFAULT.min_duration <= s.duration <= DEFAULT.max_duration
        assert len({o.colour for o in s.objects}) == 3 and len({o.shape for o in s.objects}) == 3
        queried = [e for e in s.events if e.query]
        assert len(queried) == DEFAULT.queries_per_video
        assert len({e.query for e in queried}) == len(queried)
        for e in s.events:
            assert 0 <= e.start < e.end <= s.duration
            assert e.start == round(e.start, 1) and e.end == round(e.end, 1)
        for e in queried:
            families[e.kind] += 1
            assert e.partner is not None
            d = s.events[e.partner]
            assert d.kind == e.kind and d.partner == s.events.index(e)
            if e.kind == "ordered":
                assert d.obj == e.obj and d.actions == e.actions[::-1]
                assert e.switch is not None and e.start < e.switch < e.end
                assert syn._moves_ok(e.actions, s.objects[e.obj].home)
            else:
                assert d.obj != e.obj and d.actions == e.actions
        # one event at a time, with a visible gap between neighbours
        spans = sorted((e.start, e.end) for e in s.events)
        for (_, e1), (s2, _) in itertools.pairwise(spans):
            assert s2 - e1 >= syn.MIN_GAP - 1e-6
    assert families["ordered"] == families["posture"] == 960


def test_moments_and_text_independence(default_plan: list[VideoSpec]) -> None:
    """Moments last several clips; the best span a query-only model could learn (per query
    content, or one constant span for all) fails on the test split; texts recur across videos."""
    frac = []
    by_text: dict[str, list[tuple[float, float]]] = {}
    train_all: list[tuple[float, float]] = []
    test: list[tuple[str, float, float]] = []
    for s in default_plan:
        for e in s.events:
            if not e.query:
                continue
            length = e.end - e.start
            frac.append(length / s.duration)
            if s.duration >= 36:  # long enough for MIN_CLIPS clips per moment (docs)
                assert length >= syn.MIN_CLIPS * DEFAULT.clip_seconds - 0.1
            norm = (e.start / s.duration, e.end / s.duration)
            if s.split == "train":
                by_text.setdefault(_content(e.query), []).append(norm)
                train_all.append(norm)
            else:
                test.append((_content(e.query), *norm))
    f = np.array(frac)
    assert 0.12 <= f.mean() <= 0.30 and f.min() >= 0.08 and f.max() <= 0.45 + 1e-6
    # per-content mean span
    glob = np.mean(train_all, axis=0)
    hits = 0
    for content, s0, e0 in test:
        ps, pe = np.mean(by_text[content], axis=0) if content in by_text else glob
        hits += _iou(ps, pe, s0, e0) >= 0.5
    assert hits / len(test) < 0.2
    # the best constant span, chosen on train (an upper bound of any text-blind prior)
    grid = [(a / 40, b / 40) for a in range(40) for b in range(a + 1, 41)]
    best = max(grid, key=lambda g: sum(_iou(*g, s0, e0) >= 0.5 for s0, e0 in train_all))
    const = np.mean([_iou(*best, s0, e0) >= 0.5 for _, s0, e0 in test])
    assert const < 0.3, (best, const)
    assert sum(len(v) > 1 for v in by_text.values()) >= 100  # texts recur across videos


def _content(query: str) -> str:
    """The query without its template words (what a text-only model could key on)."""
    for w in ("and then", "first", "before it", "for a while"):
        query = query.replace(w, "")
    return " ".join(query.split())


def _iou(a0: float, a1: float, b0: float, b1: float) -> float:
    inter = max(0.0, min(a1, b1) - max(a0, b0))
    return inter / (max(a1, b1) - min(a0, b0))


def test_moves_must_travel() -> None:
    """A move ends on its edge line, so it is only planned where it visibly travels."""
    assert syn._moves_ok(("left", "grow"), (0.7, 0.5))
    assert not syn._moves_ok(("left", "grow"), (0.3, 0.5))  # already near the left line
    assert not syn._moves_ok(("left", "left"), (0.7, 0.5))  # the second would not move
    assert syn._moves_ok(("left", "right"), (0.3, 0.5)) is False
    assert syn._moves_ok(("right", "left"), (0.3, 0.5))


def test_plan_is_deterministic_and_seeded() -> None:
    assert syn.plan_dataset(TINY) == syn.plan_dataset(TINY)
    other = SynthParams(**{**TINY.__dict__, "seed": 8})
    assert syn.plan_dataset(other) != syn.plan_dataset(TINY)


def test_bad_sizes_are_reported() -> None:
    with pytest.raises(DataError, match="even"):
        syn.plan_dataset(SynthParams(size=33))
    with pytest.raises(DataError, match="min_duration"):
        syn.plan_dataset(SynthParams(min_duration=10, max_duration=5))
    with pytest.raises(DataError, match="empty train or test"):
        syn.plan_dataset(SynthParams(num_videos=6, test_fraction=0.05))


# ----------------------------------------------------------------------------- rendering


def _one_event_video(event: EventSpec, shape: str = "square") -> VideoSpec:
    obj = ObjectSpec("red", shape, (0.5, 0.5))
    return VideoSpec("S0000", "train", 6.0, 8, 64, (obj,), (event,))


def _red(frames: np.ndarray) -> np.ndarray:
    return (frames[..., 0] > 200) & (frames[..., 1] < 80) & (frames[..., 2] < 80)


def _centroid_x(mask: np.ndarray) -> float:
    return float(np.nonzero(mask)[1].mean())


def test_render_ordered_event_follows_the_plan() -> None:
    ev = EventSpec(0, "ordered", ("right", "grow"), 1.0, 5.0, switch=3.0, query="q")
    frames = syn.render_video(_one_event_video(ev))
    red = _red(frames)
    area = red.sum((1, 2))
    assert frames.shape == (48, 64, 64, 3)
    assert _centroid_x(red[0]) == pytest.approx(31.5, abs=1)  # at home before the event
    assert (red[0] == red[7]).all()  # still until the onset
    assert _centroid_x(red[16]) > _centroid_x(red[9]) + 10  # moves right during [1, 3)
    assert abs(int(area[23]) - int(area[9])) < 0.15 * area[9]  # same size while moving
    assert area[39] > 2.5 * area[9]  # grows during [3, 5)
    assert (red[40] == red[0]).all() and (red[47] == red[0]).all()  # snaps home at the offset


@pytest.mark.parametrize(
    ("posture", "check"),
    [
        ("big", lambda a, b: a > 3 * b),
        ("small", lambda a, b: a < 0.4 * b),
        ("hollow", lambda a, b: a < 0.8 * b),
        ("striped", lambda a, b: 0.3 * b < a < 0.7 * b),
    ],
)
def test_render_posture_is_held(posture: str, check: object) -> None:
    ev = EventSpec(0, "posture", (posture,), 2.0, 4.0, query="q")
    red = _red(syn.render_video(_one_event_video(ev)))
    area = red.sum((1, 2))
    assert callable(check) and check(area[20], area[0])
    assert len(set(area[16:32].tolist())) == 1  # held still
    assert area[32] == area[0]


def test_render_corner_and_blink() -> None:
    ev = EventSpec(0, "posture", ("bottom_left",), 2.0, 4.0, query="q")
    red = _red(syn.render_video(_one_event_video(ev)))
    ys, xs = np.nonzero(red[20])
    assert xs.mean() < 16 and ys.mean() > 48
    ev = EventSpec(0, "ordered", ("blink", "grow"), 2.0, 6.0, switch=4.0, query="q")
    area = _red(syn.render_video(_one_event_video(ev))).sum((1, 2))
    assert area[16] == 0 and area[20] > 0 and area[24] == 0  # hidden, shown, hidden (1 s period)


# ------------------------------------------------------------------------- written files


def test_generated_files_are_consistent(tiny_dirs: tuple[Path, Path, dict, dict]) -> None:
    root, _, summary, _ = tiny_dirs
    durations = json.loads((root / "charades.json").read_text())
    assert set(durations) == {f"S{i:04d}" for i in range(6)}
    seen: dict[str, set[str]] = {}
    for split, subset in (("train", "training"), ("test", "testing")):
        lines = (root / f"charades_sta_{split}.txt").read_text().splitlines()
        assert len(lines) == summary[f"{split}_queries"] > 0
        seen[split] = set()
        for line in lines:
            m = LINE.match(line)
            assert m, line
            vid, start, end = m[1], float(m[2]), float(m[3])
            assert durations[vid]["subset"] == subset
            assert 0 <= start < end <= durations[vid]["duration"]
            seen[split].add(vid)
    assert not seen["train"] & seen["test"]
    meta = json.loads((root / syn.META_FILE).read_text())
    assert {q["family"] for q in meta["queries"]} == {"exploitation", "exploration"}
    assert all(q["distractor"] for q in meta["queries"])
    glove = (root / syn.glove_name(300)).read_text().splitlines()
    assert len(glove) == len(syn.vocabulary()) and len(glove[0].split()) == 301
    for vid, info in durations.items():
        frames = syn.decode_video(root / "videos" / f"{vid}.mp4")
        assert frames.shape[1:] == (32, 32, 3)
        assert abs(len(frames) - info["duration"] * TINY.fps) <= 1


def test_same_seed_same_bytes_and_frames(tiny_dirs: tuple[Path, Path, dict, dict]) -> None:
    a, b, _, _ = tiny_dirs
    for name in (*syn.ANNOTATION_FILES, syn.META_FILE, syn.glove_name(300)):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    for video in sorted((a / "videos").iterdir()):
        fa = syn.decode_video(video)
        assert np.array_equal(fa, syn.decode_video(b / "videos" / video.name))


def test_decoded_video_matches_the_render(tiny_dirs: tuple[Path, Path, dict, dict]) -> None:
    root = tiny_dirs[0]
    spec = syn.plan_dataset(TINY)[0]
    decoded = syn.decode_video(root / "videos" / f"{spec.vid}.mp4").astype(np.int16)
    rendered = syn.render_video(spec).astype(np.int16)
    assert np.abs(decoded - rendered).mean() < 12  # lossy, but the same picture


def test_killed_run_leaves_no_annotation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real = syn._render_one

    def dying(job: tuple[VideoSpec, str]) -> tuple[str, int]:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setattr(syn, "_render_one", dying)
    with pytest.raises(KeyboardInterrupt):
        syn.generate(TINY, tmp_path, workers=1, progress=False)
    assert not any((tmp_path / f).exists() for f in syn.ANNOTATION_FILES)
    assert sorted(p.name for p in (tmp_path / "videos").iterdir()) == ["S0000.mp4", "S0001.mp4"]


def test_refuses_real_data_and_removes_stale_videos(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "charades_sta_train.txt").write_text("AO8RW 0.0 6.9##a person.\n")
    with pytest.raises(DataError, match="not written by"):
        syn.generate(TINY, real, workers=1, progress=False)
    out = tmp_path / "syn"
    (out / "videos").mkdir(parents=True)
    (out / "videos" / "S0099.mp4").write_bytes(b"old")
    (out / "videos" / "mine.mp4").write_bytes(b"user")
    syn.generate(TINY, out, workers=1, progress=False)
    names = {p.name for p in (out / "videos").iterdir()}
    assert "S0099.mp4" not in names and "mine.mp4" in names and len(names) == 7


def test_step_maps_the_config(tmp_path: Path) -> None:
    cfg = Config.model_validate(
        {
            "seed": 7,
            "synth": {
                "num_videos": 6,
                "queries_per_video": 2,
                "min_duration": 4.0,
                "max_duration": 8.0,
                "size": 32,
            },
            "vocab": {"dim": 8},
            "extract": {"stride": 8},
        }
    )
    params = synth_step.params_from_config(cfg)
    assert params.clip_seconds == 1.0 and params.embedding_dim == 8 and params.seed == 7
    result = synth_step.run(cfg, tmp_path, workers=1)
    assert result["videos"] == 6 and result["train_queries"] + result["test_queries"] == 12
    assert result["seconds"] > 0 and math.isfinite(result["seconds"])
    assert (tmp_path / "glove.synthetic.8d.txt").exists()


# ------------------------------------------------------------------------- learnability


def _trivial_features(frames: np.ndarray, window: int) -> np.ndarray:
    """Parameter-free clip features: per window, the mean frame and the mean absolute frame
    difference, each pooled to 4x4x3 (a stand-in for the 3D-CNN, independent of its helpers)."""
    x = frames.astype(np.float32) / 255.0
    t = len(x) // window
    x = x[: t * window].reshape(t, window, 4, x.shape[1] // 4, 4, x.shape[2] // 4, 3)
    mean = x.mean((1, 3, 5)).reshape(t, -1)
    diff = np.abs(np.diff(x, axis=1)).mean((1, 3, 5)).reshape(t, -1) * 4
    return np.concatenate([mean, diff], 1)


@pytest.mark.slow
def test_learnable_from_video_not_from_text(tmp_path: Path) -> None:
    """A small span predictor on trivial features localises well; with shuffled videos (the
    query-only control) it fails. Guards the grammar against changes that leak the answer into
    the text or blur the picture."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    torch.set_num_threads(1)
    params = SynthParams(num_videos=120, min_duration=24.0, max_duration=48.0, size=32)
    syn.generate(params, tmp_path, workers=2, progress=False)
    durations = {
        k: v["duration"] for k, v in json.loads((tmp_path / "charades.json").read_text()).items()
    }
    feats = {
        v: torch.from_numpy(
            _trivial_features(syn.decode_video(tmp_path / "videos" / f"{v}.mp4"), 8)
        )
        for v in durations
    }
    allf = torch.cat(list(feats.values()))
    mu, sd = allf.mean(0), allf.std(0) + 1e-4
    feats = {k: (v - mu) / sd for k, v in feats.items()}
    rows = {
        split: [
            (m[1], float(m[2]), float(m[3]), m[4].split())
            for m in map(
                LINE.match, (tmp_path / f"charades_sta_{split}.txt").read_text().splitlines()
            )
            if m
        ]
        for split in ("train", "test")
    }
    vocab = {w: i + 1 for i, w in enumerate(syn.vocabulary())}

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(len(vocab) + 1, 48, padding_idx=0)
            self.q = nn.GRU(48, 48, batch_first=True, bidirectional=True)
            self.v1 = nn.GRU(96, 48, batch_first=True, bidirectional=True)
            self.film = nn.Linear(96, 192)
            self.v2 = nn.GRU(96, 48, batch_first=True, bidirectional=True)
            self.head = nn.Linear(96, 2)

        def forward(self, v: torch.Tensor, m: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            q, _ = self.q(self.emb(w))
            wm = (w > 0).unsqueeze(-1).float()
            g, b = self.film((q * wm).sum(1) / wm.sum(1)).chunk(2, -1)
            h, _ = self.v1(v)
            h, _ = self.v2(torch.relu(h * g.unsqueeze(1) + b.unsqueeze(1)))
            return self.head(h).masked_fill(~m.unsqueeze(-1), -1e9)

    def batch(rs: list, shuffle: bool) -> tuple[torch.Tensor, ...]:
        src = [r[0] for r in rs]
        if shuffle:
            src = [src[i] for i in torch.randperm(len(src)).tolist()]
        t_max = max(len(feats[s]) for s in src)
        v = torch.zeros(len(rs), t_max, 96)
        m = torch.zeros(len(rs), t_max, dtype=torch.bool)
        w = torch.zeros(len(rs), max(len(r[3]) for r in rs), dtype=torch.long)
        se = torch.zeros(len(rs), 2, dtype=torch.long)
        for i, (r, s) in enumerate(zip(rs, src, strict=True)):
            t = len(feats[s])
            v[i, :t], m[i, :t] = feats[s], True
            w[i, : len(r[3])] = torch.tensor([vocab[x] for x in r[3]])
            d = durations[r[0]]
            se[i, 0] = min(int(r[1] * t / d), t - 1)
            se[i, 1] = max(se[i, 0], min(int(r[2] * t / d), t - 1))
        return v, m, w, se

    def hits_at_iou05(shuffle: bool) -> list[bool]:
        net = Net()
        opt = torch.optim.Adam(net.parameters(), 2e-3)
        train = list(rows["train"])
        for _ in range(25):
            for i in torch.randperm(len(train)).split(32):
                v, m, w, se = batch([train[j] for j in i.tolist()], shuffle)
                logits = net(v, m, w)
                loss = nn.functional.cross_entropy(logits[..., 0], se[:, 0])
                loss = loss + nn.functional.cross_entropy(logits[..., 1], se[:, 1])
                opt.zero_grad()
                loss.backward()
                opt.step()
        net.eval()
        v, m, w, _ = batch(rows["test"], shuffle)
        with torch.no_grad():
            p = net(v, m, w).softmax(1)
        score = torch.triu(p[..., 0].unsqueeze(2) * p[..., 1].unsqueeze(1))
        t_max = score.shape[1]
        best = score.flatten(1).argmax(1)
        hits = []
        for k, r in enumerate(rows["test"]):
            d, t = durations[r[0]], int(m[k].sum())
            s0, e0 = int(best[k]) // t_max * d / t, (int(best[k]) % t_max + 1) * d / t
            hits.append(_iou(s0, e0, r[1], r[2]) >= 0.5)
        return hits

    with_video, text_only = hits_at_iou05(False), hits_at_iou05(True)
    n = len(with_video)
    full, query_only = sum(with_video) / n, sum(text_only) / n
    # Paired sign test over the test queries (not a floor just under one machine's figure, which
    # other kernels or thread counts may undercut): the queries only the video-seeing model gets
    # right must outnumber the reverse far beyond chance, one-sided p < 1e-4 under "the video
    # does not help". Measured 0.61 vs 0.04 here (120 videos, 32 px, 96 queries): p = 3e-15.
    only_video = sum(a and not b for a, b in zip(with_video, text_only, strict=True))
    only_text = sum(b and not a for a, b in zip(with_video, text_only, strict=True))
    trials = only_video + only_text
    p = sum(math.comb(trials, k) for k in range(only_video, trials + 1)) / 2**trials
    print(
        f"\nR@1 IoU0.5 {full:.2f} with video, {query_only:.2f} text only ({n} queries); p={p:.1e}"
    )
    assert p < 1e-4, (full, query_only, only_video, only_text)
    # and the text alone stays near chance: a grammar leaking the answer into the text fails
    assert query_only <= min(0.25, full / 2), (full, query_only)
