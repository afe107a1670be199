"""``dynpath features import``: a downloaded feature release -> the project's HDF5 store.

The layouts the field distributes (a folder of per-video ``.npy`` arrays as VSLNet/EAMAT ship
them, an HDF5 file with one dataset per video, the ActivityNet C3D file with one group per video,
dynpath's own store) are read by :func:`dynpath.data.features.import_features`, which checks
before writing that every video the annotations name is present and that all features have one
dimension, and NaN/Inf while writing; the output appears complete or not at all.

The store's attributes: the params' ``extract`` section (backbone, fps, window, stride) as
defaults, a dynpath store's own attributes over them, the command's flags over both;
``pretrained`` is true (the public releases come from pretrained I3D/C3D) unless
``--no-pretrained``, and ``weights`` records the source path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dynpath.config import Config


def run_import(
    cfg: Config,
    src: Path,
    output: Path,
    dataset: str,
    root: Path,
    backbone: str | None = None,
    pretrained: bool | None = None,
) -> dict[str, Any]:
    """Import ``src`` into ``output``, checked against every video of ``dataset`` at ``root``."""
    from dynpath.data.annotations import read_dataset
    from dynpath.data.features import import_features

    splits, _report = read_dataset(dataset, root)
    expected = {m.vid for moments in splits.values() for m in moments}
    defaults = {
        "backbone": cfg.extract.backbone,
        "fps": float(cfg.extract.frame_rate or 0.0),  # 0.0: each video's own rate
        "window": cfg.extract.window,
        "stride": cfg.extract.stride,
        "pretrained": True,
        "weights": str(src),
    }
    explicit: dict[str, Any] = {}
    if backbone is not None:
        explicit["backbone"] = backbone
    if pretrained is not None:
        explicit["pretrained"] = pretrained
    summary = import_features(src, output, explicit, expected=expected, defaults=defaults)
    return {**summary, "dataset": dataset, "annotated_videos": len(expected)}
