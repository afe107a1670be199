"""Moments + features + vocabulary -> padded :class:`~dynpath.data.batch.Batch` (the model input).

:class:`MomentDataset` returns per-item numpy arrays; :func:`collate` pads them and derives the
index labels in one vectorised pass with :mod:`dynpath.data.spans` on the RESAMPLED length of
each video, so training labels, evaluation and the localizer share one seconds <-> index mapping.

Each video is read from HDF5 once per process and kept (resampled) in an in-memory LRU cache:
the features of Charades-STA/TACoS-sized sets fit in memory, and several queries share a video.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from dynpath.data.batch import Batch
from dynpath.data.features import FeatureStore, FloatArray, resample
from dynpath.data.spans import seconds_to_indices
from dynpath.data.types import Moment
from dynpath.data.vocab import Vocabulary
from dynpath.errors import DataError

if TYPE_CHECKING:
    from dynpath.config import Config

Item = dict[str, Any]


class MomentDataset(Dataset[Item]):
    """Items ``{video [T, D] f32, words [L] i64, start, end, duration (seconds), qid, vid, query}``.

    Construction fails fast (DataError) when a video has no features or a query has no tokens,
    rather than in the middle of an epoch. ``cache_size`` = None keeps every video read.
    """

    def __init__(
        self,
        moments: Sequence[Moment],
        store: FeatureStore | str | Path,
        vocab: Vocabulary,
        max_len: int,
        max_query_len: int | None = None,
        cache_size: int | None = None,
    ) -> None:
        self.moments = list(moments)
        self.store = store if isinstance(store, FeatureStore) else FeatureStore(store)
        self.max_len = max_len
        self.cache_size = cache_size
        missing = self.store.missing(m.vid for m in self.moments)
        if missing:
            n_vids = len({m.vid for m in self.moments})
            raise DataError(
                f"{self.store.path}: {len(missing)} of {n_vids} videos have no features, "
                f"e.g. {', '.join(missing[:5])}"
            )
        self.store.check_dtypes(m.vid for m in self.moments)
        self._words = [
            np.asarray(vocab.encode(m.query, max_query_len, qid=m.qid), dtype=np.int64)
            for m in self.moments
        ]
        self._cache: OrderedDict[str, FloatArray] = OrderedDict()

    def __len__(self) -> int:
        return len(self.moments)

    def features(self, vid: str) -> FloatArray:
        """Resampled features of ``vid`` (read-only array shared by the items of that video)."""
        cached = self._cache.get(vid)
        if cached is not None:
            self._cache.move_to_end(vid)
            return cached
        arr = resample(self.store.read(vid), self.max_len)
        arr.flags.writeable = False
        self._cache[vid] = arr
        if self.cache_size is not None and len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return arr

    def __getitem__(self, index: int) -> Item:
        m = self.moments[index]
        return {
            "video": self.features(m.vid),
            "words": self._words[index],
            "start": m.start,
            "end": m.end,
            "duration": m.duration,
            "qid": m.qid,
            "vid": m.vid,
            "query": m.query,
        }


def collate(items: Sequence[Item]) -> Batch:
    """Pad a list of items into a :class:`Batch` (float32 / int64 / bool tensors)."""
    if not items:
        raise ValueError("cannot collate an empty list of items")
    b = len(items)
    lengths = np.fromiter((it["video"].shape[0] for it in items), np.int64, count=b)
    n_words = np.fromiter((it["words"].shape[0] for it in items), np.int64, count=b)
    t_max, l_max = int(lengths.max()), int(n_words.max())
    dim = int(items[0]["video"].shape[1])
    video = np.zeros((b, t_max, dim), dtype=np.float32)
    words = np.zeros((b, l_max), dtype=np.int64)
    for k, it in enumerate(items):
        video[k, : lengths[k]] = it["video"]
        words[k, : n_words[k]] = it["words"]
    # Indices from the exact (float64, B values) seconds: a float32 round-off must not move a
    # boundary that sits exactly on a bin edge. The tensors themselves are float32.
    starts = np.fromiter((it["start"] for it in items), np.float64, count=b)
    ends = np.fromiter((it["end"] for it in items), np.float64, count=b)
    durations = np.fromiter((it["duration"] for it in items), np.float64, count=b)
    s_idx, e_idx = seconds_to_indices(starts, ends, durations, lengths)
    pos_t = np.arange(t_max)[None, :]
    inner = ((pos_t >= s_idx[:, None]) & (pos_t <= e_idx[:, None])).astype(np.float32)
    return Batch(
        video=torch.from_numpy(video),
        video_mask=torch.from_numpy(pos_t < lengths[:, None]),
        words=torch.from_numpy(words),
        word_mask=torch.from_numpy(np.arange(l_max)[None, :] < n_words[:, None]),
        start=torch.from_numpy(s_idx),
        end=torch.from_numpy(e_idx),
        inner=torch.from_numpy(inner),
        durations=torch.from_numpy(durations.astype(np.float32)),
        gt_seconds=torch.from_numpy(np.stack([starts, ends], axis=1).astype(np.float32)),
        num_positions=torch.from_numpy(lengths),
        qids=[it["qid"] for it in items],
        vids=[it["vid"] for it in items],
        queries=[it["query"] for it in items],
    )


def _seed_worker(worker_id: int) -> None:
    """Seed numpy in each worker from torch's per-worker seed (itself from the generator)."""
    np.random.seed(torch.initial_seed() % 2**32)


def make_loader(
    moments: Sequence[Moment],
    cfg: Config,
    vocab: Vocabulary,
    shuffle: bool,
    seed: int,
    batch_size: int,
    dataset: MomentDataset | None = None,
) -> DataLoader[Item]:
    """A DataLoader over ``moments`` whose order depends only on ``seed`` (seeded generator).

    Pass ``dataset`` to reuse an existing :class:`MomentDataset` (and its feature cache).
    """
    ds = dataset or MomentDataset(
        moments, cfg.data.features, vocab, cfg.data.max_len, cfg.vocab.max_query_len
    )
    generator = torch.Generator()
    generator.manual_seed(seed)
    workers = cfg.train.num_workers
    return DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=shuffle,
        collate_fn=collate,
        num_workers=workers,
        generator=generator,
        worker_init_fn=_seed_worker if workers > 0 else None,
        persistent_workers=workers > 0,
        drop_last=False,
    )
