"""How pathway outputs become F_e: the query-aware selection (Sec. III-D, Eq. 13-14) and the
ablations' alternatives (single module, soft weights, sum/multiply/concat fusion).

Each is a :class:`Fusion` registered by name in :data:`FUSIONS`; a variant names one, so adding a
combination rule is one class and one registry entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dynpath.config import ModelConfig
from dynpath.model.layers import FFN, Masks
from dynpath.model.modules import Pathway
from dynpath.model.output import NO_ROUTE
from dynpath.registry import Registry


def hard_gumbel_softmax(logits: Tensor, tau: float, noise: Tensor | None = None) -> Tensor:
    """Straight-through hard Gumbel-softmax (Eq. 13), identical to
    ``F.gumbel_softmax(logits, tau, hard=True)`` (same noise draw from the same RNG state, checked
    by a test) but with an optional explicit ``noise`` [B, K] of Gumbel(0, 1) samples, so tests can
    fix the noise per sample independently of the batch composition.

    Forward value: one-hot of argmax((logits + g) / tau); backward: the gradient of the soft
    sample. The selected entry is 1.0 up to float rounding, the others exactly 0.
    """
    if noise is None:
        noise = -torch.empty_like(logits).exponential_().log()
    y_soft = ((logits + noise) / tau).softmax(-1)
    index = y_soft.argmax(-1, keepdim=True)
    y_hard = torch.zeros_like(logits).scatter_(-1, index, 1.0)
    return y_hard - y_soft.detach() + y_soft


@dataclass
class FusionResult:
    features: Tensor  # F_e [B, T, d]
    route: Tensor  # [B] int64
    route_probs: Tensor | None  # [B, 2]
    # every pathway's own output [B, T, d], in route order, when every pathway ran on every
    # sample in training (for the optional per-pathway loss, ``train.lambda_pathway``)
    pathway_features: list[Tensor] | None = None


def annealed_tau(start: float, end: float | None, fraction: float, mode: str) -> float:
    """The Gumbel temperature at ``fraction`` (0 = first step, 1 = last) of training.

    Geometric interpolation ("exponential": tau = start (end/start)^f, i.e. a constant decay
    rate per step, the usual annealing of Jang et al.) or linear; ``end`` None keeps ``start``.
    """
    if end is None:
        return start
    f = min(max(fraction, 0.0), 1.0)
    if mode == "linear":
        return start + (end - start) * f
    return float(start * (end / start) ** f)


def all_pathways(paths: Sequence[Pathway], fv: Tensor, fq: Tensor, masks: Masks) -> list[Tensor]:
    return [p(fv, fq, masks) for p in paths]


class Fusion(nn.Module):
    """Turns the pathways' outputs into F_e. ``paths`` are owned by the model, in route order."""

    has_selector: ClassVar[bool] = False  # uses F_s and FC_3 (Eq. 13)
    num_paths: ClassVar[int] = 2

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()

    def set_training_progress(self, fraction: float) -> None:
        """Called by the trainer before every step with the fraction of training done."""

    def forward(
        self,
        paths: Sequence[Pathway],
        fv: Tensor,
        fq: Tensor,
        masks: Masks,
        fs: Tensor | None,
        gumbel_noise: Tensor | None,
    ) -> FusionResult:
        raise NotImplementedError

    def _exposed(self, feats: list[Tensor]) -> list[Tensor] | None:
        """The pathways' own outputs for the per-pathway loss: training only."""
        return feats if self.training else None

    @staticmethod
    def no_route(fv: Tensor) -> Tensor:
        return torch.full((fv.shape[0],), NO_ROUTE, dtype=torch.long, device=fv.device)


def run_routed(
    paths: Sequence[Pathway],
    route: Tensor,
    weights: Tensor | None,
    fv: Tensor,
    fq: Tensor,
    masks: Masks,
) -> Tensor:
    """Run each pathway only on the samples routed to it and scatter the results back.

    The batch is grouped by route (a loop over the 2 routes, not over samples): ``index_select``
    the group, trim it to its own longest sample (exact, by padding invariance), run the module,
    and ``index_copy`` into F_e. A sample's non-selected module never runs, so its cost is not
    paid. ``weights`` (training) multiplies each group's output by its P_path entry, which is 1.0
    in value but carries the straight-through gradient to the selector.
    """
    b, t, _ = fv.shape
    out: Tensor | None = None
    # The grouping is decided on the host from ONE device->host copy of the routes and lengths:
    # on a GPU each ``nonzero()`` / ``int()`` on a device tensor is a synchronisation (three per
    # batch before), and every sync stalls the kernel-launch pipeline of this launch-bound model.
    # On CPU the copy is free.
    host = torch.stack([route.to(masks.video_len.dtype), masks.video_len]).cpu()
    for k, path in enumerate(paths):
        sel = (host[0] == k).nonzero(as_tuple=True)[0]
        n = sel.numel()
        if n == 0:
            continue
        tk = int(host[1, sel].max())
        if n == b:  # the whole batch takes this route (always so for one query): no gather
            sub_masks = masks.select(slice(None), tk) if tk < t else masks
            y = path(fv[:, :tk], fq, sub_masks)
            if weights is not None:
                y = y * weights[:, k].to(y.dtype).view(-1, 1, 1)
            return F.pad(y, (0, 0, 0, t - tk)) if tk < t else y
        # pinned, so the host->device copy of the indices does not synchronise either
        idx = sel.pin_memory().to(fv.device, non_blocking=True) if fv.is_cuda else sel
        y = path(fv[idx, :tk], fq[idx], masks.select(idx, tk))
        if weights is not None:
            y = y * weights[idx, k].to(y.dtype).view(-1, 1, 1)
        if tk < t:
            y = F.pad(y, (0, 0, 0, t - tk))
        if out is None:
            out = y.new_zeros(b, t, y.shape[-1])
        out = out.index_copy(0, idx, y.to(out.dtype))
    if out is None:  # empty batch
        return fv.new_zeros(fv.shape)
    return out


class DynamicSelection(Fusion):
    """The paper's selection (Eq. 13-14): P_path = Gumbel-softmax(FC_3(F_s)).

    Training: hard Gumbel-softmax with straight-through gradients; tau follows the schedule of
    ``cfg.model.gumbel_tau`` -> ``gumbel_tau_end`` (:func:`annealed_tau`, set by the trainer
    through :meth:`set_training_progress`). With ``selector_training = "both"`` (default) every
    module runs on every sample and F_e = sum_k P[:, k] F_k: P is one-hot in value, and the
    straight-through gradient of logit k is y_k (<g, F_k> - sum_j y_j <g, F_j>) / tau (y the
    soft sample, g = dL/dF_e), which compares the modules. With ``"selected"`` each module runs
    only on its own samples (:func:`run_routed`), so the gradient sees the other module's output
    as zero: y_k (<g, F_k> 1[k = s] - y_s <g, F_s>) / tau, i.e. "does scaling the chosen module
    help" rather than "which module is better" (cheaper; kept as a named approximation).
    Inference: argmax of FC_3(F_s), no noise; only the chosen module runs per sample.
    ``route_probs`` = softmax(FC_3(F_s)) in both modes.
    """

    has_selector = True

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.fc = nn.Linear(cfg.dim, 2)  # FC_3
        self.tau_start = cfg.gumbel_tau
        self.tau_end = cfg.gumbel_tau_end
        self.anneal = cfg.gumbel_anneal
        self.tau = cfg.gumbel_tau
        self.train_both = cfg.selector_training == "both"

    def set_training_progress(self, fraction: float) -> None:
        self.tau = annealed_tau(self.tau_start, self.tau_end, fraction, self.anneal)

    def forward(
        self,
        paths: Sequence[Pathway],
        fv: Tensor,
        fq: Tensor,
        masks: Masks,
        fs: Tensor | None,
        gumbel_noise: Tensor | None,
    ) -> FusionResult:
        assert fs is not None, "selection needs the sentence feature F_s"
        logits = self.fc(fs)
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()  # routing decided at float32 or better under autocast
        probs = logits.softmax(-1)
        if not self.training:
            route = logits.argmax(-1)
            return FusionResult(run_routed(paths, route, None, fv, fq, masks), route, probs)
        weights = hard_gumbel_softmax(logits, self.tau, gumbel_noise)
        route = weights.detach().argmax(-1)
        if not self.train_both:
            return FusionResult(run_routed(paths, route, weights, fv, fq, masks), route, probs)
        feats = all_pathways(paths, fv, fq, masks)
        w = weights.to(feats[0].dtype)
        fe = w[:, 0, None, None] * feats[0] + w[:, 1, None, None] * feats[1]
        return FusionResult(fe, route, probs, feats)

    @torch.no_grad()
    def balance(self, fs: Tensor) -> None:
        """Shift FC_3's bias so the samples of ``fs`` split evenly between the two routes.

        For latency measurement only (an untrained selector may send the whole batch one way):
        the threshold is the midpoint of the two middle logit margins, so exactly half of an
        even-sized batch goes each way.
        """
        logits = self.fc(fs).float()
        margin = (logits[:, 0] - logits[:, 1]).sort().values
        n = margin.numel()
        thr = margin[n // 2] if n % 2 else (margin[n // 2 - 1] + margin[n // 2]) / 2
        self.fc.bias[0] -= thr.to(self.fc.bias.dtype)


class SoftSelection(Fusion):
    """ "Soft dynamic": Gumbel-softmax replaced by softmax; both modules run for every sample and
    F_e = p_1 F_e1 + p_2 F_e2. ``route`` reports the dominant module (argmax p), for the per-route
    breakdown only."""

    has_selector = True

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.fc = nn.Linear(cfg.dim, 2)  # FC_3

    def forward(
        self,
        paths: Sequence[Pathway],
        fv: Tensor,
        fq: Tensor,
        masks: Masks,
        fs: Tensor | None,
        gumbel_noise: Tensor | None,
    ) -> FusionResult:
        assert fs is not None, "selection needs the sentence feature F_s"
        probs = self.fc(fs).float().softmax(-1)
        f1, f2 = all_pathways(paths, fv, fq, masks)
        fe = probs[:, 0, None, None] * f1 + probs[:, 1, None, None] * f2
        return FusionResult(fe, probs.argmax(-1), probs, self._exposed([f1, f2]))


class SingleModule(Fusion):
    """ "exploitation/exploration module only": F_e is the one module's output."""

    num_paths = 1

    def forward(
        self,
        paths: Sequence[Pathway],
        fv: Tensor,
        fq: Tensor,
        masks: Masks,
        fs: Tensor | None,
        gumbel_noise: Tensor | None,
    ) -> FusionResult:
        return FusionResult(paths[0](fv, fq, masks), self.no_route(fv), None)


class SumFusion(Fusion):
    """ "Sum fusion": F_e = F_e1 + F_e2."""

    def forward(
        self,
        paths: Sequence[Pathway],
        fv: Tensor,
        fq: Tensor,
        masks: Masks,
        fs: Tensor | None,
        gumbel_noise: Tensor | None,
    ) -> FusionResult:
        f1, f2 = all_pathways(paths, fv, fq, masks)
        return FusionResult(f1 + f2, self.no_route(fv), None, self._exposed([f1, f2]))


class MultiplyFusion(Fusion):
    """ "Multiply fusion": F_e = F_e1 * F_e2 (element-wise)."""

    def forward(
        self,
        paths: Sequence[Pathway],
        fv: Tensor,
        fq: Tensor,
        masks: Masks,
        fs: Tensor | None,
        gumbel_noise: Tensor | None,
    ) -> FusionResult:
        f1, f2 = all_pathways(paths, fv, fq, masks)
        return FusionResult(f1 * f2, self.no_route(fv), None, self._exposed([f1, f2]))


class ConcatFusion(Fusion):
    """ "Concatenate fusion": F_e = FFN([F_e1; F_e2]), 2d -> d (the paper gives no projection; an
    FFN like Eq. 8's is our reading, needed to keep the heads d-wide)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.ffn = FFN(2 * cfg.dim, cfg.dim, cfg.ffn_dropout)

    def forward(
        self,
        paths: Sequence[Pathway],
        fv: Tensor,
        fq: Tensor,
        masks: Masks,
        fs: Tensor | None,
        gumbel_noise: Tensor | None,
    ) -> FusionResult:
        f1, f2 = all_pathways(paths, fv, fq, masks)
        fe = masks.zero_pad(self.ffn(torch.cat([f1, f2], dim=-1)))
        return FusionResult(fe, self.no_route(fv), None, self._exposed([f1, f2]))


FUSIONS: Registry[type[Fusion]] = Registry("fusion")
FUSIONS.add("gumbel", DynamicSelection)
FUSIONS.add("softmax", SoftSelection)
FUSIONS.add("single", SingleModule)
FUSIONS.add("sum", SumFusion)
FUSIONS.add("multiply", MultiplyFusion)
FUSIONS.add("concat", ConcatFusion)
