"""The three readings of where dropout goes (``model.dropout_placement``: input | ffn | eamat):
docs/design.md, "Dropout placement". Each is a param; each keeps the model's shape and
parameters, is off in evaluation, and passes a float64 gradient check with its masks active."""

from __future__ import annotations

from typing import cast

import pytest
import torch
from small_model import small_inputs, small_model
from torch import Tensor, nn

from dynpath.config import ModelConfig
from dynpath.model.heads import PredictionHeads
from dynpath.model.layers import FFN, Dropout, Masks, MultiScaleLSTM, ResidualConvBlock
from dynpath.model.modules import NETWORKS
from dynpath.model.network import DynamicPathwayModel

F64 = torch.float64
PLACEMENTS = ["input", "ffn", "eamat"]


def _model(placement: str, form: str = "residual") -> DynamicPathwayModel:
    return small_model("dynamic", conv_block_form=form, dropout=0.5, dropout_placement=placement)


_inputs = small_inputs


def _drops(model: nn.Module, kind: type[nn.Module]) -> list[float]:
    """The p of every dropout owned directly by a module of ``kind``."""
    return [
        d.p
        for m in model.modules()
        if isinstance(m, kind)
        for d in m.children()
        if isinstance(d, Dropout)
    ]


def _head_drops(model: DynamicPathwayModel) -> list[float]:
    heads = (model.heads.start, model.heads.end, model.heads.inner)
    return [d.p for h in heads for d in h[1].modules() if isinstance(d, Dropout)]


@pytest.mark.parametrize(
    ("placement", "scale", "branch", "head", "ffn"),
    [
        ("input", 0.0, 0.0, [], 0.0),
        ("ffn", 0.0, 0.0, [], 0.5),
        ("eamat", 0.5, 0.5, [0.5, 0.5, 0.5], 0.0),
    ],
)
def test_each_placement_drops_exactly_where_it_says(
    placement: str, scale: float, branch: float, head: list[float], ffn: float
) -> None:
    model = _model(placement)
    assert set(_drops(model, MultiScaleLSTM)) == {scale}  # each MS-LSTM scale's output
    assert set(_drops(model, ResidualConvBlock)) == {branch}  # the residual branch
    assert _head_drops(model) == head  # the heads' hidden layer
    assert {f[2].p for f in model.modules() if isinstance(f, FFN)} == {ffn}
    for p in model.pathways.values():
        assert p.cqa.drop.p == 0.5  # the "input" places are common to all three


def test_prenorm_keeps_its_branch_dropout_under_every_placement() -> None:
    for placement in PLACEMENTS:
        assert set(_drops(_model(placement, form="prenorm"), ResidualConvBlock)) == {0.5}


def test_placements_share_parameters_and_agree_in_evaluation() -> None:
    """Dropout adds no parameter: the state-dict names are the same (a checkpoint of one
    placement loads into another), and in evaluation the three are one function."""
    models = {p: _model(p) for p in PLACEMENTS}
    keys = {p: list(m.state_dict()) for p, m in models.items()}
    assert keys["input"] == keys["ffn"] == keys["eamat"]
    video, vm, words, wm = _inputs()
    outs = {p: m.eval()(video, vm, words, wm) for p, m in models.items()}
    for p in ("ffn", "eamat"):
        torch.testing.assert_close(outs[p].start_logits, outs["input"].start_logits)
        torch.testing.assert_close(outs[p].inner_logits, outs["input"].inner_logits)


def test_eamat_placement_changes_the_training_forward() -> None:
    """The extra masks are live in training: with the same random stream, eamat's training
    logits differ from input's (same weights), and equal themselves under the same seed."""
    video, vm, words, wm = _inputs()
    noise = torch.zeros(3, 2, dtype=F64)

    def run(placement: str) -> Tensor:
        torch.manual_seed(3)
        out = _model(placement).train()(video, vm, words, wm, gumbel_noise=noise)
        return out.start_logits

    assert not torch.allclose(run("eamat"), run("input"))
    torch.testing.assert_close(run("eamat"), run("eamat"))


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_each_placement_keeps_the_shape(placement: str) -> None:
    video, vm, words, wm = _inputs()
    out = _model(placement).train()(video, vm, words, wm)
    assert out.start_logits.shape == out.end_logits.shape == out.inner_logits.shape == (3, 6)
    assert out.route.shape == (3,)


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("part", ["gol", "lol", "heads"])
def test_each_placement_passes_a_float64_gradient_check_with_its_masks_on(
    placement: str, part: str
) -> None:
    """Training mode, every mask drawn again from the same seed at each evaluation, so the
    function gradcheck differentiates is one fixed dropout pattern. Per part: GoL/TeN (MS-LSTM
    scale outputs), LoL/SpL (residual branches) and the heads' branches (checked in float64
    before the heads' float32 cast of the logits)."""
    mcfg = ModelConfig.model_validate(
        {
            "dim": 8,
            "heads": 2,
            "lstm_scales": 2,
            "kernels": [3, 5],
            "conv_blocks": 2,
            "conv_block_form": "residual",
            "dropout": 0.5,
            "dropout_placement": placement,
        }
    )
    torch.manual_seed(0)
    vm = torch.arange(5)[None] < torch.tensor([5, 3])[:, None]
    masks = Masks.build(vm, torch.ones(2, 3, dtype=torch.bool), F64)
    x = torch.randn(2, 5, 8, dtype=F64, requires_grad=True)
    if part == "heads":
        heads = PredictionHeads(8, mcfg.eamat_dropout).double().train()

        def f(v: Tensor) -> Tensor:
            torch.manual_seed(4)
            return torch.cat([b(v) for b in (heads.start, heads.end, heads.inner)], -1)

    else:
        net = NETWORKS.get(part)(mcfg).double().train()

        def f(v: Tensor) -> Tensor:
            torch.manual_seed(4)
            return cast(Tensor, net(v, masks))

    assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-5)
