"""The three readings of "three temporal convolutional blocks" (``model.conv_block_form``) and
the two of Eq. 19's inner-loss averaging (``train.inner_average``): docs/design.md, "Networks"
and "Heads, loss, decoding"."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dynpath.config import ModelConfig
from dynpath.data.batch import Batch
from dynpath.model.layers import (
    Masks,
    MultiScaleTemporalConv,
    ResidualConvBlock,
    TemporalConvStack,
)
from dynpath.model.loss import localization_loss
from dynpath.model.modules import NETWORKS
from dynpath.model.output import ModelOutput

D = 8
FORMS = ["plain", "residual", "prenorm"]


def _masks(lengths: list[int], t: int) -> Masks:
    vm = torch.arange(t)[None] < torch.tensor(lengths)[:, None]
    return Masks.build(vm, torch.ones(len(lengths), 3, dtype=torch.bool), torch.float32)


def _stack(form: str, dropout: float = 0.0) -> torch.nn.Module:
    cfg = ModelConfig.model_validate(
        {"dim": D, "kernels": [3, 5], "conv_blocks": 3, "conv_block_form": form, "dropout": dropout}
    )
    return NETWORKS.get("lol")(cfg)


@pytest.mark.parametrize("form", FORMS)
def test_each_form_keeps_the_shape_and_ignores_padding(form: str) -> None:
    torch.manual_seed(0)
    stack = _stack(form).eval()
    assert isinstance(stack, TemporalConvStack) and len(stack) == 3
    x = torch.randn(1, 6, D)
    loud = torch.cat([x, 50 * torch.randn(1, 4, D)], 1)  # loud padding
    with torch.no_grad():
        alone = stack(x, _masks([6], 6))
        batched = stack(loud, _masks([6], 10))
    assert alone.shape == (1, 6, D)
    torch.testing.assert_close(alone[0], batched[0, :6], atol=1e-5, rtol=1e-5)
    assert torch.all(batched[0, 6:] == 0)


def test_residual_and_prenorm_are_the_written_formulas() -> None:
    torch.manual_seed(0)
    x, masks = torch.randn(2, 7, D), _masks([7, 5], 7)
    x = masks.zero_pad(x)
    residual, prenorm = _stack("residual").eval(), _stack("prenorm").eval()
    r0, p0 = residual[0], prenorm[0]
    assert isinstance(r0, ResidualConvBlock) and r0.norm is None
    assert isinstance(p0, ResidualConvBlock) and isinstance(p0.norm, torch.nn.LayerNorm)
    with torch.no_grad():
        torch.testing.assert_close(r0(x, masks), masks.zero_pad(x + r0.block(x, masks)))
        ln = F.layer_norm(x, (D,), p0.norm.weight, p0.norm.bias, p0.norm.eps)
        torch.testing.assert_close(p0(x, masks), masks.zero_pad(x + p0.block(ln, masks)))
    plain = _stack("plain")[0]
    assert isinstance(plain, MultiScaleTemporalConv)  # the block as printed, no wrapper


@pytest.mark.parametrize("form", FORMS)
def test_each_form_passes_a_float64_gradient_check(form: str) -> None:
    torch.manual_seed(0)
    stack = _stack(form).double().eval()
    masks = _masks([5, 3], 5)
    masks = Masks.build(masks.video, masks.words, torch.float64)
    x = torch.randn(2, 5, D, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: stack(v, masks), (x,), eps=1e-6, atol=1e-5)


def test_residual_forms_carry_the_input_gradient_through_three_blocks() -> None:
    """The reason for the residual readings: the input's gradient through the three-block stack
    keeps the identity path (plain ReLU blocks can zero or shrink it)."""
    torch.manual_seed(0)
    x = torch.randn(4, 9, D, requires_grad=True)
    masks = _masks([9, 9, 9, 9], 9)
    norms = {}
    for form in FORMS:
        torch.manual_seed(1)
        stack = _stack(form)
        (g,) = torch.autograd.grad(stack(x, masks).sum(), x)
        norms[form] = float(g.norm())
    assert norms["residual"] > norms["plain"]


def test_prenorm_branch_dropout_is_active_in_training_only() -> None:
    torch.manual_seed(0)
    block = _stack("prenorm", dropout=0.5)[0]
    x, masks = torch.randn(2, 6, D), _masks([6, 6], 6)
    block.train()
    a, b = block(x, masks), block(x, masks)
    assert not torch.equal(a, b)  # two dropout masks
    block.eval()
    assert torch.equal(block(x, masks), block(x, masks))
    # dropout 0.5 under "plain" and "residual" adds no branch dropout (input placement)
    r = _stack("residual", dropout=0.5)[0].train()
    assert torch.equal(r(x, masks), r(x, masks))


# --------------------------------------------------------------------------- Eq. 19 averaging

LENS = [4, 2]


def _batch() -> Batch:
    b, t = len(LENS), max(LENS)
    vm = torch.arange(t)[None] < torch.tensor(LENS)[:, None]
    inner = torch.tensor([[0.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    return Batch(
        video=torch.zeros(b, t, 1),
        video_mask=vm,
        words=torch.ones(b, 1, dtype=torch.long),
        word_mask=torch.ones(b, 1, dtype=torch.bool),
        start=torch.tensor([1, 0]),
        end=torch.tensor([2, 0]),
        inner=inner,
        durations=torch.ones(b),
        gt_seconds=torch.zeros(b, 2),
        num_positions=vm.sum(1),
        qids=["a", "b"],
        vids=["v", "w"],
        queries=["q", "q"],
    )


def test_inner_average_batch_and_sample_are_the_two_written_means() -> None:
    torch.manual_seed(0)
    batch = _batch()
    logits = [torch.randn(2, 4, dtype=torch.float64) for _ in range(3)]
    out = ModelOutput(*logits, torch.full((2,), -1))
    bce = F.binary_cross_entropy_with_logits(logits[2], batch.inner.double(), reduction="none")
    valid = [bce[0, :4], bce[1, :2]]
    want_batch = torch.cat(valid).mean()  # every valid position of the batch weighs the same
    want_sample = torch.stack([v.mean() for v in valid]).mean()  # every query weighs the same
    _, parts_b = localization_loss(out, batch, 1.0, 10.0)
    _, parts_s = localization_loss(out, batch, 1.0, 10.0, inner_average="sample")
    assert parts_b["loss_inner"] == pytest.approx(float(want_batch), rel=1e-12)
    assert parts_s["loss_inner"] == pytest.approx(float(want_sample), rel=1e-12)
    assert parts_b["loss_inner"] != pytest.approx(parts_s["loss_inner"])
    assert parts_b["loss_start"] == parts_s["loss_start"]  # only the inner term changes
