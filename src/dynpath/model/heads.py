"""Prediction module (Sec. III-E): start/end boundary logits (Eq. 15) and inner logits (Eq. 16)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dynpath.model import fastpath
from dynpath.model.layers import MASK_VALUE, Dropout, Masks


def _branch(dim: int, last_bias: bool = True, dropout: float = 0.0) -> nn.Sequential:
    """FC(d -> d/2), ReLU, FC(d/2 -> 1): the two-layer branch of Eq. 15-16.

    ``dropout`` follows the ReLU as in EAMAT's ``Prediction`` (``dropout_placement: eamat``). The
    ReLU and the dropout share the Sequential's slot 1 (neither has parameters), so the
    state-dict names of FC_4..FC_9 stay "0.*" and "2.*" whatever the placement and checkpoints
    load either way."""
    return nn.Sequential(
        nn.Linear(dim, dim // 2),
        nn.Sequential(nn.ReLU(), Dropout(dropout)) if dropout > 0 else nn.ReLU(),
        nn.Linear(dim // 2, 1, bias=last_bias),
    )


class PredictionHeads(nn.Module):
    """Three independent branches over F_e: start (FC_4, FC_5), end (FC_6, FC_7) and inner
    (FC_8, FC_9).

    They return *logits*: P_s^b/P_e^b are their softmax over valid positions and P^in their
    sigmoid, applied by the loss and the decoder. Logits are float32 (also under autocast) and
    padded positions hold ``MASK_VALUE``, so a softmax gives them exactly zero probability. Eq. 16
    writes the inner branch on "F^vm"; we read it as F_e like the boundary branches (EAMAT).
    """

    def __init__(self, dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        # FC_5/FC_7 have no bias: a constant added to every position cancels in the softmax over
        # positions (Eq. 15), so it could never receive a gradient.
        self.start = _branch(dim, last_bias=False, dropout=dropout)
        self.end = _branch(dim, last_bias=False, dropout=dropout)
        self.inner = _branch(dim, dropout=dropout)

    def forward(self, fe: Tensor, masks: Masks) -> tuple[Tensor, Tensor, Tensor]:
        pad = masks.video_pad
        start, end, inner = (
            branch(fe).squeeze(-1).float().masked_fill(pad, MASK_VALUE)
            for branch in (self.start, self.end, self.inner)
        )
        return start, end, inner

    def forward_many(
        self, feats: list[Tensor], masks: Masks
    ) -> list[tuple[Tensor, Tensor, Tensor]]:
        """:meth:`forward` of each of ``feats`` (F_e and the pathways' own outputs, all
        [B, T, d] over the same batch), as one pass over the stacked [K*B, T, d].

        Why: in training the heads run on F_e and on every pathway's output (the per-pathway
        loss); the heads are the same weights for all, so K passes of 18 small ops (and their
        backward) become one pass over K times the rows. Row-wise the same function (a linear
        layer's row does not depend on the other rows); ``tests/test_fast_paths.py`` compares
        both paths, values and gradients.
        """
        if not fastpath.enabled() or len(feats) == 1:
            return [self(f, masks) for f in feats]
        k = len(feats)
        stacked = torch.cat(feats, dim=0)
        pad = masks.video_pad.repeat(k, 1)
        logits = [
            branch(stacked).squeeze(-1).float().masked_fill(pad, MASK_VALUE).chunk(k, 0)
            for branch in (self.start, self.end, self.inner)
        ]
        return list(zip(*logits, strict=True))
