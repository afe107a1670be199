"""Step ``extract``: raw videos -> HDF5 clip-feature store (``dynpath extract``, DVC, Kubeflow).

All logic lives in :mod:`dynpath.extract`; this is the entry function with the CLI's signature.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dynpath.config import Config
from dynpath.extract.extractor import extract_directory
from dynpath.io import refuse_uri


def run(cfg: Config, videos: Path, output: Path, backbone: str, weights: str | None) -> dict:
    """Extract ``backbone`` features of every video in ``videos`` into ``output``.

    Returns a JSON-able summary: videos, extracted, skipped, failed (+ failures by name), clips,
    clips_per_s, seconds, device, and ``pretrained`` (False: seeded random-init features).
    """
    videos = refuse_uri(videos, "videos directory")  # data.videos: s3:// is not a directory
    output = refuse_uri(output, "feature store", output=True)
    summary: dict[str, Any] = extract_directory(
        videos, output, backbone, cfg.extract, weights, seed=cfg.seed
    )
    return summary
