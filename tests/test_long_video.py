"""A 10-minute video with one 5-second event: found to within one clip, from windows.

A tiny model is trained by the real CLI (as ``dynpath train`` runs it, a few seconds on one
thread) on short videos (16-24 clips, ``data.max_len`` 24, so training never squeezes) whose
moments are visible in the features. The long video is 600 clips of the same background noise
(one clip = one second) with the event on 5 clips: before windows it was squeezed into 24 bins
of 25 s, and no span could be within one clip of the event.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from reliability_workspace import (
    FEATURE_DIM,
    VARIANT,
    WORDS,
    Workspace,
    params_dict,
    write_params,
)

from dynpath.inference.localizer import Localizer

pytestmark = pytest.mark.slow

MAX_LEN = 24
EVENT = 1.5  # added to the event's clips (background: normal noise, sd 0.5)


def _write_short_videos(data: Path, n_videos: int = 48, seed: int = 0) -> None:
    """Training/test split of videos of 16-24 clips, each with a moment of 3-8 clips."""
    from dynpath.data.features import write_features

    data.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    feats: dict[str, np.ndarray] = {}
    lines: dict[str, list[str]] = {"train": [], "test": []}
    for v in range(n_videos):
        vid = f"vid{v:03d}"
        t = int(rng.integers(16, MAX_LEN + 1))
        x = rng.normal(0, 0.5, size=(t, FEATURE_DIM)).astype(np.float32)
        n = int(rng.integers(3, 9))
        a = int(rng.integers(0, t - n + 1))
        x[a : a + n] += EVENT
        split = "test" if v % 8 == 0 else "train"
        for q in range(2):
            rec = {
                "qid": f"{vid}_{q}",
                "vid": vid,
                "query": " ".join(rng.choice(WORDS, size=4)),
                "duration": float(t),  # one clip = one second
                "relevant_windows": [[float(a), float(a + n)]],
            }
            lines[split].append(json.dumps(rec))
        feats[vid] = x
    for split, recs in lines.items():
        (data / f"{split}.jsonl").write_text("\n".join(recs) + "\n", encoding="utf-8")
    attrs = {
        "backbone": "test",
        "fps": 8,
        "window": 8,
        "stride": 8,
        "pretrained": False,
        "weights": None,
    }
    write_features(data / "features.h5", feats, attrs)


@pytest.fixture(scope="module")
def localizer(tmp_path_factory: pytest.TempPathFactory) -> Localizer:
    import torch

    from dynpath import cli
    from dynpath.config import load_config
    from dynpath.steps import vocab as vocab_step

    root = tmp_path_factory.mktemp("long")
    data = root / "data"
    _write_short_videos(data)
    raw = params_dict(
        data,
        data={"max_len": MAX_LEN},
        train={"epochs": 8, "lr": 0.01},
        model={"dropout": 0.0},
    )
    params = write_params(root / "params.yaml", raw)
    ws = Workspace(
        root=root,
        params=params,
        data=data,
        features=data / "features.h5",
        vocab=root / "outputs" / "vocab",
        models=root / "outputs" / "models",
    )
    threads = torch.get_num_threads()
    try:
        vocab_step.run(load_config(params), ws.vocab)
        assert cli.main(ws.train_argv()) == 0
    finally:
        torch.set_num_threads(threads)
    return Localizer.load(ws.model_dir(VARIANT), device="cpu")


@pytest.mark.parametrize("first", [3, 287, 594])  # near the start, across two windows, the end
def test_five_second_event_in_a_ten_minute_video_is_found_within_one_clip(
    localizer: Localizer, first: int
) -> None:
    rng = np.random.default_rng(first)
    x = rng.normal(0, 0.5, size=(600, FEATURE_DIM)).astype(np.float32)
    x[first : first + 5] += EVENT
    out = localizer.predict(features=x, query="person opens door", duration=600.0, topk=5)
    assert localizer.cfg.data.max_len == MAX_LEN
    best = out["spans"][0]
    assert abs(best["start"] - first) <= 1.0, out["spans"]
    assert abs(best["end"] - (first + 5)) <= 1.0, out["spans"]
    assert out["windows"] == 49  # starts 0, 12, ..., 576: 600 clips at the features' own rate
