"""Training objective (Sec. III-F, Eq. 18-20), plus our optional per-pathway term."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dynpath.data.batch import Batch
from dynpath.model import fastpath
from dynpath.model.output import ModelOutput


def _per_sample_terms(
    start: Tensor, end: Tensor, inner: Tensor, batch: Batch, inner_average: str = "batch"
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-sample [B] CE(P_s, tau_s), CE(P_e, tau_e) and inner BCE of one set of logits.

    ``inner_average`` "batch": the inner term of sample b is B * sum_t(bce * mask) / (valid
    positions of the batch), so its batch mean is the BCE averaged over all valid positions of
    the batch (a long video weighs more). "sample" (EAMAT): sum_t(bce * mask) / (valid positions
    of sample b), so every query weighs the same in the batch mean.
    """
    loss_start = F.cross_entropy(start, batch.start, reduction="none")
    loss_end = F.cross_entropy(end, batch.end, reduction="none")
    mask = batch.video_mask.to(inner.dtype)
    bce = F.binary_cross_entropy_with_logits(inner, batch.inner.to(inner.dtype), reduction="none")
    summed = (bce * mask).sum(1)
    if inner_average == "sample":
        loss_inner = summed / mask.sum(1).clamp(min=1.0)
    else:
        loss_inner = summed * (mask.shape[0] / mask.sum().clamp(min=1.0))
    return loss_start, loss_end, loss_inner


def _per_sample_terms_many(
    logit_sets: list[tuple[Tensor, Tensor, Tensor]], batch: Batch, inner_average: str
) -> list[tuple[Tensor, Tensor, Tensor]]:
    """:func:`_per_sample_terms` of each (start, end, inner) set over the same batch.

    Fast path: the K sets stacked along the batch, one cross-entropy / BCE pass over K*B rows
    instead of K passes (each term is per row, so the rows do not mix, and the inner term's
    scale K*B / (K * valid) equals B / valid exactly: both are whole numbers in float32).
    """
    if not fastpath.enabled() or len(logit_sets) == 1:
        return [_per_sample_terms(s, e, i, batch, inner_average) for s, e, i in logit_sets]
    k = len(logit_sets)
    start, end, inner = (torch.cat(parts, 0) for parts in zip(*logit_sets, strict=True))
    mask = batch.video_mask.to(inner.dtype).repeat(k, 1)
    loss_start = F.cross_entropy(start, batch.start.repeat(k), reduction="none")
    loss_end = F.cross_entropy(end, batch.end.repeat(k), reduction="none")
    target = batch.inner.to(inner.dtype).repeat(k, 1)
    bce = F.binary_cross_entropy_with_logits(inner, target, reduction="none")
    summed = (bce * mask).sum(1)
    if inner_average == "sample":
        loss_inner = summed / mask.sum(1).clamp(min=1.0)
    else:
        loss_inner = summed * (mask.shape[0] / mask.sum().clamp(min=1.0))
    return list(zip(loss_start.chunk(k), loss_end.chunk(k), loss_inner.chunk(k), strict=True))


def localization_loss(
    out: ModelOutput,
    batch: Batch,
    lambda_bound: float,
    lambda_inner: float,
    lambda_pathway: float = 0.0,
    lambda_route: float = 0.0,
    lambda_balance: float = 0.0,
    inner_average: str = "batch",
) -> tuple[Tensor, dict[str, float]]:
    """L = lambda_1 (CE(P_s, tau_s) + CE(P_e, tau_e)) + lambda_2 BCE(P^in, Y^in) (Eq. 18-20).

    Boundary cross-entropy is over each sample's valid positions (padded logits are
    ``MASK_VALUE``, i.e. zero probability) and averaged over the batch. The inner BCE is averaged
    over all valid positions of the batch, or per sample first (``inner_average``, see
    :func:`_per_sample_terms`); padded positions contribute nothing. Paper weights:
    lambda_1 = 1 (``cfg.train.lambda_bound``), lambda_2 = 10 (``cfg.train.lambda_inner``).

    Two optional terms, not in the paper (docs/design.md, "Keeping both pathways learning"),
    both need ``out.pathway_logits`` (every pathway ran on every sample) and add 0 without:

    - ``lambda_pathway``: the same loss on each pathway's own logits, averaged over pathways, so
      that under hard routing every module keeps learning from every sample instead of only from
      the samples the selector sends it (the rich-get-richer loop);
    - ``lambda_route``: the expected per-sample loss under the selector's distribution,
      mean_b sum_k p_bk stopgrad(L_bk) with p = ``out.route_probs``: its gradient,
      p_k (L_k - sum_j p_j L_j), moves each query's probability to the pathway whose own output
      localizes it better, which the straight-through estimate of Eq. 13 only linearises.

    A third, ``lambda_balance``, needs only the selector: the load-balancing term of switch
    routing (Fedus et al., 2021), K sum_k f_k pbar_k with f_k the share of the batch routed to
    pathway k (the hard routes, no gradient) and pbar_k the batch mean of p_k. It is smallest
    when the routes split evenly, so no pathway starves while the selector is still undecided.

    Returns the loss and its parts as floats for logging.
    """
    sets = [(out.start_logits, out.end_logits, out.inner_logits)]
    per_pathway = bool(out.pathway_logits) and (lambda_pathway > 0.0 or lambda_route > 0.0)
    if per_pathway and out.pathway_logits:
        sets += out.pathway_logits
    (ls, le, li), *path_terms = _per_sample_terms_many(sets, batch, inner_average)
    loss_start, loss_end, loss_inner = ls.mean(), le.mean(), li.mean()
    loss = lambda_bound * (loss_start + loss_end) + lambda_inner * loss_inner
    names = ["loss", "loss_start", "loss_end", "loss_inner"]
    parts = [loss_start, loss_end, loss_inner]
    if per_pathway:
        per_sample = []  # [B] per pathway
        for ps, pe, pi in path_terms:
            per_sample.append(lambda_bound * (ps + pe) + lambda_inner * pi)
        path_losses = torch.stack(per_sample, dim=1)  # [B, K]
        if lambda_pathway > 0.0:
            loss_pathway = path_losses.mean()
            loss = loss + lambda_pathway * loss_pathway
            names.append("loss_pathway")
            parts.append(loss_pathway)
        if lambda_route > 0.0 and out.route_probs is not None:
            loss_route = (out.route_probs * path_losses.detach()).sum(1).mean()
            loss = loss + lambda_route * loss_route
            names.append("loss_route")
            parts.append(loss_route)
    if lambda_balance > 0.0 and out.route_probs is not None:
        k = out.route_probs.shape[1]
        share = F.one_hot(out.route.clamp(min=0), k).to(out.route_probs.dtype).mean(0)
        loss_balance = k * (share * out.route_probs.mean(0)).sum()
        loss = loss + lambda_balance * loss_balance
        names.append("loss_balance")
        parts.append(loss_balance)
    values = torch.stack([loss, *parts]).detach().tolist()  # one sync
    return loss, dict(zip(names, values, strict=True))
