"""Where each training seed's outputs live (``Config.seeds``), shared by train, evaluate, report.

The primary seed (``seeds[0]``) keeps the single-seed layout, so everything that reads one run
per variant (DVC metrics and plots, MLflow, promotion, Kubeflow artifacts) is unchanged::

    outputs/models/<variant>/{best.pt,last.pt,history.json,train_summary.json}
    outputs/eval/<variant>/{metrics.json,predictions.jsonl,val_predictions.jsonl}

Every further seed S mirrors it one level down, so one directory per variant still holds all
of that variant's runs (a DVC stage output, a Kubeflow artifact)::

    outputs/models/<variant>/seeds/S/...
    outputs/eval/<variant>/seeds/S/...

This module imports nothing heavy: the report reads the layout without torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dynpath.config import ConfigError

#: The sub-directory of a variant's directory that holds the non-primary seeds.
SEEDS_DIR = "seeds"


def seed_dir(variant_dir: str | Path, seeds: Sequence[int], seed: int) -> Path:
    """The directory of ``seed``'s run under ``variant_dir`` (the primary seed's is itself)."""
    if seed not in seeds:
        raise ConfigError(f"seed {seed} is not one of the training seeds {list(seeds)}")
    base = Path(variant_dir)
    return base if seed == seeds[0] else base / SEEDS_DIR / str(seed)


def selected_seeds(seeds: Sequence[int], only: int | None) -> list[int]:
    """All training seeds, or just ``only`` (``--seed``), which must be one of them."""
    if only is None:
        return list(seeds)
    if only not in seeds:
        raise ConfigError(
            f"--seed {only}: not one of the training seeds in params.yaml (seeds: {list(seeds)})"
        )
    return [only]
