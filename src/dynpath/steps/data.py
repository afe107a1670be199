"""`dynpath data`: the first node of the DAG, for every kind of profile.

DVC has no conditional stages, so one step serves both: for the synthetic profile it generates the
embedded benchmark into ``data.root``; for a real dataset it reads the annotation files the user
put in ``data.root`` and returns their data report, failing with a message that names what is
missing. It never writes into a real dataset's folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dynpath.config import Config


def run(cfg: Config, root: Path) -> dict[str, Any]:
    if cfg.data.dataset == "synthetic":
        from dynpath.steps import synth

        return {"generated": True, **synth.run(cfg, out_dir=root)}
    from dynpath.data.annotation_stats import data_stats

    return {"generated": False, **data_stats(cfg.data.dataset, root)}
