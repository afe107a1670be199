"""A small float64 model with every parameter redrawn, and a padded batch for it: the shared
fixture of the equation tests (``test_equations_selection.py``) and the dropout-placement tests
(``test_model_dropout_placement.py``). Import it (``from small_model import small_model``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from dynpath.config import Config
from dynpath.model import build_model
from dynpath.model.network import DynamicPathwayModel

F64 = torch.float64
FEAT, VOCAB = 6, 20


def small_model(arch: str, **model: Any) -> DynamicPathwayModel:
    """``arch`` at d = 8 (2 heads, 2 scales, kernels 3/5, 2 conv blocks, 1 text layer, no
    dropout unless ``model`` says), float64, every parameter redrawn: no zero bias hides a term."""
    cfg = Config.model_validate(
        {
            "model": {
                "dim": 8,
                "heads": 2,
                "lstm_scales": 2,
                "kernels": [3, 5],
                "conv_blocks": 2,
                "text_lstm_layers": 1,
                "dropout": 0.0,
                **model,
            }
        }
    )
    emb = np.random.default_rng(0).standard_normal((VOCAB, 5)).astype(np.float32)
    emb[0] = 0.0
    m = build_model(arch, cfg, emb, FEAT).double()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=F64) * 0.5)
    return m


def small_inputs() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Three padded samples (video lengths 6/4/5, query lengths 3/2/3) for :func:`small_model`."""
    g = torch.Generator().manual_seed(2)
    lens, wlens = [6, 4, 5], [3, 2, 3]
    vm = torch.arange(6)[None] < torch.tensor(lens)[:, None]
    wm = torch.arange(3)[None] < torch.tensor(wlens)[:, None]
    video = torch.randn(3, 6, FEAT, generator=g, dtype=F64) * vm[..., None]
    words = torch.randint(1, VOCAB, (3, 3), generator=g) * wm
    return video, vm, words, wm
