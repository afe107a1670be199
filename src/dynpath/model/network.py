"""The whole model: encoders -> pathway module(s) -> fusion/selection -> prediction heads.

One class serves every ablation variant; a :class:`VariantSpec` (registered by name in
``dynpath.model.registry``) says which modules exist and how their outputs become F_e.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import Tensor, nn

from dynpath.config import ConfigError, ModelConfig
from dynpath.data.batch import Batch
from dynpath.model.heads import PredictionHeads
from dynpath.model.layers import Masks
from dynpath.model.modules import Pathway, PathwaySpec
from dynpath.model.output import ROUTE_NAMES, ModelOutput
from dynpath.model.selection import FUSIONS
from dynpath.model.text import TextEncoder, VideoEncoder


@dataclass(frozen=True)
class VariantSpec:
    """A registered architecture: its pathway modules (in route order), how they combine
    (a ``FUSIONS`` name) and the row name it has in the paper's Tables III/IV."""

    display: str
    pathways: tuple[PathwaySpec, ...]
    fusion: str

    def __post_init__(self) -> None:
        fusion = FUSIONS.get(self.fusion)
        if len(self.pathways) != fusion.num_paths:
            raise ValueError(f"fusion {self.fusion!r} takes {fusion.num_paths} pathway(s)")
        if fusion.has_selector and tuple(p.name for p in self.pathways) != ROUTE_NAMES:
            raise ValueError(f"a selector needs pathways in route order {ROUTE_NAMES}")

    @property
    def has_selector(self) -> bool:
        return FUSIONS.get(self.fusion).has_selector

    @property
    def modules(self) -> tuple[str, ...]:
        """Names of the pathway modules the variant uses (as ``model.pathways`` keys)."""
        return tuple(p.name for p in self.pathways)


class DynamicPathwayModel(nn.Module):
    """Language-driven action localization with a query-aware dynamic pathway (paper Fig. 2).

    ``forward(video, video_mask, words, word_mask)`` returns a :class:`ModelOutput`. Masks are
    computed once here and passed to every block. ``gumbel_noise`` ([B, 2] Gumbel(0, 1) samples,
    keyword-only) fixes the selector's training-time noise; left None it is drawn from the torch
    RNG exactly like ``F.gumbel_softmax``.
    """

    def __init__(
        self,
        arch: str,
        spec: VariantSpec,
        cfg: ModelConfig,
        embeddings: np.ndarray,
        feature_dim: int,
    ) -> None:
        super().__init__()
        if cfg.dim % cfg.heads:
            raise ConfigError(
                f"model.dim ({cfg.dim}) must be divisible by model.heads ({cfg.heads})"
            )
        self.arch = arch
        self.spec = spec
        self.feature_dim = feature_dim
        fusion_cls = FUSIONS.get(spec.fusion)
        self.text = TextEncoder(
            embeddings,
            cfg.dim,
            cfg.text_lstm_layers,
            cfg.dropout,
            pool=fusion_cls.has_selector,
            ffn_dropout=cfg.ffn_dropout,
        )
        self.video = VideoEncoder(
            feature_dim, cfg.dim, cfg.dropout, cfg.normalize_features, cfg.ffn_dropout
        )
        self.pathways = nn.ModuleDict({p.name: Pathway(p, cfg) for p in spec.pathways})
        self.fusion = fusion_cls(cfg)
        self.heads = PredictionHeads(cfg.dim, cfg.eamat_dropout)
        # per-pathway logits are only computed when a loss will use them (set by the train step)
        self.pathway_heads = False

    def forward(
        self,
        video: Tensor,
        video_mask: Tensor,
        words: Tensor,
        word_mask: Tensor,
        *,
        gumbel_noise: Tensor | None = None,
    ) -> ModelOutput:
        masks = Masks.build(video_mask, word_mask, dtype=video.dtype)
        fq, fs = self.text(words, masks)
        fv = self.video(video, masks)
        res = self.fusion(list(self.pathways.values()), fv, fq, masks, fs, gumbel_noise)
        per_path: list[tuple[Tensor, Tensor, Tensor]] | None = None
        if res.pathway_features is not None and self.pathway_heads:
            (start, end, inner), *per_path = self.heads.forward_many(
                [res.features, *res.pathway_features], masks
            )
        else:
            start, end, inner = self.heads(res.features, masks)
        return ModelOutput(start, end, inner, res.route, res.route_probs, per_path)

    def set_training_progress(self, fraction: float) -> None:
        """Schedules that follow training progress (the Gumbel temperature); trainer-called."""
        self.fusion.set_training_progress(fraction)

    def forward_batch(self, batch: Batch, *, gumbel_noise: Tensor | None = None) -> ModelOutput:
        return self(
            batch.video, batch.video_mask, batch.words, batch.word_mask, gumbel_noise=gumbel_noise
        )
