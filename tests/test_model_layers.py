"""Building blocks of the model: each block against a plain reference or its masking promise."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dynpath.model.layers import (
    ContextQueryAttention,
    Masks,
    MultiScaleLSTM,
    MultiScaleTemporalConv,
    masked_softmax,
)
from dynpath.model.selection import hard_gumbel_softmax
from dynpath.model.text import TextEncoder

D = 16


def _masks(
    video_len: list[int], t: int, word_len: list[int] | None = None, n_words: int = 4
) -> Masks:
    vm = torch.arange(t)[None] < torch.tensor(video_len)[:, None]
    wl = word_len or [n_words] * len(video_len)
    wm = torch.arange(n_words)[None] < torch.tensor(wl)[:, None]
    return Masks.build(vm, wm, torch.float32)


def _reference_ms_lstm(
    m: MultiScaleLSTM, x: torch.Tensor, lengths: list[int]
) -> list[torch.Tensor]:
    """Eq. 3-4 literally: per sample, unpadded, per scale a Python loop over the s subsets."""
    refs = []
    for b, n in enumerate(lengths):
        xb = x[b, :n]
        scale_outs = []
        for s, lstm in zip(m.scales, m.lstms, strict=True):
            y = torch.zeros(n, lstm.hidden_size * (2 if lstm.bidirectional else 1))
            for i in range(s):
                subset = xb[i::s]
                if len(subset):
                    out, _ = lstm(subset[None])  # the subset alone: no padding at all
                    y[i::s] = out[0]
            scale_outs.append(y)
        refs.append(m.ffn(torch.cat(scale_outs, -1)))
    return refs


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("scales", [1, 3, 4])
def test_ms_lstm_batched_equals_per_subset_reference(scales: int, bidirectional: bool) -> None:
    """Batched (and, bidirectional, packed) form == each subset of each sample run alone; the
    backward direction of a bidirectional LSTM would start in the padding if not packed."""
    torch.manual_seed(0)
    m = MultiScaleLSTM(D, scales, dropout=0.0, bidirectional=bidirectional).eval()
    if bidirectional:
        assert all(lstm.bidirectional and lstm.hidden_size == D // 2 for lstm in m.lstms)
    lengths = [13, 9, 5, 2]
    t = 13
    x = torch.randn(len(lengths), t, D)
    x[1, 9:] = 1e3  # garbage in the padding must not matter
    x[3, 2:] = -1e3
    with torch.no_grad():
        out = m(x, _masks(lengths, t))
        refs = _reference_ms_lstm(m, x, lengths)
    for b, n in enumerate(lengths):
        torch.testing.assert_close(out[b, :n], refs[b], atol=1e-5, rtol=1e-5)
        assert torch.all(out[b, n:] == 0)


def test_ms_lstm_subsets_are_interleaved_not_contiguous() -> None:
    """A wrong reshape (contiguous chunks instead of frames i, i+s, ...) must fail the reference."""
    torch.manual_seed(1)
    m = MultiScaleLSTM(D, 2, dropout=0.0).eval()
    x = torch.randn(1, 8, D)
    with torch.no_grad():
        out = m(x, _masks([8], 8))
        lstm = m.lstms[1]
        chunked = torch.cat([lstm(x[:, :4])[0], lstm(x[:, 4:])[0]], 1)  # wrong split
        scale1 = m.lstms[0](x)[0]
        wrong = m.ffn(torch.cat([scale1, chunked], -1))
    assert not torch.allclose(out, wrong, atol=1e-4)


def test_temporal_conv_ignores_padding_content() -> None:
    torch.manual_seed(0)
    m = MultiScaleTemporalConv(D, (3, 5, 9), dropout=0.0).eval()
    x_alone = torch.randn(1, 6, D)
    x_batched = torch.cat([x_alone, 50 * torch.randn(1, 5, D)], 1)  # loud padding
    with torch.no_grad():
        a = m(x_alone, _masks([6], 6))
        b = m(x_batched, _masks([6], 11))
    torch.testing.assert_close(a[0], b[0, :6], atol=1e-5, rtol=1e-5)
    assert torch.all(b[0, 6:] == 0)


def test_cqa_masks_padded_words_and_positions() -> None:
    torch.manual_seed(0)
    m = ContextQueryAttention(D, dropout=0.0).eval()
    fv, fq = torch.randn(1, 5, D), torch.randn(1, 3, D)
    fv_pad = torch.cat([fv, 9 * torch.randn(1, 4, D)], 1)
    fq_pad = torch.cat([fq, 9 * torch.randn(1, 2, D)], 1)
    with torch.no_grad():
        a = m(fv, fq, _masks([5], 5, [3], 3))
        b = m(fv_pad, fq_pad, _masks([5], 9, [3], 5))
    torch.testing.assert_close(a[0], b[0, :5], atol=1e-5, rtol=1e-5)


def test_masked_softmax_zero_weight_and_no_nan() -> None:
    x = torch.tensor([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]])
    mask = torch.tensor([[True, False, True], [False, False, False]])
    p = masked_softmax(x, mask, dim=1)
    assert p[0, 1] == 0
    torch.testing.assert_close(p.sum(1), torch.ones(2))
    assert not torch.isnan(p).any()


def test_hard_gumbel_matches_torch_gumbel_softmax() -> None:
    logits = torch.randn(64, 2, requires_grad=True)
    torch.manual_seed(7)
    ref = F.gumbel_softmax(logits, tau=0.7, hard=True)
    torch.manual_seed(7)
    ours = hard_gumbel_softmax(logits, 0.7)
    torch.testing.assert_close(ours, ref)
    (ours[:, 0] * torch.arange(64.0)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0  # straight-through


def test_hard_gumbel_explicit_noise_decides_route() -> None:
    logits = torch.zeros(2, 2)
    noise = torch.tensor([[5.0, 0.0], [0.0, 5.0]])
    y = hard_gumbel_softmax(logits, 1.0, noise)
    assert y.argmax(-1).tolist() == [0, 1]
    assert y[0, 1] == 0 and y[1, 0] == 0


def _text(pool: bool = True, layers: int = 2) -> TextEncoder:
    emb = np.random.default_rng(0).standard_normal((20, 300)).astype(np.float32)
    emb[0] = 0
    return TextEncoder(emb, D, layers, dropout=0.0, pool=pool).eval()


def test_text_encoder_frozen_vectors_buffer_and_trainable_unk() -> None:
    torch.manual_seed(0)
    enc = _text()
    assert "vectors" in dict(enc.named_buffers())
    assert all("vectors" not in n for n, _ in enc.named_parameters())
    assert not enc.vectors.requires_grad
    emb = enc.embed(torch.tensor([[5, 1, 0]]))
    torch.testing.assert_close(emb[0, 1], enc.unk.detach())
    torch.testing.assert_close(emb[0, 0], enc.vectors[5])
    with torch.no_grad():
        enc.unk.add_(1.0)  # moving UNK changes UNK tokens only, not the frozen row 1
    assert not torch.allclose(enc.embed(torch.tensor([[1]]))[0, 0], enc.vectors[1])


def test_text_encoder_padding_invariant_bilstm() -> None:
    """Without packing the backward direction would read the padding first; with it, it cannot."""
    torch.manual_seed(0)
    enc = _text(layers=3)
    words = torch.tensor([[4, 7, 1]])
    padded = torch.tensor([[4, 7, 1, 9, 9, 9], [3, 4, 5, 6, 7, 8]])  # garbage ids in the padding
    with torch.no_grad():
        fq_a, fs_a = enc(words, _masks([1], 1, [3], 3))
        fq_b, fs_b = enc(padded, _masks([1, 1], 1, [3, 6], 6))
    assert fs_a is not None and fs_b is not None
    torch.testing.assert_close(fq_a[0], fq_b[0, :3], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fs_a[0], fs_b[0], atol=1e-5, rtol=1e-5)
    assert torch.all(fq_b[0, 3:] == 0)


def test_text_encoder_without_pool_has_no_pool_parameters() -> None:
    assert _text(pool=False).pool is None


def test_video_encoder_normalisation_is_exact_floored_and_checked() -> None:
    from dynpath.errors import DynpathError
    from dynpath.model.text import VideoEncoder

    torch.manual_seed(0)
    enc = VideoEncoder(6, 8, 0.0, normalize=True)
    mean = np.arange(6, dtype=np.float32)
    std = np.array([1.0, 2.0, 0.5, 4.0, 1.0, 0.0], dtype=np.float32)  # last: a dead dimension
    enc.set_statistics(mean, std)
    x = torch.randn(2, 5, 6)
    ones = torch.ones(2, 5, dtype=torch.bool)
    masks = Masks.build(ones, ones[:, :3], dtype=torch.float32)
    floor = std.mean() * 0.01
    expect = enc.ffn((x - torch.from_numpy(mean)) / torch.from_numpy(np.maximum(std, floor)))
    torch.testing.assert_close(enc(x, masks), expect)
    assert {"feature_mean", "feature_inv_std"} <= set(enc.state_dict())
    with pytest.raises(DynpathError, match="expected"):
        enc.set_statistics(mean[:3], std[:3])
    plain = VideoEncoder(6, 8, 0.0)
    assert "feature_mean" not in plain.state_dict()
    with pytest.raises(DynpathError, match="without normalize"):
        plain.set_statistics(mean, std)


def test_temporal_conv_blocks_stack_in_sequence() -> None:
    """conv_blocks=3 (Sec. IV-C): three Eq. 7 blocks, each on the previous one's output."""
    from dynpath.config import ModelConfig
    from dynpath.model.layers import TemporalConvStack
    from dynpath.model.modules import NETWORKS

    torch.manual_seed(0)
    cfg = ModelConfig.model_validate({"dim": D, "kernels": [3, 5], "conv_blocks": 3})
    stack = NETWORKS.get("lol")(cfg).eval()
    assert isinstance(stack, TemporalConvStack) and len(stack) == 3
    x = torch.randn(2, 7, D)
    masks = _masks([7, 4], 7)
    with torch.no_grad():
        want = stack[2](stack[1](stack[0](x, masks), masks), masks)
        torch.testing.assert_close(stack(x, masks), want)
    one = NETWORKS.get("lol")(ModelConfig.model_validate({"dim": D, "conv_blocks": 1}))
    assert isinstance(one, MultiScaleTemporalConv)
