"""Training objective (Sec. III-F, Eq. 18-20)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dynpath.data.batch import Batch
from dynpath.model.output import ModelOutput


def localization_loss(
    out: ModelOutput, batch: Batch, lambda_bound: float, lambda_inner: float
) -> tuple[Tensor, dict[str, float]]:
    """L = lambda_1 (CE(P_s, tau_s) + CE(P_e, tau_e)) + lambda_2 BCE(P^in, Y^in) (Eq. 18-20).

    Boundary cross-entropy is over each sample's valid positions (padded logits are
    ``MASK_VALUE``, i.e. zero probability) and averaged over the batch. The inner BCE is averaged
    over all valid positions of the batch; padded positions contribute nothing. Paper weights:
    lambda_1 = 1 (``cfg.train.lambda_bound``), lambda_2 = 10 (``cfg.train.lambda_inner``).
    Returns the loss and its parts as floats for logging.
    """
    loss_start = F.cross_entropy(out.start_logits, batch.start)
    loss_end = F.cross_entropy(out.end_logits, batch.end)
    mask = batch.video_mask.to(out.inner_logits.dtype)
    bce = F.binary_cross_entropy_with_logits(
        out.inner_logits, batch.inner.to(out.inner_logits.dtype), reduction="none"
    )
    loss_inner = (bce * mask).sum() / mask.sum().clamp(min=1.0)
    loss_bound = loss_start + loss_end
    loss = lambda_bound * loss_bound + lambda_inner * loss_inner
    values = torch.stack([loss, loss_start, loss_end, loss_inner]).detach().tolist()  # one sync
    parts = dict(zip(("loss", "loss_start", "loss_end", "loss_inner"), values, strict=True))
    return loss, parts
