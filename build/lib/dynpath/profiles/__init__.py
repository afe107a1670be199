"""Profiles: overlays of the built-in defaults (the paper's settings) for each dataset.

``dynpath profile NAME`` writes the fully resolved profile to params.yaml, so DVC tracks every
value explicitly and switching dataset is one command. Overlays apply to the defaults, never to
the current params.yaml, so switching back and forth leaves no residue.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from dynpath.config import Config, ConfigError, merge
from dynpath.io import write_text
from dynpath.variants import NAMES

#: The default ``variants:`` of every profile: all of the variant table, in its order.
VARIANT_NAMES = NAMES


def available() -> list[str]:
    return sorted(
        p.name.removesuffix(".yaml")
        for p in resources.files(__package__).iterdir()
        if p.name.endswith(".yaml")
    )


def resolve(name: str) -> dict[str, Any]:
    """The full params mapping of profile ``name`` (defaults + overlay), validated."""
    if name not in available():
        raise ConfigError(f"unknown profile {name!r}; available: {', '.join(available())}")
    overlay = (
        yaml.safe_load(resources.files(__package__).joinpath(f"{name}.yaml").read_text()) or {}
    )
    base = Config(variants={v: {} for v in VARIANT_NAMES}).model_dump(mode="json")
    raw = merge(base, overlay)
    if "seeds" not in overlay:  # the default training seed is the profile's own data seed
        raw["seeds"] = [raw["seed"]]
    Config.model_validate(raw)
    return raw


def use_profile(name: str, params: Path) -> Path:
    raw = resolve(name)
    header = (
        f"# dynpath params: profile '{name}'. Regenerate with `dynpath profile {name}`;\n"
        "# edit freely: DVC tracks each key, and `dvc exp run -S key=value` overrides one.\n"
    )
    write_text(params, header + yaml.safe_dump(raw, sort_keys=False))
    return params
