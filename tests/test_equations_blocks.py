"""Eq. 1-8 and 15-16 pinned: each block's output (and gradient) against an independent float64
reference written in the test from the paper's equation and docs/design.md's readings.

Why: the older block tests check masking and batching; a block that computed the wrong function
the same way batched and unbatched passed them (issue 18: CQA's second attention term replaced by
the first survived). Here every reference uses only plain tensor ops (matmul, exp, sums, explicit
loops over taps and heads) on the module's own parameters, which are first redrawn from a seeded
generator so no term hides behind a zero-initialised bias. ``nn.LSTM`` is the one library
computation used as-is inside the references (Eq. 1, 3-4 say "LSTM"; its cell is torch's).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from dynpath.model.heads import PredictionHeads
from dynpath.model.layers import (
    MASK_VALUE,
    MSAB,
    ContextQueryAttention,
    GlobalMotion,
    Masks,
    MultiScaleLSTM,
    MultiScaleTemporalConv,
    TemporalConvStack,
    masked_softmax,
)
from dynpath.model.text import TextEncoder, VideoEncoder

D = 8
F64 = torch.float64
TOL = {"rtol": 1e-9, "atol": 1e-11}


def _redraw(module: nn.Module, seed: int, scale: float = 0.5) -> nn.Module:
    """Every parameter redrawn N(0, scale) from a seeded generator (biases non-zero too)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=F64) * scale)
    return module


def _masks(video_len: list[int], t: int, word_len: list[int], n_words: int) -> Masks:
    vm = torch.arange(t)[None] < torch.tensor(video_len)[:, None]
    wm = torch.arange(n_words)[None] < torch.tensor(word_len)[:, None]
    return Masks.build(vm, wm, F64)


def _x(*shape: int, seed: int = 1) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=F64)


def _ffn(lin: nn.Linear, x: Tensor) -> Tensor:
    """The paper's FFN: a linear layer and a ReLU."""
    return torch.clamp(x @ lin.weight.T + lin.bias, min=0.0)


def _softmax(x: Tensor, valid: Tensor, dim: int) -> Tensor:
    """exp / sum exp over the valid entries only (zero elsewhere), written out."""
    e = torch.exp(x - x.max()) * valid.to(x.dtype)
    return e / e.sum(dim, keepdim=True)


def _grads(module: nn.Module, out: Tensor, ref: Tensor, inputs: list[Tensor]) -> None:
    """The gradients of the module and of the reference agree for a random upstream gradient,
    w.r.t. the inputs and every parameter (training depends on them)."""
    up = _x(*out.shape, seed=99)
    params = [p for p in module.parameters() if p.requires_grad]
    got = torch.autograd.grad((out * up).sum(), inputs + params, allow_unused=True)
    want = torch.autograd.grad((ref * up).sum(), inputs + params, allow_unused=True)
    for a, b in zip(got, want, strict=True):
        if a is None or b is None:
            assert a is None and b is None
            continue
        torch.testing.assert_close(a, b, **TOL)


# --- Eq. 1: query encoding and sentence pooling --------------------------------------------------


def test_eq1_query_pooling_against_reference() -> None:
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((12, 6)).astype(np.float32)
    emb[0] = 0.0
    enc = _redraw(TextEncoder(emb, D, layers=1, dropout=0.0, pool=True).double(), 3).eval()
    # two queries of 4 and 2 words; the second's padding must get zero weight
    words = torch.tensor([[2, 5, 1, 7], [3, 4, 0, 0]])
    wm = words.ne(0)
    masks = Masks.build(torch.ones(2, 3, dtype=torch.bool), wm, F64)
    fq, fs = enc(words, masks)
    assert fs is not None
    # reference: each query alone through the (library) BiLSTM, then FFN_1, FC_1, ReLU, FC_2
    ffn1, fc1, fc2 = enc.ffn[0], enc.pool[0], enc.pool[2]  # type: ignore[index]
    for b in range(2):
        n = int(wm[b].sum())
        vecs = enc.vectors[words[b, :n]].clone()
        vecs[words[b, :n] == 1] = enc.unk  # UNK word: the trainable vector
        h, _ = enc.lstm(vecs[None])
        fq_ref = _ffn(ffn1, h[0])  # F_q = FFN_1(LSTM(Q))
        torch.testing.assert_close(fq[b, :n], fq_ref, **TOL)
        assert torch.all(fq[b, n:] == 0)
        score = torch.clamp(fq_ref @ fc1.weight.T + fc1.bias, min=0.0) @ fc2.weight.T  # [n, 1]
        alpha = torch.exp(score[:, 0]) / torch.exp(score[:, 0]).sum()
        fs_ref = (alpha[:, None] * fq_ref).sum(0)  # F_s = alpha^T F_q
        torch.testing.assert_close(fs[b], fs_ref, **TOL)


def test_eq2_video_encoding_against_reference() -> None:
    enc = _redraw(VideoEncoder(5, D, dropout=0.0, normalize=True).double(), 4).eval()
    mean, std = np.linspace(-1, 1, 5), np.linspace(0.5, 2.0, 5)
    enc.set_statistics(mean, std)
    video = _x(2, 3, 5)
    masks = _masks([3, 2], 3, [1, 1], 1)
    out = enc(video, masks)
    lin = enc.ffn[0]
    ref = _ffn(lin, (video - torch.tensor(mean)) / torch.tensor(std))  # type: ignore[arg-type]
    ref[1, 2] = 0.0  # padded position zeroed
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-7)  # statistics are stored float32


# --- Eq. 3-4: multi-scale LSTM --------------------------------------------------------------------


@pytest.mark.parametrize("bidirectional", [False, True])
def test_eq3_ms_lstm_against_reference(bidirectional: bool) -> None:
    m = _redraw(MultiScaleLSTM(D, scales=3, dropout=0.0, bidirectional=bidirectional).double(), 5)
    t = 7
    x = _x(1, t, D).requires_grad_()
    masks = _masks([t], t, [1], 1)
    out = m(x, masks)
    # Eq. 4: scale s splits F_v into s subsets starting at frame i, every s-th frame, one shared
    # LSTM_s; Eq. 3: the scales' outputs concatenated, FFN_3
    per_scale = []
    for s, lstm in zip((1, 2, 3), m.lstms, strict=True):
        y = [torch.zeros(0)] * t
        for i in range(s):
            frames = list(range(i, t, s))
            h, _ = lstm(x[:, frames])
            for j, f in enumerate(frames):
                y[f] = h[0, j]
        per_scale.append(torch.stack(y))
    ref = _ffn(m.ffn[0], torch.cat(per_scale, -1))[None]  # type: ignore[arg-type]
    torch.testing.assert_close(out, ref, **TOL)
    _grads(m, out, ref, [x])


# --- Eq. 5: MSAB ------------------------------------------------------------------------------


def _msab_reference(m: MSAB, x: Tensor, valid: Tensor) -> Tensor:
    """FFN_4(LN(H) + F), H = MSA(FC_Q F, FC_K F, FC_V F), heads written out one by one."""
    attn, heads = m.attn, m.attn.num_heads
    d = x.shape[-1]
    dh = d // heads
    wq, wk, wv = attn.in_proj_weight.split(d)
    bq, bk, bv = attn.in_proj_bias.split(d)  # type: ignore[union-attr]
    q, k, v = x @ wq.T + bq, x @ wk.T + bk, x @ wv.T + bv
    outs = []
    for h in range(heads):
        sl = slice(h * dh, (h + 1) * dh)
        scores = q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(dh)  # [B, T, T]
        w = _softmax(scores, valid[:, None, :], dim=2)
        outs.append(w @ v[..., sl])
    hv = torch.cat(outs, -1) @ attn.out_proj.weight.T + attn.out_proj.bias
    mu = hv.mean(-1, keepdim=True)
    var = ((hv - mu) ** 2).mean(-1, keepdim=True)
    ln = (hv - mu) / torch.sqrt(var + m.norm.eps) * m.norm.weight + m.norm.bias
    return _ffn(m.ffn[0], ln + x) * valid[..., None].to(x.dtype)  # type: ignore[arg-type]


def test_eq5_msab_against_reference() -> None:
    m = _redraw(MSAB(D, heads=2, dropout=0.0).double(), 6).eval()
    x = _x(2, 5, D).requires_grad_()
    masks = _masks([5, 3], 5, [1, 1], 1)
    out = m(x, masks)
    ref = _msab_reference(m, x, masks.video)
    torch.testing.assert_close(out, ref, **TOL)
    _grads(m, out, ref, [x])


# --- Eq. 6 / 11: GoL, TeN -------------------------------------------------------------------


def test_eq6_global_motion_is_the_sum_of_ms_lstm_and_msab() -> None:
    m = _redraw(GlobalMotion(D, heads=2, scales=2, dropout=0.0).double(), 7).eval()
    x = _x(1, 6, D)
    masks = _masks([6], 6, [1], 1)
    ref = m.ms_lstm(x, masks) + _msab_reference(m.msab, x, masks.video)
    torch.testing.assert_close(m(x, masks), ref, **TOL)


# --- Eq. 7 / 10: LoL, SpL -----------------------------------------------------------------


def _conv_reference(m: MultiScaleTemporalConv, x: Tensor, valid: Tensor) -> Tensor:
    """FFN([ReLU(G_1(F)); ...; ReLU(G_K(F))]); G_k a 'same' temporal convolution written as a
    sum over taps, zero beyond the sample's valid frames."""
    x = x * valid[..., None].to(x.dtype)
    b, t, _ = x.shape
    branches = []
    for conv in m.convs:
        w, bias = conv.weight, conv.bias  # [out, in, k], [out]
        k = w.shape[2]
        y = bias.expand(b, t, -1).clone()  # type: ignore[union-attr]
        for tap in range(k):
            shift = tap - k // 2  # output t reads input t + shift
            for ti in range(t):
                src = ti + shift
                if 0 <= src < t:
                    y[:, ti] = y[:, ti] + x[:, src] @ w[:, :, tap].T
        branches.append(torch.clamp(y, min=0.0))
    return _ffn(m.ffn[0], torch.cat(branches, -1)) * valid[..., None].to(x.dtype)  # type: ignore[arg-type]


def test_eq7_temporal_conv_against_reference_float64() -> None:
    m = _redraw(MultiScaleTemporalConv(D, (3, 5, 9), dropout=0.0).double(), 8)
    x = _x(2, 6, D).requires_grad_()
    masks = _masks([6, 4], 6, [1, 1], 1)
    out = m(x, masks)
    ref = _conv_reference(m, x, masks.video)
    torch.testing.assert_close(out, ref, **TOL)
    _grads(m, out, ref, [x])


def test_eq7_fused_cpu_path_against_reference() -> None:
    """float32 on CPU takes the im2col + GEMM autograd function: same equation, same gradient."""
    m32 = _redraw(MultiScaleTemporalConv(D, (3, 5, 7), dropout=0.0).double(), 9).float()
    x = _x(2, 6, D)
    assert m32.fused_path(x.float())
    masks = _masks([6, 5], 6, [1, 1], 1)
    x32 = x.float().requires_grad_()
    out = m32(x32, masks)
    up = _x(2, 6, D, seed=3)
    (out * up.float()).sum().backward()
    got = [x32.grad] + [p.grad for p in m32.parameters()]
    m64 = copy.deepcopy(m32).double()  # same values, float64 (not fused)
    x64 = x.clone().requires_grad_()
    ref = _conv_reference(m64, x64, masks.video)
    torch.testing.assert_close(out.double(), ref, rtol=1e-4, atol=1e-5)
    want = torch.autograd.grad((ref * up).sum(), [x64, *m64.parameters()])
    for a, b in zip(got, want, strict=True):
        assert a is not None
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-4)


def test_conv_blocks_chain_in_sequence() -> None:
    blocks = [_redraw(MultiScaleTemporalConv(D, (3,), 0.0).double(), s) for s in (10, 11, 12)]
    stack = TemporalConvStack(blocks)
    x = _x(1, 5, D)
    masks = _masks([5], 5, [1], 1)
    ref = x
    for blk in blocks:
        ref = _conv_reference(blk, ref, masks.video)
    torch.testing.assert_close(stack(x, masks), ref, **TOL)


# --- Eq. 8: context-query attention -----------------------------------------------------------


def _cqa_reference(m: ContextQueryAttention, fv: Tensor, fq: Tensor, masks: Masks) -> Tensor:
    """VSLNet's trilinear similarity, S_r (softmax over words), S_c (over positions),
    A = S_r F_q, B = S_r S_c^T F_v, FFN_6([F_v; A; F_v*A; F_v*B]); loops over (t, l)."""
    bsz, t, _ = fv.shape
    n = fq.shape[1]
    sim = torch.zeros(bsz, t, n, dtype=fv.dtype)
    for b in range(bsz):
        for i in range(t):
            for j in range(n):
                c, q = fv[b, i], fq[b, j]
                sim[b, i, j] = c @ m.w_c[:, 0] + q @ m.w_q[:, 0] + (c * m.w_cq[0, 0] * q).sum()
    out = []
    for b in range(bsz):
        s_r = _softmax(sim[b], masks.words[b][None, :], dim=1)  # rows: over words
        s_c = _softmax(sim[b], masks.video[b][:, None], dim=0)  # columns: over positions
        a = s_r @ fq[b]
        bb = s_r @ s_c.T @ fv[b]
        y = _ffn(m.ffn[0], torch.cat([fv[b], a, fv[b] * a, fv[b] * bb], -1))  # type: ignore[arg-type]
        out.append(y * masks.video[b][:, None].to(y.dtype))
    return torch.stack(out)


def test_eq8_cqa_against_reference() -> None:
    m = _redraw(ContextQueryAttention(D, dropout=0.0).double(), 13).eval()
    fv = _x(2, 5, D, seed=2).requires_grad_()
    fq = _x(2, 3, D, seed=4).requires_grad_()
    masks = _masks([5, 3], 5, [3, 2], 3)
    out = m(fv, fq, masks)
    ref = _cqa_reference(m, fv, fq, masks)
    torch.testing.assert_close(out, ref, **TOL)
    _grads(m, out, ref, [fv, fq])


def test_masked_softmax_against_reference() -> None:
    x = _x(2, 4)
    valid = torch.tensor([[True, False, True, True], [False, False, False, False]])
    got = masked_softmax(x, valid, dim=1)
    torch.testing.assert_close(got[0], _softmax(x[0:1], valid[0:1], 1)[0], **TOL)
    torch.testing.assert_close(got[1], torch.full((4,), 0.25, dtype=F64), **TOL)  # no NaN


# --- Eq. 15-16: prediction heads --------------------------------------------------------------


def test_eq15_16_heads_against_reference() -> None:
    heads = _redraw(PredictionHeads(D).double(), 14)
    fe = _x(2, 4, D, seed=5).requires_grad_()
    masks = _masks([4, 3], 4, [1, 1], 1)
    start, end, inner = heads(fe, masks)

    def branch(seq: nn.Sequential) -> Tensor:
        fc_a, fc_b = seq[0], seq[2]
        h = torch.clamp(fe @ fc_a.weight.T + fc_a.bias, min=0.0) @ fc_b.weight.T
        if fc_b.bias is not None:
            h = h + fc_b.bias
        return h[..., 0].masked_fill(~masks.video, MASK_VALUE)

    assert heads.start[2].bias is None and heads.end[2].bias is None  # FC_5, FC_7: no bias
    refs = [branch(heads.start), branch(heads.end), branch(heads.inner)]
    # the heads return float32 logits by contract (also under autocast): float32 tolerance
    tol = {"rtol": 1e-6, "atol": 1e-6}
    assert start.dtype == end.dtype == inner.dtype == torch.float32
    for got, want in zip((start, end, inner), refs, strict=True):
        torch.testing.assert_close(got.double(), want, **tol)
    # P^b = softmax over valid positions (Eq. 15), P^in = sigmoid (Eq. 16)
    p_s = start.double().softmax(-1)
    torch.testing.assert_close(p_s, _softmax(refs[0], masks.video, 1), **tol)
    assert torch.all(p_s[1, 3] == 0)
    torch.testing.assert_close(
        torch.sigmoid(inner[0].double()), 1 / (1 + torch.exp(-refs[2][0])), **tol
    )
    up = _x(3, 2, 4, seed=99)
    got_g = torch.autograd.grad((torch.stack([start, end, inner]).double() * up).sum(), fe)[0]
    want_g = torch.autograd.grad((torch.stack(refs) * up).sum(), fe)[0]
    torch.testing.assert_close(got_g, want_g, **tol)


def test_eq5_msab_attention_dropout_path_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Training with attention dropout on CPU takes the written-out attention (scores, masked
    softmax, :func:`dropout` on the weights, weighted sum) instead of SDPA. With the dropout
    replaced by a recording identity it must be Eq. 5 exactly, and the dropout must be applied
    once, to the attention weights [B, h, T, T], with MHA's p and in training mode only
    (mutmut survivors in ``MSAB.attend``: the scale, the transpose, the branch condition)."""
    from dynpath.model import layers

    calls: list[tuple[tuple[int, ...], float, bool]] = []

    def identity(x: Tensor, p: float, training: bool) -> Tensor:
        if x.dim() == 4:  # attention weights (the FFN's Dropout calls it too, with p = 0)
            calls.append((tuple(x.shape), p, training))
        return x

    monkeypatch.setattr(layers, "dropout", identity)
    m = _redraw(MSAB(D, heads=2, dropout=0.3, ffn_dropout=0.0).double(), 6)
    x = _x(2, 5, D).requires_grad_()
    masks = _masks([5, 3], 5, [1, 1], 1)
    out = m.train()(x, masks)
    assert calls == [((2, 2, 5, 5), 0.3, True)]
    ref = _msab_reference(m, x, masks.video)
    torch.testing.assert_close(out, ref, **TOL)
    _grads(m, out, ref, [x])
    calls.clear()
    torch.testing.assert_close(m.eval()(x, masks), ref, **TOL)
    assert calls == []  # eval: SDPA, no dropout
    m.attn.dropout = 0.0
    m.train()(x, masks)
    assert calls == []  # p = 0 in training: SDPA too


def test_eq2_video_features_of_another_width_are_refused_with_both_widths() -> None:
    """Features from another backbone (C3D 4096-d into an I3D 1024-d model) are refused with
    both widths in the message, not a matmul shape error (mutmut survivors in the message)."""
    from dynpath.errors import DynpathError

    enc = VideoEncoder(5, D, dropout=0.0)
    with pytest.raises(DynpathError, match=r"video features are 7-d .* built for 5-d features"):
        enc(_x(2, 3, 7), _masks([3, 2], 3, [1, 1], 1))


def test_byte_dropout_threshold_only_for_whole_multiples_of_one_256th() -> None:
    """The byte mask keeps a byte >= 256 p, exact only when 256 p is whole (p = 0.5 -> 128);
    any other p must fall back to ``rand >= p`` (a byte threshold there would drop 26/256
    instead of p = 0.1). Checked on the threshold and on the masks' keep fractions."""
    from dynpath.model.layers import _byte_threshold, _dropout_mask

    assert [_byte_threshold(p) for p in (0.5, 0.25, 0.125, 1 / 256)] == [128, 64, 32, 1]
    assert [_byte_threshold(p) for p in (0.1, 0.3, 0.5 + 1e-6)] == [None, None, None]
    torch.manual_seed(0)
    x = torch.ones(1 << 16)
    for p in (0.5, 0.1):
        mask = _dropout_mask(x, p)
        assert mask.unique().tolist() == [0.0, pytest.approx(1 / (1 - p))]
        assert abs(float((mask == 0).float().mean()) - p) < 0.01  # 6.5e4 draws: sd 0.002


def test_eq1_queries_padded_past_the_longest_and_a_one_word_query() -> None:
    """Eq. 1 on a batch whose every query is shorter than its padded width (queries collated
    with a longer one elsewhere, or a fixed width) and with a one-word query: the packed BiLSTM
    must see each query's own words only, so each query alone is the reference (mutmut
    survivors in ``TextEncoder.forward``: the all-full shortcut, the length floor, the unpacked
    width)."""
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((12, 6)).astype(np.float32)
    emb[0] = 0.0
    enc = _redraw(TextEncoder(emb, D, layers=1, dropout=0.0, pool=True).double(), 3).eval()
    assert enc.lstm.bidirectional  # else a pad word after the query could not reach it
    words = torch.tensor([[2, 5, 7, 0, 0], [3, 0, 0, 0, 0]])
    wm = words.ne(0)
    fq, fs = enc(words, Masks.build(torch.ones(2, 3, dtype=torch.bool), wm, F64))
    assert fq.shape == (2, 5, D) and fs is not None
    for b in range(2):
        n = int(wm[b].sum())
        want_q, want_s = enc(
            words[b : b + 1, :n], Masks.build(wm[b : b + 1, :1], wm[b : b + 1, :n], F64)
        )
        torch.testing.assert_close(fq[b, :n], want_q[0], **TOL)
        assert torch.all(fq[b, n:] == 0)
        assert want_s is not None
        torch.testing.assert_close(fs[b], want_s[0], **TOL)


def test_eq3_bidirectional_ms_lstm_on_a_batch_padded_past_its_longest_sample() -> None:
    """Eq. 3-4 with the backward LSTMs on samples of 5 and 3 frames padded to 7: each subset
    must be packed to its own valid frames (padding never enters the backward direction), and
    each sample alone is the reference (mutmut survivors in ``MultiScaleLSTM._run``)."""
    m = _redraw(MultiScaleLSTM(D, scales=3, dropout=0.0, bidirectional=True).double(), 5).eval()
    x = _x(2, 7, D)
    out = m(x, _masks([5, 3], 7, [1, 1], 1))
    for b, n in enumerate((5, 3)):
        alone = m(x[b : b + 1, :n], _masks([n], n, [1], 1))
        torch.testing.assert_close(out[b, :n], alone[0], **TOL)
        assert torch.all(out[b, n:] == 0)


def test_cpu_dropout_uses_the_byte_mask_and_scales_its_gradient() -> None:
    """On CPU, training dropout is ``x * _dropout_mask(x, p)`` from the global generator (the
    fast byte mask, not ``F.dropout``'s ``bernoulli_``), the same mask scales the gradient, and
    eval or p = 0 is the identity (mutmut survivors in ``dropout``'s device test)."""
    from dynpath.model.layers import _dropout_mask, dropout

    x = _x(4, 64).requires_grad_()
    torch.manual_seed(3)
    got = dropout(x, 0.5, True)
    torch.manual_seed(3)
    mask = _dropout_mask(x.detach(), 0.5)
    torch.testing.assert_close(got, x * mask, rtol=0.0, atol=0.0)
    (gx,) = torch.autograd.grad(got.sum(), [x])
    torch.testing.assert_close(gx, mask, rtol=0.0, atol=0.0)
    assert dropout(x, 0.5, False) is x and dropout(x, 0.0, True) is x


def test_eq1_text_encoder_layers_dropout_and_embedding_checks() -> None:
    """The query BiLSTM has ``layers`` layers with ``dropout`` between them (none for one
    layer: there is no "between"), and an embedding matrix that is not [V >= 2, dim] is
    refused with its shape (mutmut survivors in ``TextEncoder.__init__``)."""
    from dynpath.errors import DynpathError

    emb = np.random.default_rng(0).standard_normal((12, 6)).astype(np.float32)
    two = TextEncoder(emb, D, layers=2, dropout=0.3, pool=False)
    assert (two.lstm.num_layers, two.lstm.dropout) == (2, 0.3)
    one = TextEncoder(emb, D, layers=1, dropout=0.3, pool=False)
    assert (one.lstm.num_layers, one.lstm.dropout) == (1, 0.0)
    for bad in (emb[:1], emb[0], np.zeros((5, 1, 6), np.float32)):
        with pytest.raises(DynpathError, match=r"\[V >= 2, dim\] matrix .* got shape \("):
            TextEncoder(bad, D, layers=1, dropout=0.0, pool=False)
    TextEncoder(
        emb[:2, :1], D, layers=1, dropout=0.0, pool=False
    )  # V = 2 and a 1-d vector: accepted


def test_eq3_bidirectional_ms_lstm_with_an_odd_width() -> None:
    """Bidirectional: each direction has floor(d / 2) units, so the FFN takes s * 2 floor(d / 2)
    inputs, d - 1 per scale for an odd d (mutmut survivor in ``MultiScaleLSTM.__init__``)."""
    m = MultiScaleLSTM(9, scales=2, dropout=0.0, bidirectional=True).double().eval()
    assert m(_x(1, 4, 9), _masks([4], 4, [1], 1)).shape == (1, 4, 9)
