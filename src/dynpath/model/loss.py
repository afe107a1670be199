"""Training objective (Sec. III-F, Eq. 18-20), plus our optional per-pathway term."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dynpath.data.batch import Batch
from dynpath.model.output import ModelOutput


def _terms(
    start: Tensor, end: Tensor, inner: Tensor, batch: Batch
) -> tuple[Tensor, Tensor, Tensor]:
    """CE(P_s, tau_s), CE(P_e, tau_e) and the masked inner BCE of one set of logits."""
    loss_start = F.cross_entropy(start, batch.start)
    loss_end = F.cross_entropy(end, batch.end)
    mask = batch.video_mask.to(inner.dtype)
    bce = F.binary_cross_entropy_with_logits(inner, batch.inner.to(inner.dtype), reduction="none")
    loss_inner = (bce * mask).sum() / mask.sum().clamp(min=1.0)
    return loss_start, loss_end, loss_inner


def localization_loss(
    out: ModelOutput,
    batch: Batch,
    lambda_bound: float,
    lambda_inner: float,
    lambda_pathway: float = 0.0,
) -> tuple[Tensor, dict[str, float]]:
    """L = lambda_1 (CE(P_s, tau_s) + CE(P_e, tau_e)) + lambda_2 BCE(P^in, Y^in) (Eq. 18-20).

    Boundary cross-entropy is over each sample's valid positions (padded logits are
    ``MASK_VALUE``, i.e. zero probability) and averaged over the batch. The inner BCE is averaged
    over all valid positions of the batch; padded positions contribute nothing. Paper weights:
    lambda_1 = 1 (``cfg.train.lambda_bound``), lambda_2 = 10 (``cfg.train.lambda_inner``).

    ``lambda_pathway`` > 0 (not in the paper; docs/design.md) adds lambda_pathway times the mean
    over pathways of the same loss on each pathway's own logits (``out.pathway_logits``), so that
    with hard routing every module keeps learning from every sample instead of only from the
    samples the selector sends it (the rich-get-richer loop). Without pathway logits it adds 0.
    Returns the loss and its parts as floats for logging.
    """
    loss_start, loss_end, loss_inner = _terms(
        out.start_logits, out.end_logits, out.inner_logits, batch
    )
    loss = lambda_bound * (loss_start + loss_end) + lambda_inner * loss_inner
    names = ["loss", "loss_start", "loss_end", "loss_inner"]
    parts = [loss_start, loss_end, loss_inner]
    if lambda_pathway > 0.0 and out.pathway_logits:
        per_path = []
        for start, end, inner in out.pathway_logits:
            ls, le, li = _terms(start, end, inner, batch)
            per_path.append(lambda_bound * (ls + le) + lambda_inner * li)
        loss_pathway = torch.stack(per_path).mean()
        loss = loss + lambda_pathway * loss_pathway
        names.append("loss_pathway")
        parts.append(loss_pathway)
    values = torch.stack([loss, *parts]).detach().tolist()  # one sync
    return loss, dict(zip(names, values, strict=True))
