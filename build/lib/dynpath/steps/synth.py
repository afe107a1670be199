"""`dynpath synth`: generate the embedded synthetic benchmark into ``out_dir`` (= data.root).

The step only maps the config onto :class:`dynpath.data.synthetic.SynthParams`; the grammar,
rendering and writers live in :mod:`dynpath.data.synthetic` (documented in docs/synthetic.md).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from dynpath.config import Config
from dynpath.data.synthetic import SynthParams, generate

log = logging.getLogger(__name__)


def params_from_config(cfg: Config) -> SynthParams:
    """The generator's inputs. Clip seconds come from the extract section so that every moment
    spans at least a few feature positions (extract.stride frames at the extraction frame rate).
    """
    s = cfg.synth
    rate = cfg.extract.frame_rate or s.fps
    return SynthParams(
        seed=cfg.seed,
        num_videos=s.num_videos,
        queries_per_video=s.queries_per_video,
        min_duration=s.min_duration,
        max_duration=s.max_duration,
        fps=s.fps,
        size=s.size,
        test_fraction=s.test_fraction,
        embedding_dim=cfg.vocab.dim,
        clip_seconds=cfg.extract.stride / rate,
    )


def run(cfg: Config, out_dir: Path, workers: int | None = None) -> dict[str, Any]:
    """Write videos/, charades_sta_{train,test}.txt, charades.json, the GloVe file and
    synthetic_meta.json under ``out_dir``; return counts and the seconds taken.
    """
    params = params_from_config(cfg)
    log.info("synth: %d videos into %s", params.num_videos, out_dir)
    return generate(params, Path(out_dir), workers=workers)
