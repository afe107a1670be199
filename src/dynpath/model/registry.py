"""The ablation variants of Tables III/IV as registry entries, the model builder, parameter counts
and a latency measurement shared by the tests and the benchmark.

The variants are the rows of :data:`dynpath.variants.TABLE` (name, label, module keys, fusion);
this module turns each into a :class:`VariantSpec` with the pathway modules of :data:`MODULES`.
Adding a variant is one entry in that table plus, for a new module, one entry here.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np
import torch

from dynpath.config import Config, ConfigError, ModelConfig, set_dotted
from dynpath.model.layers import Masks
from dynpath.model.modules import EXPLOITATION, EXPLORATION
from dynpath.model.network import DynamicPathwayModel, PathwaySpec, VariantSpec
from dynpath.model.output import ModelOutput
from dynpath.model.selection import FUSIONS, DynamicSelection
from dynpath.registry import Registry
from dynpath.timing import interleaved
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


def measure_latency(
    variants: Sequence[str] = ("dynamic", "soft_dynamic", "exploitation_only"),
    *,
    batch: int = 32,
    clips: int = 128,
    words: int = 20,
    model_cfg: ModelConfig | None = None,
    feature_dim: int = PAPER_FEATURE_DIM,
    vocab: int = 1000,
    repeats: int = 3,
    warmup: int = 1,
    device: str = "cpu",
    seed: int = 0,
    threads: int | None = None,
    baseline: str = "soft_dynamic",
) -> dict[str, Any]:
    """Eval-mode forward latency of ``variants`` on one random batch, in one process.

    Every sample is full length (``clips`` positions, ``words`` tokens), so a route group's
    length trimming saves nothing and the comparison isolates pathway selection. A variant whose
    selection decides what is computed (``DynamicSelection``) is measured twice: with its selector
    as initialised ("natural": an untrained FC_3 often sends most samples one way) and with FC_3's
    bias shifted so the batch splits evenly ("balanced", the realistic mix for a trained model).
    Repeats are interleaved across rows (row A, row B, ..., row A, ...) so that a change in machine
    load affects every row alike; ``threads`` sets torch's intra-op threads for the measurement.
    Returns per-row median milliseconds, the share routed to exploitation, and ratios to
    ``baseline`` (when measured). Default shape and ``model_cfg`` (None = the paper's, dropout 0)
    are the paper's Charades-STA setting.
    """
    dev = torch.device(device)
    model_cfg = model_cfg or ModelConfig.model_validate({"dropout": 0.0})
    gen = torch.Generator().manual_seed(seed)
    video = torch.randn(batch, clips, feature_dim, generator=gen).to(dev)
    video_mask = torch.ones(batch, clips, dtype=torch.bool, device=dev)
    word_ids = torch.randint(2, vocab, (batch, words), generator=gen).to(dev)
    word_mask = torch.ones(batch, words, dtype=torch.bool, device=dev)
    embeddings = torch.randn(vocab, WORD_DIM, generator=gen).numpy()
    embeddings[0] = 0.0
    cfg = Config(model=model_cfg)

    rows: list[dict[str, Any]] = []
    models: list[DynamicPathwayModel] = []
    for name in variants:
        selecting = FUSIONS.get(VARIANTS.get(name).fusion) is DynamicSelection
        for mix in ("natural", "balanced") if selecting else ("n/a",):
            torch.manual_seed(seed)
            model = build_model(name, cfg, embeddings, feature_dim).to(dev).eval()
            if mix == "balanced":
                assert isinstance(model.fusion, DynamicSelection)
                with torch.inference_mode():
                    _, fs = model.text(word_ids, Masks.build(video_mask, word_mask, video.dtype))
                    assert fs is not None
                    model.fusion.balance(fs)
            models.append(model)
            rows.append({"variant": name, "route_mix": mix})

    # The timed call is the forward alone; its last output gives the route shares afterwards.
    last: dict[str, ModelOutput] = {}

    def call(key: str, model: DynamicPathwayModel) -> None:
        last[key] = model(video, video_mask, word_ids, word_mask)

    calls = {str(i): partial(call, str(i), model) for i, model in enumerate(models)}
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            timings = interleaved(calls, repeats, warmup, dev)
        used_threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(old_threads)
    for i, (row, model) in enumerate(zip(rows, models, strict=True)):
        has_selector = FUSIONS.get(model.spec.fusion).has_selector
        route = last[str(i)].route
        row["exploitation_share"] = float((route == 0).float().mean()) if has_selector else None
        times = [t * 1000.0 for t in timings[str(i)]["wall"]]
        row["ms"] = statistics.median(times)
        row["ms_min"] = min(times)
    base = next((r["ms"] for r in rows if r["variant"] == baseline), None)
    ratios = {}
    if base:
        for r in rows:
            label = r["variant"] + (f"[{r['route_mix']}]" if r["route_mix"] != "n/a" else "")
            ratios[f"{label}/{baseline}"] = r["ms"] / base
    return {
        "device": str(dev),
        "threads": used_threads,
        "shape": {"batch": batch, "clips": clips, "words": words, "feature_dim": feature_dim},
        "model": {
            "dim": model_cfg.dim,
            "heads": model_cfg.heads,
            "lstm_scales": model_cfg.lstm_scales,
            "kernels": list(model_cfg.kernels),
        },
        "repeats": repeats,
        "rows": rows,
        "ratios": ratios,
    }
