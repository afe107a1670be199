"""The ablation variants of Tables III/IV as registry entries, the model builder and parameter
counts. (Per-variant latency is the benchmark's concern: ``dynpath.bench.inference``.)

The variants are the rows of :data:`dynpath.variants.TABLE` (name, label, module keys, fusion);
this module turns each into a :class:`VariantSpec` with the pathway modules of :data:`MODULES`.
Adding a variant is one entry in that table plus, for a new module, one entry here.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch

from dynpath.config import Config, ConfigError, ModelConfig, set_dotted
from dynpath.model.modules import EXPLOITATION, EXPLORATION
from dynpath.model.network import DynamicPathwayModel, PathwaySpec, VariantSpec
from dynpath.registry import Registry
from dynpath.variants import TABLE as VARIANT_TABLE

#: The pathway modules the variant table (:mod:`dynpath.variants`) may stack, by key.
MODULES: dict[str, PathwaySpec] = {
    "exploitation": EXPLOITATION,
    "exploration": EXPLORATION,
    # "w/o LML": LoL replaced by GoL; "w/o TE": TeN replaced by SpL
    "exploitation_gol_gol": replace(EXPLOITATION, networks=("gol", "gol")),
    "exploration_spl_spl": replace(EXPLORATION, networks=("spl", "spl")),
    # ONE module whose two networks are stacked in parallel, net_a(x) + net_b(x), instead of in
    # sequence. With the order gone, the exploitation pair (GoL, LoL) and the exploration pair
    # (SpL, TeN) are the same architecture (GoL = TeN, LoL = SpL), so there is one such module.
    "parallel": replace(EXPLOITATION, name="parallel", parallel=True),
}

VARIANTS: Registry[VariantSpec] = Registry("model variant")
for _row in VARIANT_TABLE:
    VARIANTS.add(
        _row.name,
        VariantSpec(_row.label, tuple(MODULES[m] for m in _row.modules), _row.fusion),
    )

PAPER_FEATURE_DIM = 1024  # I3D, Charades-STA
WORD_DIM = 300  # GloVe


def build_model(
    arch: str, cfg: Config, embeddings: np.ndarray, feature_dim: int
) -> DynamicPathwayModel:
    """Build the registered architecture ``arch`` with ``cfg.model``'s hyper-parameters.

    ``embeddings`` is the [V, dw] word-vector matrix (row 0 PAD zeros, row 1 UNK) from the vocab
    step; ``feature_dim`` the clip-feature width of the feature store.
    """
    if arch not in VARIANTS:
        raise ConfigError(f"unknown model architecture {arch!r}; registered: {VARIANTS.names()}")
    return DynamicPathwayModel(arch, VARIANTS.get(arch), cfg.model, embeddings, feature_dim)


def variant_metadata(arch: str) -> dict[str, Any]:
    """What the report and tests need to know about an architecture without building it."""
    spec = VARIANTS.get(arch)
    return {
        "arch": arch,
        "display": spec.display,
        "modules": list(spec.modules),
        "has_selector": spec.has_selector,
        "fusion": spec.fusion,
    }


def count_parameters(model: torch.nn.Module) -> int:
    """Trainable parameters only: the frozen word vectors are a buffer and are not counted."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _paper_model_config(cfg: Config, name: str) -> tuple[str, ModelConfig]:
    """The paper's model hyper-parameters plus the variant's own ``model.*`` overrides (parsed
    by :meth:`Config.variant_overrides`, so nested and dotted overrides both count)."""
    if name not in cfg.variants:
        return name, ModelConfig()
    arch, overrides = cfg.variant_overrides(name)
    raw = {"model": ModelConfig().model_dump()}  # schema defaults = paper settings
    for dotted, value in overrides.items():
        if dotted.startswith("model."):
            set_dotted(raw, dotted, value, where=f"variants.{name}.{dotted}")
    return arch, ModelConfig.model_validate(raw["model"])


def model_info(cfg: Config) -> list[dict[str, Any]]:
    """Trainable parameter count of each variant at the paper's configuration.

    Paper configuration: d=512, 8 heads, 3 LSTM scales, kernels 3/5/7/9, 3-layer text BiLSTM,
    1024-d (I3D) input, 300-d word vectors; a variant's own ``model.*`` overrides in
    ``cfg.variants`` apply on top (the base params' model section, often a small CI profile, does
    not). Frozen word vectors are excluded (the trainable UNK vector is counted), so the vocabulary
    size does not matter. Variants: those of ``cfg.variants``, or every registered one if empty.
    Models are built on the meta device: no memory is allocated, no weights initialised.
    """
    names = list(cfg.variants) or VARIANTS.names()
    rows = []
    for name in names:
        arch, model_cfg = _paper_model_config(cfg, name)
        with torch.device("meta"):
            model = build_model(
                arch,
                Config(model=model_cfg),
                np.zeros((2, WORD_DIM), dtype=np.float32),
                PAPER_FEATURE_DIM,
            )
        rows.append({"variant": name, "arch": arch, "parameters": count_parameters(model)})
    return rows
