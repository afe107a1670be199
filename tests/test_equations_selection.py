"""Eq. 9-14 pinned: the modules' network order, the selector (Gumbel temperature, straight-through
gradient), every fusion and the wiring of each of the ten ablation variants, against float64
references composed in the test from docs/design.md's table.

Why: the variant tests checked wiring by ``isinstance`` and the selector's forward value, which is
one-hot whatever the temperature; a selector ignoring tau (issue 18) or a module running its
networks in another order passed. The references below call the model's own networks one by one
(each network is pinned against its equation in ``test_equations_blocks.py``) in the order the
paper and docs/design.md give, run each sample alone (no batching), and combine them with plain
tensor ops; outputs AND parameter gradients must match.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from small_model import FEAT, small_inputs, small_model
from torch import Tensor, nn

from dynpath.model import VARIANTS
from dynpath.model.layers import GlobalMotion, Masks, MultiScaleTemporalConv, TemporalConvStack
from dynpath.model.modules import Pathway
from dynpath.model.network import DynamicPathwayModel
from dynpath.model.selection import DynamicSelection, annealed_tau, hard_gumbel_softmax

F64 = torch.float64
TOL = {"rtol": 1e-9, "atol": 1e-10}

# docs/design.md, "Ablation variants": the pathways of each variant, the networks of each pair in
# the order they run, whether the pair is summed ("network parallel"), and the fusion.
EXPLOIT = ("exploitation", ("gol", "lol"), False)
EXPLORE = ("exploration", ("spl", "ten"), False)
TABLE: dict[str, tuple[list[tuple[str, tuple[str, str], bool]], str]] = {
    "exploitation_only": ([EXPLOIT], "single"),
    "exploration_only": ([EXPLORE], "single"),
    "exploitation_wo_lml": ([("exploitation", ("gol", "gol"), False)], "single"),
    "exploration_wo_te": ([("exploration", ("spl", "spl"), False)], "single"),
    "network_parallel": ([("parallel", ("gol", "lol"), True)], "single"),
    "sum_fusion": ([EXPLOIT, EXPLORE], "sum"),
    "multiply_fusion": ([EXPLOIT, EXPLORE], "multiply"),
    "concat_fusion": ([EXPLOIT, EXPLORE], "concat"),
    "soft_dynamic": ([EXPLOIT, EXPLORE], "softmax"),
    "dynamic": ([EXPLOIT, EXPLORE], "gumbel"),
}


def test_the_table_covers_every_registered_variant() -> None:
    assert sorted(TABLE) == sorted(VARIANTS.names())


_model = small_model
_inputs = small_inputs


def _kind(net: nn.Module) -> str:
    if isinstance(net, GlobalMotion):
        return "global"  # GoL / TeN (Eq. 6, 11)
    assert isinstance(net, MultiScaleTemporalConv | TemporalConvStack)
    return "conv"  # LoL / SpL (Eq. 7, 10)


KIND = {"gol": "global", "ten": "global", "lol": "conv", "spl": "conv"}


def _pair(first: nn.Module, second: nn.Module, parallel: bool, x: Tensor, m: Masks) -> Tensor:
    return first(x, m) + second(x, m) if parallel else second(first(x, m), m)


def _pathway_alone(
    path: Pathway,
    nets: tuple[str, str],
    parallel: bool,
    second: tuple[str, str],
    fv: Tensor,
    fq: Tensor,
    masks: Masks,
) -> Tensor:
    """One sample: pair -> CQA(., F_q) -> pair, each network called by hand in table order."""
    a, b = path.pre.first, path.pre.second
    assert (_kind(a), _kind(b)) == (KIND[nets[0]], KIND[nets[1]])
    # the second pair: its networks in the order given by ``second``
    c, d = path.post.first, path.post.second
    assert (_kind(c), _kind(d)) == (KIND[second[0]], KIND[second[1]])
    x = _pair(a, b, parallel, fv, masks)
    x = path.cqa(x, fq, masks)
    return _pair(c, d, parallel, x, masks)


def _pathway_feats(
    model: DynamicPathwayModel,
    video: Tensor,
    vm: Tensor,
    words: Tensor,
    wm: Tensor,
    arch: str,
    printed: bool = False,
) -> tuple[list[Tensor], Tensor | None, Masks]:
    """F_k [B, T, d] of every pathway of ``arch``, each sample run alone; and F_s."""
    pathways, _ = TABLE[arch]
    masks = Masks.build(vm, wm, F64)
    fq, fs = model.text(words, masks)
    fv = model.video(video, masks)
    bsz, t, _ = fv.shape
    feats: list[Tensor] = []
    for name, nets, parallel in pathways:
        second = nets
        if printed and name == "exploitation":
            second = (nets[1], nets[0])  # Eq. 9 as printed: GoL(LoL(.))
        rows = []
        for b in range(bsz):
            n = int(vm[b].sum())
            mb = Masks.build(vm[b : b + 1, :n], wm[b : b + 1], F64)
            y = _pathway_alone(
                model.pathways[name], nets, parallel, second, fv[b : b + 1, :n], fq[b : b + 1], mb
            )
            rows.append(torch.cat([y[0], y.new_zeros(t - n, y.shape[-1])]))
        feats.append(torch.stack(rows))
    return feats, fs, masks


def _reference(
    model: DynamicPathwayModel,
    video: Tensor,
    vm: Tensor,
    words: Tensor,
    wm: Tensor,
    arch: str,
    printed: bool = False,
    noise: Tensor | None = None,
    tau: float = 1.0,
    selected: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """Start/end/inner logits of ``arch`` rebuilt from its parts, each sample alone."""
    _, fusion = TABLE[arch]
    feats, fs, masks = _pathway_feats(model, video, vm, words, wm, arch, printed)
    assert (fs is not None) == (fusion in ("softmax", "gumbel"))  # F_s only for a selector
    fus = model.fusion
    if fusion == "single":
        fe = feats[0]
    elif fusion == "sum":
        fe = feats[0] + feats[1]
    elif fusion == "multiply":
        fe = feats[0] * feats[1]
    elif fusion == "concat":
        lin = fus.ffn[0]
        cat = torch.cat(feats, -1)
        fe = torch.clamp(cat @ lin.weight.T + lin.bias, min=0.0) * vm[..., None]
    else:
        assert fs is not None
        logits = fs @ fus.fc.weight.T + fus.fc.bias  # FC_3 (Eq. 13)
        if fusion == "softmax":  # soft dynamic: softmax replaces Gumbel-softmax
            w = torch.exp(logits) / torch.exp(logits).sum(-1, keepdim=True)
        elif noise is None:  # inference: argmax of FC_3, no noise
            w = torch.nn.functional.one_hot(logits.argmax(-1), 2).to(F64)
        else:  # training: hard Gumbel-softmax, straight-through (Jang et al.)
            z = (logits + noise) / tau
            soft = torch.exp(z) / torch.exp(z).sum(-1, keepdim=True)
            hard = torch.nn.functional.one_hot(z.argmax(-1), 2).to(F64)
            w = hard - soft.detach() + soft
            if selected:  # only the chosen pathway ran: the other counts as zero
                w = w * hard
        fe = w[:, 0, None, None] * feats[0] + w[:, 1, None, None] * feats[1]  # Eq. 14
    return model.heads(fe, masks)


def _compare(model: DynamicPathwayModel, got: tuple[Tensor, ...], want: tuple[Tensor, ...]) -> None:
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)  # heads return float32 logits
    g = torch.Generator().manual_seed(5)
    ups = [torch.randn(a.shape, generator=g, dtype=torch.float32) for a in got]

    def grads(outs: tuple[Tensor, ...]) -> list[Tensor | None]:
        loss = sum(
            ((o.masked_fill(o < -1e20, 0.0)) * u).sum() for o, u in zip(outs, ups, strict=True)
        )
        params = [p for p in model.parameters() if p.requires_grad]
        return list(torch.autograd.grad(loss, params, allow_unused=True))  # type: ignore[arg-type]

    used = 0
    for a, b in zip(grads(got), grads(want), strict=True):
        if a is None or b is None:
            # a pathway that did not run gets no gradient; in the reference it ran with weight 0
            assert all(x is None or not x.any() for x in (a, b))
            continue
        used += 1
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert used > 0


def _split_routes(model: DynamicPathwayModel, words: Tensor, wm: Tensor) -> None:
    """Shift FC_3's bias so the batch's queries take both routes (each route's wiring is then
    exercised in one batch)."""
    masks = Masks.build(torch.ones(wm.shape[0], 1, dtype=torch.bool), wm, F64)
    with torch.no_grad():
        _, fs = model.text(words, masks)
        fc = model.fusion.fc
        logits = fs @ fc.weight.T + fc.bias
        margin = (logits[:, 0] - logits[:, 1]).sort().values
        fc.bias[0] -= (margin[0] + margin[1]) / 2  # the lowest-margin query goes to route 1


@pytest.mark.parametrize("arch", sorted(TABLE))
def test_variant_wiring_matches_the_table(arch: str) -> None:
    """Eval mode: what runs, in which order, and what reaches the heads."""
    model = _model(arch).eval()
    video, vm, words, wm = _inputs()
    if TABLE[arch][1] in ("softmax", "gumbel"):
        _split_routes(model, words, wm)
    out = model(video, vm, words, wm)
    want = _reference(model, video, vm, words, wm, arch)
    _compare(model, (out.start_logits, out.end_logits, out.inner_logits), want)
    if TABLE[arch][1] in ("softmax", "gumbel"):
        masks = Masks.build(vm, wm, F64)
        _, fs = model.text(words, masks)
        logits = fs @ model.fusion.fc.weight.T + model.fusion.fc.bias
        assert out.route.tolist() == logits.argmax(-1).tolist()
        assert sorted(set(out.route.tolist())) == [0, 1]
        assert out.route_probs is not None
        # soft dynamic computes its weights in float32 (autocast safety): float32 tolerance
        torch.testing.assert_close(
            out.route_probs.double(), logits.softmax(-1), rtol=1e-6, atol=1e-7
        )
    else:
        assert out.route_probs is None


@pytest.mark.parametrize("arch", ["exploitation_only", "dynamic"])
def test_printed_second_order_reverses_the_exploitation_pair(arch: str) -> None:
    model = _model(arch, second_order="printed").eval()
    video, vm, words, wm = _inputs()
    if arch == "dynamic":
        _split_routes(model, words, wm)
    out = model(video, vm, words, wm)
    want = _reference(model, video, vm, words, wm, arch, printed=True)
    _compare(model, (out.start_logits, out.end_logits, out.inner_logits), want)


@pytest.mark.parametrize("mode", ["both", "selected"])
@pytest.mark.parametrize("tau", [1.0, 0.3])
def test_dynamic_training_forward_and_gradient(mode: str, tau: float) -> None:
    """Eq. 13-14 in training: hard Gumbel-softmax at temperature tau, straight-through."""
    model = _model("dynamic", gumbel_tau=tau, selector_training=mode).train()
    video, vm, words, wm = _inputs()
    noise = torch.tensor([[0.3, -0.2], [-1.0, 2.0], [0.1, 0.4]], dtype=F64)
    out = model(video, vm, words, wm, gumbel_noise=noise)
    assert sorted(set(out.route.tolist())) == [0, 1]
    # route_probs = softmax(FC_3(F_s)) in both modes (the route and balance terms use them)
    _, fs = model.text(words, Masks.build(vm, wm, F64))
    assert fs is not None and out.route_probs is not None
    logits = fs @ model.fusion.fc.weight.T + model.fusion.fc.bias
    torch.testing.assert_close(out.route_probs, logits.softmax(-1), **TOL)
    # "selected": only the chosen pathway ran, so the gradient sees the other one as zero
    # (docs/design.md, "Selector gradient")
    want = _reference(
        model, video, vm, words, wm, "dynamic", noise=noise, tau=tau, selected=mode == "selected"
    )
    _compare(model, (out.start_logits, out.end_logits, out.inner_logits), want)


@pytest.mark.parametrize("anneal", ["exponential", "linear"])
def test_annealed_temperature_reaches_the_selector(anneal: str) -> None:
    """The trainer's schedule (set_training_progress) changes tau, and tau changes the gradient."""
    model = _model("dynamic", gumbel_tau=2.0, gumbel_tau_end=0.5, gumbel_anneal=anneal).train()
    video, vm, words, wm = _inputs()
    noise = torch.tensor([[0.3, -0.2], [-1.0, 2.0], [0.1, 0.4]], dtype=F64)
    model.set_training_progress(0.25)
    # geometric: sqrt(2); linear: 1.625 (neither 1, where an ignored tau would not show)
    tau = 2.0 * (0.5 / 2.0) ** 0.25 if anneal == "exponential" else 2.0 - 1.5 * 0.25
    assert isinstance(model.fusion, DynamicSelection)
    assert model.fusion.tau == pytest.approx(tau, rel=1e-12)
    out = model(video, vm, words, wm, gumbel_noise=noise)
    want = _reference(model, video, vm, words, wm, "dynamic", noise=noise, tau=tau)
    _compare(model, (out.start_logits, out.end_logits, out.inner_logits), want)


# --- Eq. 13 alone: the hard Gumbel-softmax --------------------------------------------------


@pytest.mark.parametrize("tau", [0.25, 1.0, 3.0])
def test_eq13_hard_gumbel_softmax_value_and_gradient(tau: float) -> None:
    logits = torch.tensor([[0.5, -0.3], [1.2, 1.0], [-0.4, 0.9], [0.0, 0.1]], dtype=F64)
    logits.requires_grad_()
    noise = torch.tensor([[0.2, 0.1], [-0.5, 0.3], [0.0, 0.0], [1.1, -0.7]], dtype=F64)
    y = hard_gumbel_softmax(logits, tau, noise)
    # forward: one-hot of argmax(logits + g), whatever tau > 0
    z = (logits.detach() + noise) / tau
    hard = torch.zeros(4, 2, dtype=F64)
    for i in range(4):
        hard[i, int(z[i, 1] > z[i, 0])] = 1.0
    torch.testing.assert_close(y.detach(), hard, rtol=0, atol=1e-15)
    # backward: d softmax(z)/d logits = diag(y) - y y^T, divided by tau (hand-derived)
    v = torch.tensor([[1.0, -2.0], [0.5, 0.25], [-1.0, 3.0], [2.0, 2.5]], dtype=F64)
    (y * v).sum().backward()
    soft = torch.exp(z) / torch.exp(z).sum(-1, keepdim=True)
    want = soft * (v - (soft * v).sum(-1, keepdim=True)) / tau
    torch.testing.assert_close(logits.grad, want, **TOL)


def test_annealed_tau_hand_values() -> None:
    assert annealed_tau(1.0, None, 0.7, "exponential") == 1.0
    assert annealed_tau(2.0, 0.5, 0.0, "exponential") == pytest.approx(2.0, rel=1e-12)
    assert annealed_tau(2.0, 0.5, 0.5, "exponential") == pytest.approx(1.0, rel=1e-12)
    assert annealed_tau(2.0, 0.5, 1.0, "exponential") == pytest.approx(0.5, rel=1e-12)
    assert annealed_tau(2.0, 0.5, 0.25, "linear") == pytest.approx(1.625, rel=1e-12)
    assert annealed_tau(2.0, 0.5, 1.5, "linear") == pytest.approx(0.5, rel=1e-12)  # clamped
    assert annealed_tau(2.0, 0.5, -1.0, "exponential") == pytest.approx(2.0, rel=1e-12)


@pytest.mark.parametrize(
    "arch", ["sum_fusion", "multiply_fusion", "concat_fusion", "soft_dynamic", "dynamic"]
)
def test_every_pathway_output_reaches_the_per_pathway_loss(arch: str) -> None:
    """Training with every pathway run: each pathway's own F_k goes through the shared heads
    (``train.lambda_pathway``, docs/design.md); never in evaluation."""
    model = _model(arch).train()
    model.pathway_heads = True
    video, vm, words, wm = _inputs()
    noise = torch.tensor([[0.3, -0.2], [-1.0, 2.0], [0.1, 0.4]], dtype=F64)
    out = model(video, vm, words, wm, gumbel_noise=noise)
    feats, _, masks = _pathway_feats(model, video, vm, words, wm, arch)
    assert out.pathway_logits is not None and len(out.pathway_logits) == 2
    for got, f in zip(out.pathway_logits, feats, strict=True):
        for a, b in zip(got, model.heads(f, masks), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    assert model.eval()(video, vm, words, wm).pathway_logits is None


class _Fixed(nn.Module):
    """A stand-in pathway returning fixed features for the rows it gets (row index in fv)."""

    def __init__(self, value: Tensor) -> None:
        super().__init__()
        self.value = value

    def forward(self, fv: Tensor, fq: Tensor, masks: Masks) -> Tensor:
        return self.value[fv[:, 0, 0].long(), : fv.shape[1]]


@pytest.mark.parametrize("train", [False, True])
def test_routing_is_decided_in_float32_for_half_precision_logits(train: bool) -> None:
    """Under autocast FC_3 gives bfloat16 logits: routing, probabilities and the Gumbel sample
    are computed from them in float32 (Eq. 13-14 at full precision)."""
    from dynpath.config import ModelConfig

    cfg = ModelConfig.model_validate({"dim": 8, "heads": 1, "gumbel_tau": 0.5})
    sel = DynamicSelection(cfg).to(torch.bfloat16).train(train)
    g = torch.Generator().manual_seed(0)
    fs = torch.randn(4, 8, generator=g).to(torch.bfloat16)
    feats = [torch.randn(4, 3, 8, generator=g) for _ in range(2)]
    fv = torch.zeros(4, 3, 8)
    fv[:, 0, 0] = torch.arange(4)
    masks = Masks.build(torch.ones(4, 3, dtype=torch.bool), torch.ones(4, 1, dtype=torch.bool), F64)
    noise = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 0.0], [2.0, -2.0]])
    res = sel([_Fixed(f) for f in feats], fv, fv[:, :1], masks, fs, noise)  # type: ignore[list-item]
    logits = (fs.float() @ sel.fc.weight.float().T + sel.fc.bias.float()).to(torch.bfloat16).float()
    assert res.route_probs is not None and res.route_probs.dtype == torch.float32
    torch.testing.assert_close(res.route_probs, logits.softmax(-1))
    want_route = (logits + noise).argmax(-1) if train else logits.argmax(-1)
    assert res.route.tolist() == want_route.tolist()
    for b, k in enumerate(want_route.tolist()):
        torch.testing.assert_close(res.features[b].float(), feats[k][b])


def test_input_dropout_placement_leaves_every_pathway_ffn_without_dropout() -> None:
    """docs/design.md, "Dropout placement": with ``input`` (default) the FFNs inside the
    pathways (MS-LSTM, MSAB, convolutions, CQA's FFN_6) carry no dropout; ``ffn`` adds it."""
    from dynpath.model.layers import FFN, Dropout

    for placement, want in (("input", 0.0), ("ffn", 0.5)):
        model = _model("dynamic", dropout=0.5, dropout_placement=placement)
        ffns = [m for p in model.pathways.values() for m in p.modules() if isinstance(m, FFN)]
        assert ffns and all(isinstance(f[2], Dropout) and f[2].p == want for f in ffns)
        for p in model.pathways.values():
            assert p.cqa.drop.p == 0.5  # the similarity inputs keep theirs in both readings


@pytest.mark.parametrize("route", [0, 1])
def test_whole_batch_on_one_route_padded_past_its_longest_sample(route: int) -> None:
    """Eq. 14 at inference when every query takes the same route and the batch is padded past
    its longest sample (a bucket's padding, or the other route's longer videos elsewhere):
    ``run_routed`` trims to the group's length, runs the pathway once and pads back. Each
    sample alone is the reference. Route 1 also checks that an empty route 0 is skipped, not
    taken as the end of the loop (mutmut survivors in ``run_routed``)."""
    model = _model("dynamic").eval()
    video, vm, words, wm = _inputs()
    video = torch.nn.functional.pad(video, (0, 0, 0, 2))  # T = 8, longest sample 6
    vm = torch.nn.functional.pad(vm, (0, 2))
    with torch.no_grad():
        model.fusion.fc.bias[route] += 1e3
    out = model(video, vm, words, wm)
    assert out.route.tolist() == [route] * 3
    assert out.start_logits.shape == (3, 8)
    want = _reference(model, video, vm, words, wm, "dynamic")
    _compare(model, (out.start_logits, out.end_logits, out.inner_logits), want)


def test_forward_batch_passes_the_gumbel_noise_through() -> None:
    """``forward_batch`` (the trainer's entry point) is ``forward`` on the batch's tensors with
    the caller's Gumbel noise: the noise decides the routes, so dropping it would train on
    freshly drawn routes instead (mutmut survivors in ``forward_batch``)."""
    from dynpath.data.batch import Batch

    model = _model("dynamic").train()
    video, vm, words, wm = _inputs()
    b, t = vm.shape
    zeros = torch.zeros(b, dtype=torch.long)
    batch = Batch(
        video, vm, words, wm, zeros, zeros, torch.zeros(b, t), torch.ones(b), torch.zeros(b, 2),
        vm.sum(-1), ["q"] * b, ["v"] * b, ["x"] * b,
    )  # fmt: skip
    for route in (0, 1):
        noise = torch.zeros(b, 2, dtype=F64)
        noise[:, route] = 1e3  # far above any logit gap: every query takes ``route``
        torch.manual_seed(0)  # the same global draws for both calls (dropout is 0 anyway)
        got = model.forward_batch(batch, gumbel_noise=noise)
        torch.manual_seed(0)
        want = model(video, vm, words, wm, gumbel_noise=noise)
        assert got.route.tolist() == want.route.tolist() == [route] * b
        torch.testing.assert_close(got.start_logits, want.start_logits, rtol=0.0, atol=0.0)


def test_variant_spec_checks_pathway_count_and_route_order() -> None:
    """A registered variant is refused at definition when its fusion takes another number of
    pathways, or when a selector's pathways are not in route order (route k runs pathway k);
    the registry builds its table at import, so only a test-time spec reaches the checks."""
    from dynpath.model.modules import EXPLOITATION, EXPLORATION
    from dynpath.model.network import VariantSpec

    assert VariantSpec("one", (EXPLORATION,), "single").modules == ("exploration",)
    assert VariantSpec("sel", (EXPLOITATION, EXPLORATION), "gumbel").has_selector
    # no selector: any order
    assert VariantSpec("rev", (EXPLORATION, EXPLOITATION), "sum").modules[0] == "exploration"
    with pytest.raises(ValueError, match=r"fusion 'sum' takes 2 pathway\(s\)"):
        VariantSpec("bad", (EXPLOITATION,), "sum")
    with pytest.raises(ValueError, match=r"a selector needs pathways in route order"):
        VariantSpec("bad", (EXPLORATION, EXPLOITATION), "gumbel")


def test_run_routed_on_an_empty_batch_runs_nothing_and_returns_an_empty_fe() -> None:
    """No sample, no route: no pathway runs and F_e is fv's empty shape (mutmut survivor in
    ``run_routed``'s empty-batch return)."""
    from dynpath.model.selection import run_routed

    def never(*_: Any) -> Tensor:
        raise AssertionError("a pathway ran on an empty batch")

    fv = torch.zeros(0, 4, 8, dtype=F64)
    masks = Masks.build(
        torch.zeros(0, 4, dtype=torch.bool), torch.zeros(0, 2, dtype=torch.bool), F64
    )
    route = torch.zeros(0, dtype=torch.long)
    out = run_routed([never, never], route, None, fv, fv[:, :2], masks)  # type: ignore[list-item]
    assert out.shape == (0, 4, 8) and out.dtype == F64


def test_msab_attention_weights_get_the_dropout_in_both_placements() -> None:
    """docs/design.md, "Dropout placement": the MSAB attention weights carry ``dropout`` in both
    readings (GoL and TeN), while the MSAB's FFN follows the placement (mutmut survivor in
    ``GlobalMotion.__init__``: the attention built with the FFN's dropout)."""
    from dynpath.model.layers import MSAB

    for placement, ffn_p in (("input", 0.0), ("ffn", 0.5)):
        model = _model("dynamic", dropout=0.5, dropout_placement=placement)
        blocks = [m for m in model.modules() if isinstance(m, MSAB)]
        assert len(blocks) == 4  # GoL and TeN, in both pairs of their pathway
        assert all(b.attn.dropout == 0.5 and b.ffn[2].p == ffn_p for b in blocks)


def test_model_wiring_of_encoders_dropout_normalization_and_head_biases() -> None:
    """What ``DynamicPathwayModel.__init__`` hands its parts (mutmut survivors there and in
    ``heads``): the encoders take ``dropout`` on their inputs and the placement's FFN dropout
    (docs/design.md, "Dropout placement"), the video encoder the feature normalization, and
    the heads (Eq. 16) have no bias on FC_5/FC_7 (start/end: softmax-invariant) but one on
    the inner branch's last layer (a sigmoid is not shift-invariant)."""
    from dynpath.config import ConfigError

    for placement, ffn_p in (("input", 0.0), ("ffn", 0.5)):
        model = _model("dynamic", dropout=0.5, dropout_placement=placement, normalize_features=True)
        assert model.arch == "dynamic" and model.feature_dim == FEAT
        assert model.video.drop.p == 0.5 and model.video.ffn[2].p == ffn_p
        assert model.video.normalize is True
        assert model.text.drop.p == 0.5 and model.text.ffn[2].p == ffn_p
        heads = model.heads
        assert heads.start[-1].bias is None and heads.end[-1].bias is None
        assert heads.inner[-1].bias is not None
    with pytest.raises(
        ConfigError, match=r"model\.dim \(10\) must be divisible by model\.heads \(4\)"
    ):
        _model("dynamic", dim=10, heads=4)
