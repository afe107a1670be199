"""The model's fast paths compute the same function as the plain PyTorch modules they replace.

Each optimisation of the performance work (docs/performance.md) keeps the parameters of the plain
modules and is checked here against them on the same weights: values, gradients, and the padding
promise of ``dynpath.model.layers``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dynpath.model.layers import (
    MSAB,
    Dropout,
    Masks,
    MultiScaleTemporalConv,
    _MultiKernelConvReLU,
)

D = 16


def _masks(lengths: list[int], t: int) -> Masks:
    vm = torch.arange(t)[None, :] < torch.tensor(lengths)[:, None]
    return Masks.build(vm, torch.ones(len(lengths), 3, dtype=torch.bool), torch.float32)


def _reference_branches(m: MultiScaleTemporalConv, x: torch.Tensor) -> torch.Tensor:
    xt = x.transpose(1, 2)
    return torch.cat([F.relu(c(xt)) for c in m.convs], 1).transpose(1, 2)


def test_multi_kernel_conv_matches_conv1d_values_and_grads() -> None:
    torch.manual_seed(0)
    m = MultiScaleTemporalConv(D, (3, 5, 9), dropout=0.0)
    x = torch.randn(3, 11, D, requires_grad=True)
    assert m.fused_path(x)
    g = torch.randn(3, 11, 3 * D)
    fast = m.branches(x)
    (fast * g).sum().backward()
    grads_fast = [x.grad] + [p.grad for p in m.convs.parameters()]
    x.grad = None
    m.zero_grad(set_to_none=True)
    ref = _reference_branches(m, x)
    (ref * g).sum().backward()
    grads_ref = [x.grad] + [p.grad for p in m.convs.parameters()]
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)
    for a, b in zip(grads_fast, grads_ref, strict=True):
        assert a is not None and b is not None
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_multi_kernel_conv_gradcheck_float64() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    ws = [torch.randn(4, 3, k, dtype=torch.float64, requires_grad=True) for k in (1, 3)]
    bs = [torch.randn(4, dtype=torch.float64, requires_grad=True) for _ in ws]
    assert torch.autograd.gradcheck(_MultiKernelConvReLU.apply, (x, *ws, *bs))


def test_temporal_conv_paths_agree_and_ignore_padding() -> None:
    torch.manual_seed(0)
    m = MultiScaleTemporalConv(D, (3, 5, 7, 9), dropout=0.0).eval()
    x = torch.randn(2, 10, D)
    x[1, 6:] = 40.0  # loud padding
    masks = _masks([10, 6], 10)
    with torch.no_grad():
        fast = m(x, masks)
        ref = masks.zero_pad(m.ffn(_reference_branches(m, masks.zero_pad(x))))
        alone = m(x[1:, :6], _masks([6], 6))
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast[1, :6], alone[0], atol=1e-5, rtol=1e-5)
    assert torch.all(fast[1, 6:] == 0)


def test_conv_weights_stored_tap_major_and_checkpoint_compatible() -> None:
    torch.manual_seed(0)
    m = MultiScaleTemporalConv(D, (3, 5), dropout=0.0)
    w = m.convs[1].weight
    assert w.shape == (D, D, 5) and w.permute(0, 2, 1).is_contiguous()
    x = torch.randn(2, 7, D, requires_grad=True)
    masks = _masks([7, 4], 7)
    m(x, masks).sum().backward()
    assert w.grad is not None and w.grad.stride() == w.stride()  # no layout copy
    plain = {k: v.contiguous() for k, v in m.state_dict().items()}  # a checkpoint's layout
    other = MultiScaleTemporalConv(D, (3, 5), dropout=0.0)
    other.load_state_dict(plain)
    assert other.convs[1].weight.permute(0, 2, 1).is_contiguous()
    with torch.no_grad():
        torch.testing.assert_close(other(x, masks), m(x, masks))


@pytest.mark.parametrize("p", [0.3, 0.5, 0.25, 0.75])  # 0.3: float mask; others: byte mask
def test_dropout_distribution_scale_and_gradient(p: float) -> None:
    torch.manual_seed(0)
    drop = Dropout(p)
    x = torch.ones(200_001, requires_grad=True)  # not a multiple of 4: the byte path's tail
    y = drop(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - (1 - p)) < 0.01
    # every byte lane of the 32-bit words keeps at the same rate (no biased top byte)
    lanes = kept[:200_000].view(-1, 4).float().mean(0)
    assert (lanes - (1 - p)).abs().max().item() < 0.01, lanes
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / (1 - p)))
    y.backward(torch.full_like(y, 2.0))
    assert x.grad is not None
    torch.testing.assert_close(x.grad, torch.where(kept, 2 / (1 - p), 0.0))
    torch.manual_seed(1)
    a = drop(x)
    torch.manual_seed(1)
    assert torch.equal(a, drop(x))  # deterministic under the global seed
    drop.eval()
    assert drop(x) is x


def _mha_reference(m: MSAB, x: torch.Tensor, masks: Masks) -> torch.Tensor:
    h, _ = m.attn(x, x, x, key_padding_mask=masks.video_pad, need_weights=False)
    return masks.zero_pad(m.ffn(m.norm(h) + x))


def test_msab_matches_multihead_attention_values_and_grads() -> None:
    torch.manual_seed(0)
    m = MSAB(D, 4, dropout=0.0)
    x = torch.randn(3, 9, D, requires_grad=True)
    masks = _masks([9, 5, 2], 9)
    for train in (True, False):
        m.train(train)
        fast = m(x, masks)
        ref = _mha_reference(m, x, masks)
        torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)
    m.train()
    g = torch.randn(3, 9, D)
    grads = []
    for fn in (m, lambda a, b: _mha_reference(m, a, b)):
        x.grad = None
        m.zero_grad(set_to_none=True)
        (fn(x, masks) * g).sum().backward()
        grads.append([x.grad] + [p.grad for p in m.parameters()])
    for a, b in zip(*grads, strict=True):
        assert a is not None and b is not None
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_msab_attention_dropout_path_keeps_padding_out() -> None:
    """With dropout (CPU training path) padded keys still get zero weight: a sample's valid
    outputs do not depend on the padding's content under the same dropout draw."""
    torch.manual_seed(0)
    m = MSAB(D, 4, dropout=0.5).train()
    x = torch.randn(1, 6, D)
    loud = x.clone()
    loud[0, 4:] = 1e3
    masks = _masks([4], 6)
    torch.manual_seed(3)
    a = m(x, masks)
    torch.manual_seed(3)
    b = m(loud, masks)
    torch.testing.assert_close(a[0, :4], b[0, :4])
    assert torch.isfinite(b).all()


def test_text_encoder_unpacked_shortcut_equals_packed() -> None:
    """Without padding the encoder skips packing; the result equals the packed computation."""
    import numpy as np
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    from dynpath.model.text import TextEncoder

    def masks(n_words: list[int], width: int) -> Masks:
        wm = torch.arange(width)[None, :] < torch.tensor(n_words)[:, None]
        return Masks.build(torch.ones(len(n_words), 4, dtype=torch.bool), wm, torch.float32)

    torch.manual_seed(0)
    enc = TextEncoder(np.random.default_rng(0).standard_normal((20, 8)), D, 2, 0.0, True).eval()
    words = torch.randint(2, 20, (3, 5))
    with torch.no_grad():
        fq, fs = enc(words, masks([5, 5, 5], 5))
        packed = pack_padded_sequence(enc.embed(words), torch.full((3,), 5), batch_first=True)
        seq, _ = pad_packed_sequence(enc.lstm(packed)[0], batch_first=True)
        torch.testing.assert_close(fq, enc.ffn(seq), atol=1e-5, rtol=1e-5)
        # a padded batch takes the packed path: each row equals the row alone
        fq_pad, _ = enc(words, masks([5, 3, 2], 5))
        alone, _ = enc(words[1:2, :3], masks([3], 3))
    torch.testing.assert_close(fq_pad[0], fq[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fq_pad[1, :3], alone[0], atol=1e-5, rtol=1e-5)
    assert fs is not None
