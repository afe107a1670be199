"""MomentDataset, vectorised collate (shapes, masks, labels) and seeded DataLoader determinism."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dynpath.config import Config
from dynpath.data.dataset import MomentDataset, collate, make_loader
from dynpath.data.features import write_features
from dynpath.data.spans import seconds_to_indices
from dynpath.data.types import Moment
from dynpath.data.vocab import UNK_ID, Vocabulary, build_vocabulary
from dynpath.errors import DataError

ATTRS = {
    "backbone": "i3d",
    "fps": 24.0,
    "window": 16,
    "stride": 16,
    "pretrained": False,
    "weights": None,
}
DIM = 6
LENGTHS = {"A": 10, "B": 40, "C": 7, "D": 25}  # B and D are longer than max_len=16
DURS = {"A": 20.0, "B": 80.0, "C": 14.0, "D": 50.0}


@pytest.fixture
def store(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    data = {k: rng.standard_normal((t, DIM)).astype(np.float32) for k, t in LENGTHS.items()}
    path = tmp_path / "feats.h5"
    write_features(path, data, ATTRS)
    return path


def make_moments() -> list[Moment]:
    specs = [
        ("A", "person opens the door", 2.0, 6.0),
        ("B", "person sits down on the chair slowly", 10.0, 80.0),
        ("C", "someone laughs", 0.0, 14.0),
        ("D", "the person eats a sandwich quickly and leaves", 12.5, 13.0),
        ("A", "a man zorbles", 19.0, 20.0),
    ]
    return [Moment(f"q{i}", v, q, s, e, DURS[v], "train") for i, (v, q, s, e) in enumerate(specs)]


@pytest.fixture
def vocab() -> Vocabulary:
    ms = make_moments()
    v, _ = build_vocabulary({"train": ms[:4]}, embeddings=None, dim=8, seed=0)
    return v


def test_items_resampled_and_cached(store: Path, vocab: Vocabulary) -> None:
    ds = MomentDataset(make_moments(), store, vocab, max_len=16)
    item = ds[1]
    assert item["video"].shape == (16, DIM) and item["video"].dtype == np.float32
    assert ds[0]["video"].shape == (10, DIM)
    assert ds[4]["video"] is ds[0]["video"]  # same video read once
    assert item["words"].dtype == np.int64 and item["words"][-1] != UNK_ID
    assert ds[4]["words"][-1] == UNK_ID  # 'zorbles' not in the training vocabulary
    small = MomentDataset(make_moments(), store, vocab, max_len=16, cache_size=1)
    small[0], small[1]
    assert list(small._cache) == ["B"]


def test_missing_video_fails_at_construction(store: Path, vocab: Vocabulary) -> None:
    ms = [*make_moments(), Moment("qx", "ZZZ", "person", 0.0, 1.0, 2.0, "train")]
    with pytest.raises(DataError, match=r"1 of 5 videos have no features, e\.g\. ZZZ"):
        MomentDataset(ms, store, vocab, max_len=16)


def test_collate_shapes_masks_labels(store: Path, vocab: Vocabulary) -> None:
    ds = MomentDataset(make_moments(), store, vocab, max_len=16)
    batch = collate([ds[i] for i in range(5)])
    b = len(batch)
    assert b == 5 and batch.video.shape == (5, 16, DIM) and batch.video.dtype == torch.float32
    assert batch.num_positions.tolist() == [10, 16, 7, 16, 10]
    assert batch.video_mask.dtype == torch.bool
    assert batch.video_mask.sum(1).tolist() == [10, 16, 7, 16, 10]
    assert (batch.video[2, 7:] == 0).all()
    lengths = [len(ds[i]["words"]) for i in range(5)]
    assert batch.words.shape == (5, max(lengths)) and batch.words.dtype == torch.int64
    assert batch.word_mask.sum(1).tolist() == lengths
    assert (batch.words[~batch.word_mask] == 0).all() and (batch.words[batch.word_mask] > 0).all()
    # labels: DESIGN mapping on the RESAMPLED length
    # A: 10 positions over 20 s, [2, 6) -> 1..2 ; B: 16 over 80 s, [10, 80] -> 2..15
    # C: whole video -> 0..6 ; D: 16 over 50 s, [12.5, 13) -> 4..4 ; A: [19, 20] -> 9..9
    assert batch.start.tolist() == [1, 2, 0, 4, 9]
    assert batch.end.tolist() == [2, 15, 6, 4, 9]
    exp_s, exp_e = seconds_to_indices(
        batch.gt_seconds[:, 0].double().numpy(),
        batch.gt_seconds[:, 1].double().numpy(),
        batch.durations.double().numpy(),
        batch.num_positions.numpy(),
    )
    assert exp_s.tolist() == batch.start.tolist() and exp_e.tolist() == batch.end.tolist()
    assert batch.inner.dtype == torch.float32
    assert batch.inner.sum(1).tolist() == [2.0, 14.0, 7.0, 1.0, 1.0]
    for k in range(b):
        on = batch.inner[k].nonzero().flatten().tolist()
        assert on == list(range(int(batch.start[k]), int(batch.end[k]) + 1))
    assert not (batch.inner.bool() & ~batch.video_mask).any()
    assert batch.gt_seconds.dtype == torch.float32 and batch.gt_seconds[1].tolist() == [10.0, 80.0]
    assert batch.qids == [f"q{i}" for i in range(5)] and batch.vids[3] == "D"


def _cfg(store: Path, workers: int = 0) -> Config:
    return Config.model_validate(
        {"data": {"features": str(store), "max_len": 16}, "train": {"num_workers": workers}}
    )


def _order(loader: DataLoader[Any]) -> list[str]:
    return [q for batch in loader for q in batch.qids]


def test_loader_is_deterministic_by_seed(store: Path, vocab: Vocabulary) -> None:
    ms = make_moments() * 6
    ms = [
        Moment(f"q{i}", m.vid, m.query, m.start, m.end, m.duration, m.split)
        for i, m in enumerate(ms)
    ]
    cfg = _cfg(store)
    a = make_loader(ms, cfg, vocab, shuffle=True, seed=5, batch_size=4)
    b = make_loader(ms, cfg, vocab, shuffle=True, seed=5, batch_size=4)
    c = make_loader(ms, cfg, vocab, shuffle=True, seed=6, batch_size=4)
    first = _order(a)
    assert first == _order(b) and first != _order(c)
    assert sorted(first) == sorted(m.qid for m in ms)
    assert _order(a) != first  # next epoch reshuffles, still seeded
    plain = make_loader(ms, cfg, vocab, shuffle=False, seed=0, batch_size=7)
    assert _order(plain) == [m.qid for m in ms]


def test_loader_with_worker_processes(store: Path, vocab: Vocabulary) -> None:
    ms = make_moments()
    cfg = _cfg(store, workers=2)
    serial = make_loader(ms, _cfg(store), vocab, shuffle=True, seed=1, batch_size=2)
    parallel = make_loader(ms, cfg, vocab, shuffle=True, seed=1, batch_size=2)
    s_batches, p_batches = list(serial), list(parallel)
    assert [b.qids for b in s_batches] == [b.qids for b in p_batches]
    for x, y in zip(s_batches, p_batches, strict=True):
        assert torch.equal(x.video, y.video) and torch.equal(x.inner, y.inner)
