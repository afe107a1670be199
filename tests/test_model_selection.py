"""The query-aware selection (Eq. 13-14) against independent float64 references: the
straight-through gradient of both training modes, the tau schedule, which pathways run when, the
per-pathway loss, and the "network parallel" row as one module."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from dynpath.config import Config, ModelConfig
from dynpath.data.batch import Batch
from dynpath.engine.trainer import Trainer, TrainOptions
from dynpath.model import build_model, localization_loss, model_info, variant_metadata
from dynpath.model.layers import Masks
from dynpath.model.network import DynamicPathwayModel
from dynpath.model.output import ModelOutput
from dynpath.model.selection import DynamicSelection, annealed_tau

FEAT = 12
VOCAB = 30


class _Constant(torch.nn.Module):
    """A stand-in pathway: returns a fixed F_k (so dL/dF_k and <g, F_k> are known exactly).

    The rows it gets may be a routed subset of the batch: fv[:, 0, 0] carries each row's index."""

    def __init__(self, value: Tensor) -> None:
        super().__init__()
        self.value = value
        self.calls: list[int] = []

    def forward(self, fv: Tensor, fq: Tensor, masks: Masks) -> Tensor:
        self.calls.append(int(fv.shape[0]))
        return self.value[fv[:, 0, 0].long(), : fv.shape[1]]


def _target_batch(
    vm: Tensor, start: Tensor, end: Tensor, inner: Tensor, video: Tensor | None = None
) -> Batch:
    """A batch for the loss and the trainer: the targets given, one-word queries, no features
    unless ``video`` is."""
    b, t = vm.shape
    return Batch(
        video=torch.zeros(b, t, 1) if video is None else video,
        video_mask=vm,
        words=torch.ones(b, 1, dtype=torch.long),
        word_mask=torch.ones(b, 1, dtype=torch.bool),
        start=start,
        end=end,
        inner=inner,
        durations=torch.ones(b),
        gt_seconds=torch.zeros(b, 2),
        num_positions=vm.sum(1),
        qids=[str(i) for i in range(b)],
        vids=["v"] * b,
        queries=["q"] * b,
    )


def _selector_case(
    mode: str, tau: float, seed: int = 0
) -> tuple[DynamicSelection, list[_Constant], Tensor, Tensor, Masks, Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    b, t, d = 4, 5, 8
    cfg = ModelConfig.model_validate({"dim": d, "gumbel_tau": tau, "selector_training": mode})
    sel = DynamicSelection(cfg).double().train()
    feats = [torch.randn(b, t, d, generator=g, dtype=torch.float64) for _ in range(2)]
    paths = [_Constant(f) for f in feats]
    fv = torch.zeros(b, t, d, dtype=torch.float64)
    fv[:, 0, 0] = torch.arange(b)
    fq = torch.zeros(b, 3, d, dtype=torch.float64)
    masks = Masks.build(
        torch.ones(b, t, dtype=torch.bool), torch.ones(b, 3, dtype=torch.bool), fv.dtype
    )
    fs = torch.randn(b, d, generator=g, dtype=torch.float64, requires_grad=True)
    noise = -torch.empty(b, 2, dtype=torch.float64).exponential_(generator=g).log()
    upstream = torch.randn(b, t, d, generator=g, dtype=torch.float64)  # g = dL/dF_e
    return sel, paths, fv, fq, masks, fs, noise, upstream  # type: ignore[return-value]


def _reference_logit_grad(
    logits: Tensor, noise: Tensor, tau: float, feats: list[Tensor], g: Tensor, both: bool
) -> Tensor:
    """dL/dlogits written from the equations: y = softmax((logits + noise) / tau) (Jang et al.);
    with every pathway run: y_k (<g, F_k> - sum_j y_j <g, F_j>) / tau; with only the chosen s
    run: y_k (<g, F_k> 1[k = s] - y_s <g, F_s>) / tau."""
    y = torch.softmax((logits + noise) / tau, dim=-1)
    inner = torch.stack([(g * f).sum((1, 2)) for f in feats], dim=1)  # [B, K] = <g, F_k>
    if not both:
        chosen = F.one_hot(y.argmax(-1), 2).to(inner.dtype)
        inner = inner * chosen
    return y * (inner - (y * inner).sum(-1, keepdim=True)) / tau


@pytest.mark.parametrize("mode", ["both", "selected"])
@pytest.mark.parametrize("tau", [1.0, 0.37])
def test_selector_gradient_matches_the_straight_through_reference(mode: str, tau: float) -> None:
    sel, paths, fv, fq, masks, fs, noise, upstream = _selector_case(mode, tau)
    res = sel(paths, fv, fq, masks, fs, noise)
    (res.features * upstream).sum().backward()
    logits = sel.fc(fs).detach()
    feats = [p.value for p in paths]
    want = _reference_logit_grad(logits, noise, tau, feats, upstream, both=mode == "both")
    # dL/dfs = W^T dL/dlogits (FC_3 is linear)
    torch.testing.assert_close(fs.grad, want @ sel.fc.weight.detach(), rtol=1e-10, atol=1e-12)
    # the forward value is the chosen pathway itself (P_path one-hot)
    chosen = (logits + noise).argmax(-1)
    for i, k in enumerate(chosen.tolist()):
        torch.testing.assert_close(res.features[i], feats[k][i], rtol=1e-12, atol=1e-12)
    assert res.route.tolist() == chosen.tolist()


def test_the_two_modes_differ_where_the_paper_says() -> None:
    """The approximation loses the comparison term: its gradient differs from the faithful one."""
    grads = {}
    for mode in ("both", "selected"):
        sel, paths, fv, fq, masks, fs, noise, upstream = _selector_case(mode, 1.0)
        (sel(paths, fv, fq, masks, fs, noise).features * upstream).sum().backward()
        grads[mode] = fs.grad
    assert not torch.allclose(grads["both"], grads["selected"])


def test_which_pathways_run_in_training_and_at_inference() -> None:
    sel, paths, fv, fq, masks, fs, noise, _ = _selector_case("both", 1.0)
    sel(paths, fv, fq, masks, fs, noise)
    assert [p.calls for p in paths] == [[4], [4]]  # every sample through both pathways
    sel_s, paths_s, *rest = _selector_case("selected", 1.0)
    fv, fq, masks, fs, noise, _ = rest
    res = sel_s(paths_s, fv, fq, masks, fs, noise)
    counts = [sum(p.calls) for p in paths_s]
    assert counts == [int((res.route == k).sum()) for k in range(2)]  # only the chosen one
    sel.eval()
    for p in paths:
        p.calls.clear()
    with torch.no_grad():
        out = sel(paths, fv, fq, masks, fs, None)
    assert sum(sum(p.calls) for p in paths) == 4  # inference: each sample through one pathway
    assert [sum(p.calls) for p in paths] == [int((out.route == k).sum()) for k in range(2)]


def _model(arch: str, **model: Any) -> DynamicPathwayModel:
    torch.manual_seed(0)
    base = {"dim": 16, "heads": 2, "lstm_scales": 2, "kernels": [3, 5], "text_lstm_layers": 1}
    emb = np.random.default_rng(0).standard_normal((VOCAB, 300)).astype(np.float32)
    emb[0] = 0
    cfg = Config.model_validate({"model": {**base, "dropout": 0.0, **model}})
    return build_model(arch, cfg, emb, FEAT)


def _inputs(b: int = 4, t: int = 7) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(1)
    vm = torch.arange(t)[None] < torch.tensor([t, t - 2, t - 1, 3][:b])[:, None]
    wm = torch.ones(b, 4, dtype=torch.bool)
    return (
        torch.randn(b, t, FEAT, generator=g),
        vm,
        torch.randint(2, VOCAB, (b, 4), generator=g),
        wm,
    )


def test_forward_hooks_in_the_real_model() -> None:
    """Hooks on the real pathway modules: both run on the whole batch in training ("both"),
    one per sample at inference."""
    model = _model("dynamic")
    seen = {name: 0 for name in model.pathways}
    for name, module in model.pathways.items():
        module.register_forward_pre_hook(
            lambda _m, args, name=name: seen.__setitem__(name, seen[name] + args[0].shape[0])
        )
    video, vm, words, wm = _inputs()
    noise = torch.tensor([[4.0, 0.0], [0.0, 4.0], [4.0, 0.0], [4.0, 0.0]])
    out = model.train()(video, vm, words, wm, gumbel_noise=noise)
    assert seen == {"exploitation": 4, "exploration": 4}
    assert out.route.tolist() == [0, 1, 0, 0]
    seen.update(dict.fromkeys(seen, 0))
    with torch.no_grad():
        out = model.eval()(video, vm, words, wm)
    assert sum(seen.values()) == 4
    assert seen["exploitation"] == int((out.route == 0).sum())


def test_tau_schedule_values_and_trainer_drives_it(tmp_path: Any) -> None:
    assert annealed_tau(5.0, None, 0.7, "exponential") == 5.0
    assert annealed_tau(5.0, 0.5, 0.0, "exponential") == pytest.approx(5.0)
    assert annealed_tau(5.0, 0.5, 0.5, "exponential") == pytest.approx((5.0 * 0.5) ** 0.5)
    assert annealed_tau(5.0, 0.5, 1.0, "exponential") == pytest.approx(0.5)
    assert annealed_tau(5.0, 0.5, 0.5, "linear") == pytest.approx(2.75)
    model = _model("dynamic", gumbel_tau=5.0, gumbel_tau_end=0.5)
    assert isinstance(model.fusion, DynamicSelection)
    model.set_training_progress(0.5)
    assert model.fusion.tau == pytest.approx(5.0**0.5 * 0.5**0.5)

    seen: list[float] = []

    class Recorder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def set_training_progress(self, fraction: float) -> None:
            seen.append(fraction)

        def forward(self, video: Tensor, vm: Tensor, words: Tensor, wm: Tensor) -> ModelOutput:
            x = self.w * video.sum(-1)
            return ModelOutput(x, x, x, torch.zeros(len(x), dtype=torch.long))

    def loss(out: ModelOutput, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        value = (out.start_logits**2).mean()
        return value, {}

    def loader(indices: Any, batch_size: int) -> list[Batch]:
        batches = []
        for i in range(0, len(indices), batch_size):
            n = len(indices[i : i + batch_size])
            batches.append(
                _target_batch(
                    torch.ones(n, 3, dtype=torch.bool),
                    torch.zeros(n, dtype=torch.long),
                    torch.zeros(n, dtype=torch.long),
                    torch.zeros(n, 3),
                    video=torch.randn(n, 3, 2),
                )
            )
        return batches

    opts = TrainOptions(
        epochs=2, batch_size=4, lr=0.01, seed=0, selection_metric="m", progress=False
    )
    trainer = Trainer(
        Recorder(), loss, 8, loader, lambda m: {"m": 0.0}, opts, tmp_path, {"variant": "r"}
    )
    trainer.fit()
    assert seen == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0])  # 4 steps, first 0, last 1


def test_pathway_loss_matches_the_equation_per_pathway() -> None:
    g = torch.Generator().manual_seed(2)
    b, t = 3, 6
    vm = torch.arange(t)[None] < torch.tensor([6, 4, 5])[:, None]

    def logits() -> tuple[Tensor, Tensor, Tensor]:
        return tuple(  # type: ignore[return-value]
            torch.randn(b, t, generator=g, dtype=torch.float64).masked_fill(~vm, -1e30)
            for _ in range(3)
        )

    main, p1, p2 = logits(), logits(), logits()
    start = torch.tensor([0, 1, 2])
    end = torch.tensor([3, 3, 4])
    inner = (torch.arange(t)[None] >= start[:, None]) & (torch.arange(t)[None] <= end[:, None])
    batch = _target_batch(vm, start, end, inner.double())

    def ref(s: Tensor, e: Tensor, i: Tensor, l1: float, l2: float) -> float:
        total = 0.0
        for n in range(b):
            valid = int(vm[n].sum())
            ls = -torch.log_softmax(s[n, :valid], 0)[start[n]]
            le = -torch.log_softmax(e[n, :valid], 0)[end[n]]
            total += l1 * float(ls + le) / b
        bce = F.binary_cross_entropy_with_logits(i[vm], inner.double()[vm], reduction="sum")
        return total + l2 * float(bce) / int(vm.sum())

    out = ModelOutput(*main, torch.zeros(b, dtype=torch.long), None, [p1, p2])
    loss, parts = localization_loss(out, batch, 1.5, 10.0, lambda_pathway=0.3)
    want = ref(*main, 1.5, 10.0) + 0.3 * (ref(*p1, 1.5, 10.0) + ref(*p2, 1.5, 10.0)) / 2
    assert float(loss) == pytest.approx(want, rel=1e-10)
    assert parts["loss_pathway"] == pytest.approx((ref(*p1, 1.5, 10.0) + ref(*p2, 1.5, 10.0)) / 2)
    off, parts_off = localization_loss(out, batch, 1.5, 10.0, lambda_pathway=0.0)
    assert float(off) == pytest.approx(ref(*main, 1.5, 10.0), rel=1e-10)
    assert "loss_pathway" not in parts_off


def test_pathway_logits_only_when_asked_and_only_in_training() -> None:
    model = _model("dynamic")
    video, vm, words, wm = _inputs()
    assert model.train()(video, vm, words, wm).pathway_logits is None  # not asked
    model.pathway_heads = True
    out = model(video, vm, words, wm)
    assert out.pathway_logits is not None and len(out.pathway_logits) == 2
    with torch.no_grad():
        assert model.eval()(video, vm, words, wm).pathway_logits is None
    sel = _model("dynamic", selector_training="selected")
    sel.pathway_heads = True
    assert sel.train()(video, vm, words, wm).pathway_logits is None  # not every pathway ran


def test_network_parallel_is_one_module_at_single_module_size() -> None:
    meta = variant_metadata("network_parallel")
    assert not meta["has_selector"] and meta["modules"] == ["parallel"]
    rows = {r["variant"]: r["parameters"] for r in model_info(Config())}
    # parallel sums the same networks the sequential module chains: identical parameter count
    assert rows["network_parallel"] == rows["exploitation_only"] == rows["exploration_only"]
    model = _model("network_parallel")
    video, vm, _words, wm = _inputs()
    pathway = model.pathways["parallel"]
    masks = Masks.build(vm, wm, video.dtype)
    x = model.video(video, masks)
    want = pathway.pre.first(x, masks) + pathway.pre.second(x, masks)
    torch.testing.assert_close(pathway.pre(x, masks), want)


def test_route_loss_is_the_expected_per_sample_loss_under_the_selector() -> None:
    """lambda_route: mean_b sum_k p_bk L_bk, with L_bk each pathway's per-sample loss (inner BCE
    normalised by the batch's valid positions), stop-gradient on L: only p learns from it."""
    g = torch.Generator().manual_seed(5)
    b, t = 3, 5
    vm = torch.arange(t)[None] < torch.tensor([5, 3, 4])[:, None]
    start, end = torch.tensor([0, 1, 1]), torch.tensor([2, 2, 3])
    pos = torch.arange(t)[None]
    inner = ((pos >= start[:, None]) & (pos <= end[:, None])).double()

    def logits(requires_grad: bool = False) -> list[Tensor]:
        return [
            torch.randn(b, t, generator=g, dtype=torch.float64)
            .masked_fill(~vm, -1e30)
            .requires_grad_(requires_grad)
            for _ in range(3)
        ]

    main, p1, p2 = logits(), logits(True), logits(True)
    probs = torch.softmax(torch.randn(b, 2, generator=g, dtype=torch.float64), -1)
    probs.requires_grad_(True)
    batch = _target_batch(vm, start, end, inner)
    n_valid = int(vm.sum())

    def per_sample(s: Tensor, e: Tensor, i: Tensor) -> list[float]:
        out = []
        for n in range(b):
            valid = int(vm[n].sum())
            ce = (
                -torch.log_softmax(s[n, :valid], 0)[start[n]]
                - torch.log_softmax(e[n, :valid], 0)[end[n]]
            )
            bce = F.binary_cross_entropy_with_logits(
                i[n, :valid], inner[n, :valid], reduction="sum"
            )
            out.append(float(2.0 * ce + 10.0 * bce * b / n_valid))
        return out

    l1, l2 = per_sample(*[x.detach() for x in p1]), per_sample(*[x.detach() for x in p2])
    p = probs.detach()
    want_route = sum(float(p[n, 0]) * l1[n] + float(p[n, 1]) * l2[n] for n in range(b)) / b
    out = ModelOutput(*main, torch.zeros(b, dtype=torch.long), probs, [tuple(p1), tuple(p2)])
    loss, parts = localization_loss(out, batch, 2.0, 10.0, lambda_pathway=0.0, lambda_route=0.7)
    assert parts["loss_route"] == pytest.approx(want_route, rel=1e-10)
    assert "loss_pathway" not in parts
    loss.backward()
    assert probs.grad is not None
    want_grad = torch.tensor([[l1[n], l2[n]] for n in range(b)], dtype=torch.float64) * 0.7 / b
    torch.testing.assert_close(probs.grad, want_grad)
    assert p1[0].grad is None or not p1[0].grad.any()  # stop-gradient on the pathway losses


def test_balance_term_is_switch_routing_load_balance() -> None:
    """lambda_balance: K sum_k f_k mean(p_k), f from the hard routes (no gradient): 1.0 for an
    even split with even probabilities, K for everything one way with certainty."""
    b, t = 4, 3
    vm = torch.ones(b, t, dtype=torch.bool)
    zero = torch.zeros(b, dtype=torch.long)
    batch = _target_batch(vm, zero, zero, torch.zeros(b, t))
    zeros = torch.zeros(b, t)
    probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.8, 0.2]], requires_grad=True)
    route = torch.tensor([0, 0, 1, 0])
    out = ModelOutput(zeros, zeros, zeros, route, probs)
    loss, parts = localization_loss(out, batch, 1.0, 1.0, lambda_balance=0.5)
    share = torch.tensor([0.75, 0.25])
    want = 2 * float((share * probs.detach().mean(0)).sum())
    assert parts["loss_balance"] == pytest.approx(want)
    loss.backward()
    assert probs.grad is not None
    torch.testing.assert_close(probs.grad, (0.5 * 2 * share / b).expand(b, 2))
    even = ModelOutput(zeros, zeros, zeros, torch.tensor([0, 1, 0, 1]), torch.full((b, 2), 0.5))
    assert localization_loss(even, batch, 1.0, 1.0, lambda_balance=1.0)[1][
        "loss_balance"
    ] == pytest.approx(1.0)
