"""What every registered model variant returns."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

ROUTE_NAMES = ("exploitation", "exploration")
NO_ROUTE = -1  # variants without a selector (single module, fusion)


@dataclass
class ModelOutput:
    """Per-position logits (masked positions hold a large negative value) and the route taken.

    ``route[b]`` is 0 (exploitation) or 1 (exploration) for selector variants, ``NO_ROUTE``
    otherwise; ``route_probs`` is the selector's softmax over the two modules (None without one).
    """

    start_logits: Tensor  # [B, T]
    end_logits: Tensor  # [B, T]
    inner_logits: Tensor  # [B, T]
    route: Tensor  # [B] int64
    route_probs: Tensor | None = None  # [B, 2]
    # training only, for variants that ran every pathway on every sample: each pathway's own
    # (start, end, inner) logits through the shared heads (``train.lambda_pathway``)
    pathway_logits: list[tuple[Tensor, Tensor, Tensor]] | None = None
