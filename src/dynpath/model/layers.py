"""Building blocks of the dynamic-pathway model (paper Sec. III-B/C), each citing its equation.

Padding convention, relied on by every block and checked by ``tests/test_model_layers.py``:
a sample's outputs at its valid positions never depend on what sits at padded positions, so a
sample gives the same result alone or batched with longer samples. Each block states how it
keeps that promise. Blocks return zeros at padded video positions so the next block starts from a
clean input, but none of them *relies* on its input being zero at padding except the temporal
convolution, which zeroes its own input first.

All masks are computed once per forward in :class:`Masks` (``Masks.build``) and passed down; no
block recomputes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from dynpath.model import fastpath, gemm

# Value written at padded positions of the output logits (ModelOutput contract: "very negative").
# Finite rather than -inf so that sums such as start + end logits stay finite (no inf - inf NaN).
MASK_VALUE = -1e30


@dataclass(frozen=True)
class Masks:
    """Every mask a forward pass needs, computed once from the batch masks.

    ``video`` is [B, T] bool (True = valid), ``video_f`` the same as float [B, T, 1],
    ``video_pad`` its negation (``key_padding_mask`` of attention) and ``pad3`` that as
    [B, T, 1] for :meth:`zero_pad`, ``words`` [B, L] bool and ``video_len`` [B] int64 lengths.
    """

    video: Tensor
    video_f: Tensor
    video_pad: Tensor
    pad3: Tensor
    words: Tensor
    video_len: Tensor

    @staticmethod
    def build(video_mask: Tensor, word_mask: Tensor, dtype: torch.dtype) -> Masks:
        video_mask = video_mask.bool()
        return Masks(
            video=video_mask,
            video_f=video_mask.unsqueeze(-1).to(dtype),
            video_pad=~video_mask,
            pad3=~video_mask.unsqueeze(-1),
            words=word_mask.bool(),
            video_len=video_mask.sum(1),
        )

    def select(self, index: Tensor | slice, length: int) -> Masks:
        """The masks of the samples ``index``, trimmed to ``length`` video positions.

        Used when the batch is grouped by route: trimming a group to its own longest sample is
        exact (padding invariance) and saves the cost of the group's padding.
        """
        return Masks(
            video=self.video[index, :length],
            video_f=self.video_f[index, :length],
            video_pad=self.video_pad[index, :length],
            pad3=self.pad3[index, :length],
            words=self.words[index],
            video_len=self.video_len[index],
        )

    def zero_pad(self, x: Tensor) -> Tensor:
        """``x`` [B, T, d] with padded positions set to 0. ``masked_fill`` keeps x's dtype (no
        float32 promotion under autocast) and also clears inf/NaN garbage, unlike a multiply."""
        return x.masked_fill(self.pad3, 0.0)


def masked_softmax(x: Tensor, mask: Tensor, dim: int) -> Tensor:
    """Softmax over ``dim`` that gives exactly zero weight where ``mask`` is False.

    The fill value is the dtype's minimum (not -inf), so a row with no valid entry gives a uniform
    distribution instead of NaN.
    """
    return x.masked_fill(~mask, torch.finfo(x.dtype).min).softmax(dim)


def _byte_threshold(p: float) -> int | None:
    """``256 p`` when it is a whole number (p = 0.5, 0.25, ...: the byte mask is then exact)."""
    k = p * 256.0
    return round(k) if abs(k - round(k)) < 1e-9 else None


def _dropout_mask(x: Tensor, p: float) -> Tensor:
    """Keep with probability 1 - p, scaled by 1 / (1 - p).

    When 256 p is whole (the paper's p = 0.5), each random 32-bit word gives four uniform bytes
    and a byte >= 256 p keeps its element: a quarter of the draws of ``torch.rand`` from the CPU
    generator, which is serial and so the part of dropout that does not scale with threads
    (measured on a [16, 128, 512] tensor, 1 thread: 2.8 ms against 5.1 ms). Other p use
    ``rand >= p``. Both draw from the global generator: deterministic and resumable.
    """
    scale = 1.0 / (1.0 - p)
    k = _byte_threshold(p)
    if k is None:
        return torch.rand_like(x).ge_(p).mul_(scale)
    n = x.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int32, device=x.device)
    words.random_(-(2**31), 2**31)  # the full 32 bits (plain random_() leaves the top one 0)
    byte = words.view(torch.uint8)[:n].view(x.shape)
    return byte.ge(k).to(x.dtype).mul_(scale)


class _MaskDropout(torch.autograd.Function):
    """Inverted dropout with the mask of :func:`_dropout_mask` (see :class:`Dropout`)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, p: float) -> Tensor:
        # the mask carries the scale, so forward and backward are one multiply each
        mask = _dropout_mask(x, p)
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (mask,) = ctx.saved_tensors
        return grad * mask, None


class Dropout(nn.Dropout):
    """``nn.Dropout`` with a faster mask on CPU; same distribution, same module interface.

    Why: on CPU, ``F.dropout`` draws its mask with ``bernoulli_`` (~18 ns per element here),
    which made every dropout cost more than the linear layer before it at the paper's shapes
    (13.1 ms forward + backward for a [8, 128, 512] tensor vs 6.3 ms this way). The mask comes
    from :func:`_dropout_mask` (keep probability 1 - p), drawn from the same global torch
    generator, so training stays deterministic and resumable; the random stream differs from
    ``F.dropout``'s. CUDA keeps the fused native kernel.
    """

    def forward(self, x: Tensor) -> Tensor:
        if self.inplace:
            return F.dropout(x, self.p, self.training, True)
        return dropout(x, self.p, self.training)


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Functional form of :class:`Dropout`."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, True)
    return cast(Tensor, _MaskDropout.apply(x, p))


class FFN(nn.Sequential):
    """The paper's feed-forward network: a linear layer and a ReLU (Eq. 1-3, 5, 7, 8, 10).

    Dropout follows the activation when ``cfg.model.dropout_placement`` is "ffn" (else the blocks
    pass 0: :attr:`dynpath.config.ModelConfig.ffn_dropout`). Position-wise, so it cannot mix
    padded positions into valid ones.
    """

    def __init__(self, d_in: int, d_out: int, dropout: float) -> None:
        super().__init__(gemm.Linear(d_in, d_out), nn.ReLU(), Dropout(dropout))


class MultiScaleLSTM(nn.Module):
    """MS-LSTM, Eq. 3-4: S scales; at scale s the sequence is split into s interleaved subsets
    (frames i, i+s, i+2s, ...) that share one LSTM; subsets are re-interleaved, the S scale outputs
    concatenated and projected by FFN_3 (S*d -> d).

    Batched form: the s subsets of a scale run as ONE ``nn.LSTM`` call. Right-pad T to a multiple
    of s and reshape [B, n*s, d] -> [B, n, s, d] -> [B, s, n, d] -> [B*s, n, d]; row (b, i) is
    then exactly subset i of sample b. The only Python loop is over the S scales (each with its
    own weights), never over subsets or time steps.

    Padding. For a sample with n_b valid frames, the valid frames of subset i are
    i, i+s, ... < n_b, a *prefix* of that subset's sequence, and all of its padding comes after
    them. Forward-only (``bidirectional=False``): a forward LSTM's output at step k depends only on
    inputs 0..k, so valid outputs never see padding and no packing is needed (exact, no host
    sync, the oneDNN/cuDNN fast path on a contiguous input). Bidirectional (the authors' EAMAT
    MultiStepLSTMEncoder; the paper only says "LSTM"): the backward direction would start in the
    padding, so the rows run packed with each subset's own valid length. Either way the padded
    outputs are zeroed afterwards. ``tests/test_model_layers.py`` checks the batched form against
    a per-sample, per-subset Python loop on the same weights.

    Hidden size is d per scale (d/2 per direction when bidirectional), so FFN_3 maps S*d -> d as
    Eq. 3 implies. ``scale_dropout`` drops each scale's output before the concatenation, as
    EAMAT's ``MultiStepLSTMEncoder`` does (``dropout_placement: eamat``; 0 otherwise).
    """

    def __init__(
        self,
        dim: int,
        scales: int,
        dropout: float,
        bidirectional: bool = False,
        scale_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.scale_drop = Dropout(scale_dropout)
        self.scales = tuple(range(1, scales + 1))
        self.bidirectional = bidirectional
        hidden = dim // 2 if bidirectional else dim
        self.lstms = nn.ModuleList(
            nn.LSTM(dim, hidden, batch_first=True, bidirectional=bidirectional) for _ in self.scales
        )
        self.ffn = FFN(scales * 2 * hidden if bidirectional else scales * dim, dim, dropout)

    def _run(self, lstm: nn.Module, xs: Tensor, s: int, masks: Masks) -> Tensor:
        """One scale's LSTM over the [B*s, n, d] subset rows."""
        if not self.bidirectional:
            return cast(Tensor, lstm(xs)[0])
        n = xs.shape[1]
        offsets = torch.arange(s, device=masks.video_len.device)
        # valid items of subset i of sample b: ceil((n_b - i) / s); at least 1 for packing (a
        # subset with none is all padding and its outputs are zeroed afterwards)
        lengths = (masks.video_len[:, None] - offsets[None, :] + s - 1).div(
            s, rounding_mode="floor"
        )
        lengths = lengths.clamp(min=1).reshape(-1).cpu()
        if bool((lengths == n).all()):
            return cast(Tensor, lstm(xs)[0])
        packed = pack_padded_sequence(xs, lengths, batch_first=True, enforce_sorted=False)
        out, _ = lstm(packed)
        return pad_packed_sequence(out, batch_first=True, total_length=n)[0]

    def forward(self, x: Tensor, masks: Masks) -> Tensor:
        b, t, d = x.shape
        outs = []
        for s, lstm in zip(self.scales, self.lstms, strict=True):
            n = -(-t // s)  # ceil(T / s): length of the longest subset
            xs = F.pad(x, (0, 0, 0, n * s - t)) if n * s != t else x
            xs = xs.reshape(b, n, s, d).transpose(1, 2).reshape(b * s, n, d)
            ys = self._run(lstm, xs, s, masks)
            h = ys.shape[-1]
            ys = ys.reshape(b, s, n, h).transpose(1, 2).reshape(b, n * s, h)
            outs.append(self.scale_drop(ys[:, :t]))
        return masks.zero_pad(self.ffn(torch.cat(outs, dim=-1)))


class MSAB(nn.Module):
    """Multi-head self-attention block, Eq. 5: MSAB(F) = FFN_4(LN(H) + F), H = MSA(FC_Q F, ...).

    Follows the equation as printed (LayerNorm on the attention output, then the residual, then
    the FFN). ``nn.MultiheadAttention`` holds FC_Q/FC_K/FC_V (its input projection) and the head
    merge; it scales by sqrt(d/heads), the usual per-head reading of the paper's sqrt(d).
    Padding: ``key_padding_mask`` gives padded keys zero weight, so valid queries never attend to
    padding; everything else is position-wise.
    """

    def __init__(
        self, dim: int, heads: int, dropout: float, ffn_dropout: float | None = None
    ) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.ffn = FFN(dim, dim, dropout if ffn_dropout is None else ffn_dropout)

    def forward(self, x: Tensor, masks: Masks) -> Tensor:
        return masks.zero_pad(self.ffn(self.norm(self.attend(x, masks)) + x))

    def attend(self, x: Tensor, masks: Masks) -> Tensor:
        """H = MSA(x): ``self.attn``'s computation on its own parameters, minus its overheads.

        ``nn.MultiheadAttention`` (batch_first) transposes to [T, B, d] and back, and in
        training its attention dropout goes through ``bernoulli_`` (see :class:`Dropout`). Here
        the packed input projection, the per-head split and ``scaled_dot_product_attention``
        (no dropout: eval, or p = 0) run directly on [B, T, d]; with dropout on CPU the
        attention is written out (scores, masked softmax, :func:`dropout`, weighted sum) so the
        fast mask applies to the attention weights exactly where MHA applies its dropout.
        Same parameters (state dicts unchanged), same function up to float rounding
        (``tests/test_model_fastpaths.py``).
        """
        attn = self.attn
        b, t, d = x.shape
        heads = attn.num_heads
        qkv = gemm.linear(x, attn.in_proj_weight, attn.in_proj_bias)
        q, k, v = qkv.view(b, t, 3, heads, d // heads).permute(2, 0, 3, 1, 4)  # [B, h, T, d/h]
        keep = masks.video[:, None, None, :]  # [B, 1, 1, T]: valid keys
        p = attn.dropout if self.training else 0.0
        if p > 0.0 and x.device.type == "cpu":
            scores = (q * (d // heads) ** -0.5) @ k.transpose(-1, -2)
            weights = dropout(masked_softmax(scores, keep, dim=-1), p, True)
            o = weights @ v
        else:
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=p)
        merged = o.transpose(1, 2).reshape(b, t, d)
        return gemm.linear(merged, attn.out_proj.weight, attn.out_proj.bias)


class GlobalMotion(nn.Module):
    """GoL, Eq. 6: F^g = MS-LSTM(F) + MSAB(F) (the two blocks "stack in parallel").

    TeN (Eq. 11) has the same architecture with its own weights, so it is this class too.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        scales: int,
        dropout: float,
        ffn_dropout: float | None = None,
        bidirectional: bool = False,
        scale_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        ffn_dropout = dropout if ffn_dropout is None else ffn_dropout
        self.ms_lstm = MultiScaleLSTM(dim, scales, ffn_dropout, bidirectional, scale_dropout)
        self.msab = MSAB(dim, heads, dropout, ffn_dropout)

    def forward(self, x: Tensor, masks: Masks) -> Tensor:
        return self.ms_lstm(x, masks) + self.msab(x, masks)


class _MultiKernelConvReLU(torch.autograd.Function):
    """ReLU(G_k(x)) for K 'same'-padded Conv1d G_k of odd kernels, concatenated: [B, T, K*d_out].

    Why a custom function: oneDNN's Conv1d reaches ~60% of this CPU's matmul peak on the paper's
    shapes (forward + backward), K separate convolutions each re-pad and re-layout the input, and
    the backward sums K input gradients. Here the input is laid out ONCE as an im2col matrix
    ``u`` [B*T, kmax*d] (tap-major, so the taps of a kernel k are the contiguous central column
    block of width k*d), each kernel is one GEMM on its column block, written straight into its
    slice of the output, and the backward accumulates every kernel's input gradient into one
    ``u``-shaped buffer (``addmm_`` into the column block) before a single fold
    (``unfold_backward``). Only real taps are multiplied (no zero-padded kernel-9 weights), so the
    FLOPs counted are the honest sum over kernels. Measured: ~1.3x faster than nn.Conv1d forward +
    backward at d=512 (docs/performance.md). Same function as the convolutions up to float
    summation order; ``tests/test_model_layers.py`` checks values and gradients against
    ``F.conv1d``.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, *params: Tensor) -> Tensor:
        n = len(params) // 2
        weights, biases = params[:n], params[n:]
        b, t, d = x.shape
        kernels = [int(w.shape[2]) for w in weights]
        kmax = max(kernels)
        d_out = int(weights[0].shape[0])
        xp = F.pad(x, (0, 0, kmax // 2, kmax // 2))  # [B, T + kmax - 1, d]
        u = xp.unfold(1, kmax, 1).transpose(2, 3).reshape(b * t, kmax * d)  # im2col, one copy
        y = x.new_empty(b * t, n * d_out)
        flat = []
        for i, (w, bias, k) in enumerate(zip(weights, biases, kernels, strict=True)):
            off = (kmax - k) // 2
            # [out, tap-major k*in]: a free view when w is stored tap-major (see __init__)
            wk = w.permute(0, 2, 1).reshape(d_out, k * d)
            flat.append(wk)
            cols = u[:, off * d : (off + k) * d]
            gemm.addmm_into(y[:, i * d_out : (i + 1) * d_out], bias, cols, wk)
        y.relu_()
        ctx.save_for_backward(u, y, *flat)
        ctx.geometry = (b, t, d, kmax, d_out, kernels)
        return y.view(b, t, n * d_out)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, ...]:
        u, y, *flat = ctx.saved_tensors
        b, t, d, kmax, d_out, kernels = ctx.geometry
        g = torch.ops.aten.threshold_backward(grad.reshape(b * t, -1), y, 0)
        gu = torch.zeros_like(u)
        grad_w, grad_b = [], []
        for i, (wk, k) in enumerate(zip(flat, kernels, strict=True)):
            off = (kmax - k) // 2
            gi = g[:, i * d_out : (i + 1) * d_out]
            cols = slice(off * d, (off + k) * d)
            # out= rather than addmm_: same kernel, written in place into the column block,
            # and visible to FlopCounterMode (which does not count the in-place variant).
            block = gu[:, cols]
            gemm.addmm_acc(block, gi, wk)
            gw = gi.t() @ u[:, cols]  # [out, k*in], tap-major
            grad_w.append(gw.view(d_out, k, d).permute(0, 2, 1))  # the weight's own layout
            grad_b.append(gi.sum(0))
        return (_fold_taps(gu.view(b, t, kmax, d)), *grad_w, *grad_b)


def _fold_taps(gu: Tensor) -> Tensor:
    """The input gradient [B, T, d] of the im2col layout: the adjoint of ``unfold`` + crop.

    Row (b, tau) of ``u`` holds x[b, tau + j - kmax // 2] at tap j, so
    dx[b, tau'] = sum_j gu[b, tau' - j + kmax // 2, j] over the taps that land inside [0, T).
    Fast path: one strided slice-add per tap (kmax adds of at most [B, T, d]), against
    ``unfold_backward``, whose generic CPU kernel took ~3x as long at the default profile's shape
    and builds the padded [B, T + kmax - 1, d] gradient only to crop it. Taps are summed in the
    same ascending order (``tests/test_fast_paths.py`` compares both).
    """
    b, t, kmax, d = gu.shape
    half = kmax // 2
    if not fastpath.enabled():
        gxp = torch.ops.aten.unfold_backward(gu.transpose(2, 3), [b, t + kmax - 1, d], 1, kmax, 1)
        return gxp[:, half : half + t]
    gx = gu.new_zeros(b, t, d)
    for j in reversed(range(kmax)):  # unfold_backward's order: bit-identical sums
        s = j - half  # tap j of output row tau reads input row tau + s
        if abs(s) >= t:
            continue
        if s >= 0:
            gx[:, s:] += gu[:, : t - s, j]
        else:
            gx[:, : t + s] += gu[:, -s:, j]
    return gx


class MultiScaleTemporalConv(nn.Module):
    """LoL (Eq. 7) and SpL (Eq. 10): K parallel temporal convolutions G_k with kernels (3,5,7,9),
    ReLU, concatenation, FFN Kd -> d.

    Each G_k is Conv1d(d, d, k) with 'same' padding (k odd). Padding: the input is multiplied by
    the video mask BEFORE the convolutions, so a valid position near the end of a short sample
    sees zeros beyond it whether those are the convolution's own zero padding (sample alone) or
    batch padding (sample batched with longer ones): the two cases are identical.

    On CPU in float32 the K convolutions run as one im2col + K GEMMs
    (:class:`_MultiKernelConvReLU`, faster); elsewhere (CUDA, autocast) as K ``nn.Conv1d`` calls
    (cuDNN). The parameters are the ``nn.Conv1d`` modules' in both cases, so checkpoints do not
    depend on the path.

    Sec. IV-C stacks three such blocks per LoL/SpL (``cfg.model.conv_blocks``,
    :class:`TemporalConvStack`); docs/design.md, "Networks", gives the reading.
    """

    def __init__(self, dim: int, kernels: Sequence[int], dropout: float) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv1d(dim, dim, k, padding=k // 2) for k in kernels)
        for conv in self.convs:
            # Same values and shape [out, in, k], stored tap-major ([out, k, in] in memory), so
            # the GEMM view of the fused path and its gradient need no transposing copy (two
            # copies of every kernel per step otherwise: ~6% of a paper-shape training step).
            # load_state_dict copies into this layout; checkpoints are layout-agnostic.
            w = cast(nn.Conv1d, conv).weight
            w.data = w.data.permute(0, 2, 1).contiguous().permute(0, 2, 1)
        self.ffn = FFN(len(self.convs) * dim, dim, dropout)

    def fused_path(self, x: Tensor) -> bool:
        """Whether ``forward`` takes the im2col + GEMM path for ``x``."""
        return (
            x.device.type == "cpu"
            and x.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu")
        )

    def branches(self, x: Tensor) -> Tensor:
        """ReLU(G_k(x)) concatenated over k: [B, T, K*d] (x already zero at padding)."""
        if self.fused_path(x):
            convs = [cast(nn.Conv1d, c) for c in self.convs]
            params = [c.weight for c in convs] + [cast(Tensor, c.bias) for c in convs]
            return cast(Tensor, _MultiKernelConvReLU.apply(x, *params))
        xt = x.transpose(1, 2)  # [B, d, T]
        return torch.cat([F.relu(conv(xt)) for conv in self.convs], dim=1).transpose(1, 2)

    def forward(self, x: Tensor, masks: Masks) -> Tensor:
        return masks.zero_pad(self.ffn(self.branches(masks.zero_pad(x))))


class ContextQueryAttention(nn.Module):
    """Cross-modal fusion, Eq. 8, as in VSLNet's CQAttention.

    Trilinear similarity S = w^T [c; q; c*q] (computed without materialising [T, L, 3d]), row
    softmax over the query words (padded words masked) S_r, column softmax over the video
    positions (padded positions masked) S_c; A = S_r F_q, B = S_r S_c^T F_v (evaluated as
    S_r (S_c^T F_v): O(T L d) instead of O(T^2 L)); output FFN_6([F_v; A; F_v*A; F_v*B]), 4d -> d.
    Dropout is applied to the inputs of the similarity only, as in VSLNet. Padding: both softmaxes
    are masked, so padded words and padded positions carry zero weight.
    """

    def __init__(self, dim: int, dropout: float, ffn_dropout: float | None = None) -> None:
        super().__init__()
        self.w_c = nn.Parameter(torch.empty(dim, 1))
        self.w_q = nn.Parameter(torch.empty(dim, 1))
        self.w_cq = nn.Parameter(torch.empty(1, 1, dim))
        for w in (self.w_c, self.w_q, self.w_cq):
            nn.init.xavier_uniform_(w.view(dim, 1))
        self.drop = Dropout(dropout)
        self.ffn = FFN(4 * dim, dim, dropout if ffn_dropout is None else ffn_dropout)

    def forward(self, fv: Tensor, fq: Tensor, masks: Masks) -> Tensor:
        c, q = self.drop(fv), self.drop(fq)
        # S[b, t, l] = c_t . w_c + q_l . w_q + (c_t * w_cq) . q_l
        sim = (c @ self.w_c) + (q @ self.w_q).transpose(1, 2) + (c * self.w_cq) @ q.transpose(1, 2)
        s_r = masked_softmax(sim, masks.words.unsqueeze(1), dim=2)  # over words
        s_c = masked_softmax(sim, masks.video.unsqueeze(2), dim=1)  # over positions
        a = s_r @ fq
        b = s_r @ (s_c.transpose(1, 2) @ fv)
        return masks.zero_pad(self.ffn(torch.cat([fv, a, fv * a, fv * b], dim=-1)))


class ResidualConvBlock(nn.Module):
    """One Eq. 7/10 block with a skip connection (``cfg.model.conv_block_form``).

    - "residual": y = x + Block(x);
    - "prenorm": y = x + Dropout(Block(LN(x))), the form of the authors' EAMAT blocks
      (models/EAMAT/attention.py ``MultiConvAttention``: LayerNorm, the multi-kernel temporal
      convolutions of ``TemporalContextModule``, dropout on the branch, then the residual).

    ``dropout`` is the branch's: "prenorm" always drops there (it is EAMAT's form); "residual"
    drops there only with ``dropout_placement: eamat`` (:func:`conv_block` decides).

    The paper prints neither; docs/design.md ("Networks") gives the evidence for each reading.
    Padding: LayerNorm is position-wise and the block zeroes its own input and output at padding,
    so valid outputs never see padded positions; the output is zeroed at padding too.
    """

    def __init__(self, block: MultiScaleTemporalConv, prenorm: bool, dropout: float) -> None:
        super().__init__()
        self.block = block
        self.norm = nn.LayerNorm(block.ffn[0].out_features) if prenorm else None
        self.drop = Dropout(dropout)

    def forward(self, x: Tensor, masks: Masks) -> Tensor:
        h = x if self.norm is None else self.norm(x)
        return masks.zero_pad(x + self.drop(self.block(h, masks)))


def conv_block(
    dim: int,
    kernels: Sequence[int],
    ffn_dropout: float,
    form: str,
    dropout: float,
    branch_dropout: float = 0.0,
) -> nn.Module:
    """One LoL/SpL block in ``form`` "plain" | "residual" | "prenorm" (``ModelConfig``).

    The residual branch drops with ``dropout`` in the "prenorm" form (EAMAT's) and with
    ``branch_dropout`` (``ModelConfig.eamat_dropout``) in the "residual" form."""
    block = MultiScaleTemporalConv(dim, kernels, ffn_dropout)
    if form == "plain":
        return block
    prenorm = form == "prenorm"
    return ResidualConvBlock(block, prenorm=prenorm, dropout=dropout if prenorm else branch_dropout)


class TemporalConvStack(nn.Sequential):
    """``blocks`` multi-scale temporal convolution blocks in sequence (Sec. IV-C: "the numbers of
    ... temporal convolutional blocks in both modules are set to ... 3"). Each block is Eq. 7/10
    with its own weights and returns zeros at padding, so the next block starts clean."""

    def __init__(self, blocks: Sequence[nn.Module]) -> None:
        super().__init__(*blocks)

    def forward(self, x: Tensor, masks: Masks) -> Tensor:  # type: ignore[override]
        for block in self:
            x = block(x, masks)
        return x
