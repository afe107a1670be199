"""The ``data`` section: the data loader's share of a training step on the default profile."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dynpath.bench.peaks import MatmulPeak
from dynpath.bench.timing import interleaved, median
from dynpath.bench.train import train_throughput
from dynpath.config import Config


def _write_store(h5: Path, rng: np.random.Generator, n_videos: int, t_raw: int, dim: int) -> int:
    """A feature store of ``n_videos`` random videos (``t_raw`` clips, ``dim`` wide); its bytes."""
    from dynpath.data.features import write_features

    feats = {
        f"v{i:04d}": rng.standard_normal((t_raw, dim)).astype(np.float32) for i in range(n_videos)
    }
    attrs = {
        "backbone": "bench",
        "dim": dim,
        "fps": 8.0,
        "window": 16,
        "stride": 16,
        "pretrained": False,
        "weights": "none",
    }
    write_features(h5, feats, attrs)
    return sum(f.nbytes for f in feats.values())


def _moments(n_videos: int) -> list[Any]:
    """Four training moments per video, all with the same query."""
    from dynpath.data.types import Moment

    return [
        Moment(
            f"q{i}",
            f"v{i % n_videos:04d}",
            "the red circle moves left then grows",
            2.0,
            9.0,
            30.0,
            "train",
        )
        for i in range(4 * n_videos)
    ]


def data_loading(
    cfg: Config, device: torch.device, repeats: int, quick: bool, peak: MatmulPeak
) -> dict[str, Any]:
    """HDF5 read throughput, and the data loader's share of a default-profile training step.

    The loader is the training step's own (``make_loader``: MomentDataset + collate, the
    profile's workers and batch size) over a synthetic feature store of realistic size; its
    time per batch is measured on the first epoch (HDF5 reads) and on a later one (the feature
    cache warm, as in every epoch after the first).
    """
    from dynpath.data.dataset import collate, make_loader
    from dynpath.data.features import FeatureStore
    from dynpath.data.vocab import PAD, UNK, Vocabulary
    from dynpath.extract.backbones import get_backbone

    rng = np.random.default_rng(cfg.seed)
    dim = 64 if quick else get_backbone(cfg.extract.backbone).dim  # the profile's features
    n_videos = 16 if quick else 200
    t_raw = 3 * cfg.data.max_len // 2
    with tempfile.TemporaryDirectory() as tmp:
        h5 = Path(tmp) / "features.h5"
        nbytes = _write_store(h5, rng, n_videos, t_raw, dim)
        t0 = time.perf_counter()
        with FeatureStore(h5) as store:
            for vid in store.keys():  # noqa: SIM118 (FeatureStore has no __iter__)
                store.read(vid)
        read_s = time.perf_counter() - t0
        words = [PAD, UNK, "the", "red", "circle", "moves", "left", "then", "grows"]
        vocab = Vocabulary(words, embeddings=np.zeros((len(words), 300), np.float32))
        moments = _moments(n_videos)
        bench_cfg = cfg.model_copy(
            update={"data": cfg.data.model_copy(update={"features": str(h5)})}
        )
        bs = cfg.train.batch_size
        loader = make_loader(moments, bench_cfg, vocab, shuffle=True, seed=cfg.seed, batch_size=bs)

        def epoch() -> float:
            t0 = time.perf_counter()
            n = 0
            for _ in loader:
                n += 1
            return (time.perf_counter() - t0) / max(n, 1)

        first = epoch()  # cold feature cache: every video read from HDF5 once
        warm = median([epoch() for _ in range(2)])
        items = [loader.dataset[i] for i in range(min(bs, len(moments)))]
        collate_s = median(interleaved({"c": lambda: collate(items)}, 5, 1, device)["c"]["wall"])
    model_cfg = cfg.model
    shape = {"batch": bs, "clips": cfg.data.max_len, "feature_dim": dim, "words": 10}
    train = train_throughput("dynamic", model_cfg, shape, cfg, device, repeats, peak, False)
    step_s = train["step_s"]
    return {
        "videos": n_videos,
        "hdf5_read_mb_per_s": nbytes / read_s / 1e6,
        "loader_batch_ms_first_epoch": first * 1000,
        "loader_batch_ms": warm * 1000,
        "collate_ms": collate_s * 1000,
        "train_step_ms": step_s * 1000,
        "loader_share_first_epoch": first / (first + step_s),
        "loader_share": warm / (warm + step_s),
        "train_default": train,
    }
