"""The ``extraction`` section: the 3D-CNN feature extraction rate and its projection to
Charades.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import torch

from dynpath.bench.charades import CHARADES_DURATION
from dynpath.bench.timing import interleaved, median
from dynpath.config import Config


def extraction(cfg: Config, device: torch.device, repeats: int, quick: bool) -> dict[str, Any]:
    """Clips/s of each backbone through the extractor's own batch path (``run_clips``: uint8
    frames -> normalisation -> network, in the precision the extractor picks), at the backbone's
    default resolution and at the profile's ``extract.size``."""
    from dynpath.extract.backbones import BACKBONES, build_backbone
    from dynpath.extract.extractor import ClipFeatureExtractor

    rows: dict[str, Any] = {}
    batch = 2 if quick else cfg.extract.batch_size
    rng = np.random.default_rng(0)
    for name in BACKBONES.names():
        spec = BACKBONES.get(name)
        sizes = [cfg.extract.size] if quick else sorted({spec.default_size, cfg.extract.size})
        extractor = ClipFeatureExtractor(
            build_backbone(name, None, cfg.seed), cfg.extract, device=device
        )
        for size in sizes:
            window = 8 if quick else cfg.extract.window
            clips = [
                rng.integers(0, 256, (window, size, size, 3), dtype=np.uint8) for _ in range(batch)
            ]
            t = interleaved({"x": partial(extractor.run_clips, clips)}, repeats, 1, device)
            wall = median(t["x"]["wall"])
            rows[f"{name}@{size}"] = {
                "batch": batch,
                "window": window,
                "precision": extractor.precision,
                "default_size": size == spec.default_size,
                "clips_per_s": batch / wall,
            }
    return rows


#: Charades videos (charades.json) at the charades_sta profile's extraction rate.
CHARADES_VIDEOS = 9848


def extraction_projection(r: dict[str, Any], cfg_fps: float, stride: int) -> dict[str, Any] | None:
    """Hours to extract all Charades videos at the measured i3d@224 rate (network only: decoding
    runs on CPU workers beside it and is not in this figure)."""
    row = r.get("extraction", {}).get("i3d@224")
    if row is None:
        return None
    clips = CHARADES_VIDEOS * CHARADES_DURATION["mean"] * cfg_fps / stride
    return {"clips": clips, "hours": clips / row["clips_per_s"] / 3600, "backbone": "i3d@224"}
