"""Every registered variant: padding invariance, gradient reach, routing cost, determinism, loss,
parameter counts and the latency helper."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dynpath.config import Config, ConfigError
from dynpath.data.batch import Batch
from dynpath.model import VARIANTS, build_model, localization_loss, model_info, variant_metadata
from dynpath.model.layers import Masks, MultiScaleTemporalConv
from dynpath.model.network import DynamicPathwayModel
from dynpath.model.output import NO_ROUTE, ModelOutput
from dynpath.model.registry import count_parameters
from dynpath.model.selection import DynamicSelection
from dynpath.variants import paper_ablation

FEAT = 12


VOCAB = 30
ALL = VARIANTS.names()
# variants whose selector decides what is computed (Gumbel hard routing)
SELECTING = [a for a in ALL if variant_metadata(a)["fusion"] == "gumbel"]


def _cfg(**model: Any) -> Config:
    base = {
        "dim": 16,
        "heads": 2,
        "lstm_scales": 3,
        "kernels": [3, 5],
        "text_lstm_layers": 2,
        "dropout": 0.0,
    }
    return Config.model_validate({"model": {**base, **model}})


def _embeddings() -> np.ndarray:
    emb = np.random.default_rng(0).standard_normal((VOCAB, 300)).astype(np.float32)
    emb[0] = 0
    return emb


def _model(arch: str, seed: int = 0, **model: Any) -> DynamicPathwayModel:
    torch.manual_seed(seed)
    return build_model(arch, _cfg(**model), _embeddings(), FEAT)


def _inputs(
    video_len: list[int], word_len: list[int], seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    b, t, n_words = len(video_len), max(video_len), max(word_len)
    vm = torch.arange(t)[None] < torch.tensor(video_len)[:, None]
    wm = torch.arange(n_words)[None] < torch.tensor(word_len)[:, None]
    video = torch.randn(b, t, FEAT, generator=g) * vm[..., None]
    words = torch.randint(1, VOCAB, (b, n_words), generator=g) * wm
    return video, vm, words, wm


def _noise(routes: list[int]) -> torch.Tensor:
    """Gumbel noise that forces each sample's training route regardless of the logits."""
    n = torch.zeros(len(routes), 2)
    n[torch.arange(len(routes)), torch.tensor(routes)] = 4.0
    return n


# --- padding invariance -----------------------------------------------------------------------


@pytest.mark.parametrize("arch", ALL)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_padding_invariance(arch: str, mode: str) -> None:
    """Sample 0 alone equals sample 0 batched with longer samples (video and query)."""
    model = _model(arch).train(mode == "train")
    video, vm, words, wm = _inputs([7, 13, 11, 10], [3, 5, 4, 5])
    # put garbage (not zeros) in sample 0's padding: the model must not read it
    video[0, 7:] = 7.0
    routes_to_try = [0, 1] if mode == "train" and model.spec.has_selector else [None]
    for r in routes_to_try:
        noise_b = _noise([r, 1 - r, r, 1 - r]) if r is not None else None
        noise_a = noise_b[:1] if noise_b is not None else None
        with torch.no_grad():
            alone = model(
                video[:1, :7], vm[:1, :7], words[:1, :3], wm[:1, :3], gumbel_noise=noise_a
            )
            batched = model(video, vm, words, wm, gumbel_noise=noise_b)
        for name in ("start_logits", "end_logits", "inner_logits"):
            a, b = getattr(alone, name), getattr(batched, name)
            torch.testing.assert_close(a[0], b[0, :7], atol=1e-5, rtol=1e-5, msg=name)
            assert torch.all(b[0, 7:] < -1e29), f"{name}: padded positions must be masked"
        assert alone.route[0] == batched.route[0]
        if alone.route_probs is not None:
            assert batched.route_probs is not None
            torch.testing.assert_close(
                alone.route_probs[0], batched.route_probs[0], atol=1e-5, rtol=1e-5
            )


# --- gradients --------------------------------------------------------------------------------


def _loss(out: ModelOutput, vm: torch.Tensor) -> torch.Tensor:
    b = vm.shape[0]
    start = torch.zeros(b, dtype=torch.long)
    end = vm.sum(1) - 1
    inner = vm.float()
    return (
        F.cross_entropy(out.start_logits, start)
        + F.cross_entropy(out.end_logits, end)
        + F.binary_cross_entropy_with_logits(out.inner_logits, inner, weight=vm.float())
    )


@pytest.mark.parametrize("arch", ALL)
def test_gradients_reach_every_used_parameter(arch: str) -> None:
    # d=32: at d=16 a head's 8 hidden ReLUs can all be dead at init, a tiny-model artefact
    model = _model(arch, dim=32).train()
    meta = variant_metadata(arch)
    video, vm, words, wm = _inputs([9, 6, 8, 5], [4, 3, 4, 2])
    words[0, 1] = 1  # an UNK token
    out = model(video, vm, words, wm, gumbel_noise=_noise([0, 1, 0, 1]))
    _loss(out, vm).backward()
    assert set(model.pathways.keys()) == set(meta["modules"])
    missing = [
        n
        for n, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)
    ]
    assert missing == [], f"{arch}: no gradient for {missing}"
    assert model.text.vectors.grad is None and not model.text.vectors.requires_grad
    assert model.text.unk.grad is not None and model.text.unk.grad.abs().sum() > 0


def test_unk_gets_no_gradient_without_unk_tokens() -> None:
    model = _model("exploitation_only").train()
    video, vm, words, wm = _inputs([6, 5], [3, 3])
    words = torch.where(words == 1, 2, words)
    _loss(model(video, vm, words, wm), vm).backward()
    assert model.text.unk.grad is None or model.text.unk.grad.abs().sum() == 0


def test_selected_only_training_sends_no_gradient_to_unused_module() -> None:
    """selector_training=selected, all samples routed to exploitation: the exploration module
    never runs (grad None), while the selector still learns through the P_path weight."""
    model = _model("dynamic", selector_training="selected").train()
    video, vm, words, wm = _inputs([6, 5, 4], [3, 3, 2])
    _loss(model(video, vm, words, wm, gumbel_noise=_noise([0, 0, 0])), vm).backward()
    assert all(p.grad is None for p in model.pathways["exploration"].parameters())
    assert isinstance(model.fusion, DynamicSelection)
    assert model.fusion.fc.weight.grad is not None and model.fusion.fc.weight.grad.abs().sum() > 0


def test_faithful_training_runs_the_unchosen_module_with_zero_weight() -> None:
    """selector_training=both: the exploration module runs on every sample, but P_path is 0 for
    it in value, so its parameters get exactly zero gradient from the main loss; the selector's
    gradient now depends on it (it compares the two outputs)."""
    model = _model("dynamic").train()
    video, vm, words, wm = _inputs([6, 5, 4], [3, 3, 2])
    _loss(model(video, vm, words, wm, gumbel_noise=_noise([0, 0, 0])), vm).backward()
    grads = [p.grad for p in model.pathways["exploration"].parameters()]
    assert all(g is not None and not g.any() for g in grads)
    assert isinstance(model.fusion, DynamicSelection)
    assert model.fusion.fc.weight.grad is not None and model.fusion.fc.weight.grad.abs().sum() > 0


# --- routing: only the selected pathway runs at inference ---------------------------------------


def _count_samples(model: DynamicPathwayModel) -> dict[str, int]:
    counts = dict.fromkeys(model.pathways.keys(), 0)
    for name, module in model.pathways.items():

        def hook(_m: torch.nn.Module, args: tuple[Any, ...], name: str = name) -> None:
            counts[name] += int(args[0].shape[0])

        module.register_forward_pre_hook(hook)
    return counts


@pytest.mark.parametrize("arch", SELECTING)
def test_dynamic_eval_runs_only_the_chosen_module_per_sample(arch: str) -> None:
    model = _model(arch).eval()
    video, vm, words, wm = _inputs([9, 6, 8, 5, 7, 9], [4, 3, 4, 2, 3, 4])
    with torch.no_grad():
        _, fs = model.text(words, Masks.build(vm, wm, torch.float32))
        assert isinstance(model.fusion, DynamicSelection) and fs is not None
        model.fusion.balance(fs)
        counts = _count_samples(model)
        out = model(video, vm, words, wm)
    assert sorted(out.route.tolist()) == [0, 0, 0, 1, 1, 1]
    assert counts == {"exploitation": 3, "exploration": 3}
    # grouped output == the selected module run on the whole batch, sample by sample
    with torch.no_grad():
        masks = Masks.build(vm, wm, torch.float32)
        fq, _ = model.text(words, masks)
        fv = model.video(video, masks)
        full = [model.heads(p(fv, fq, masks), masks)[0] for p in model.pathways.values()]
    for i, r in enumerate(out.route.tolist()):
        n = int(vm[i].sum())
        torch.testing.assert_close(out.start_logits[i, :n], full[r][i, :n], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "arch", [a for a in ALL if len(variant_metadata(a)["modules"]) == 2 and a not in SELECTING]
)
def test_non_selecting_two_module_variants_run_both_modules(arch: str) -> None:
    model = _model(arch).eval()
    video, vm, words, wm = _inputs([9, 6, 8], [4, 3, 4])
    counts = _count_samples(model)
    with torch.no_grad():
        model(video, vm, words, wm)
    assert counts == {"exploitation": 3, "exploration": 3}


def test_routes_and_probs_in_output() -> None:
    video, vm, words, wm = _inputs([6, 5], [3, 3])
    with torch.no_grad():
        dyn = _model("dynamic").eval()(video, vm, words, wm)
        single = _model("exploration_only").eval()(video, vm, words, wm)
    assert dyn.route_probs is not None
    torch.testing.assert_close(dyn.route_probs.sum(1), torch.ones(2))
    assert dyn.route.tolist() == dyn.route_probs.argmax(1).tolist()
    assert single.route.tolist() == [NO_ROUTE, NO_ROUTE] and single.route_probs is None


# --- structure, determinism, loss ---------------------------------------------------------------


def test_second_order_printed_reverses_exploitation_only() -> None:
    module = _model("dynamic", conv_blocks=1).pathways
    printed = _model("dynamic", second_order="printed", conv_blocks=1).pathways
    assert isinstance(module["exploitation"].post.second, MultiScaleTemporalConv)  # GoL then LoL
    assert isinstance(printed["exploitation"].post.first, MultiScaleTemporalConv)  # GoL(LoL(.))
    assert isinstance(printed["exploration"].post.first, MultiScaleTemporalConv)  # TeN(SpL(.))
    assert isinstance(module["exploration"].post.first, MultiScaleTemporalConv)


def test_wo_variants_replace_the_network() -> None:
    wo_lml = _model("exploitation_wo_lml", conv_blocks=1).pathways["exploitation"]
    wo_te = _model("exploration_wo_te", conv_blocks=1).pathways["exploration"]
    assert not any(isinstance(m, MultiScaleTemporalConv) for m in wo_lml.modules())
    assert all(isinstance(m, MultiScaleTemporalConv) for m in (wo_te.pre.first, wo_te.pre.second))


def test_deterministic_same_seed_same_outputs() -> None:
    video, vm, words, wm = _inputs([6, 5, 4], [3, 3, 2])
    outs = []
    for seed in (3, 3, 4):
        model = _model("dynamic", seed=seed, dropout=0.3).train()
        torch.manual_seed(11)
        outs.append(model(video, vm, words, wm))
    torch.testing.assert_close(outs[0].start_logits, outs[1].start_logits, atol=0, rtol=0)
    assert torch.equal(outs[0].route, outs[1].route)
    assert not torch.allclose(outs[0].start_logits, outs[2].start_logits)


def _batch(video: torch.Tensor, vm: torch.Tensor, words: torch.Tensor, wm: torch.Tensor) -> Batch:
    b, t = vm.shape
    start = torch.zeros(b, dtype=torch.long)
    end = vm.sum(1) - 2
    pos = torch.arange(t)[None]
    inner = ((pos >= start[:, None]) & (pos <= end[:, None])).float()
    return Batch(
        video=video,
        video_mask=vm,
        words=words,
        word_mask=wm,
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


def test_localization_loss_matches_manual_and_ignores_padding() -> None:
    model = _model("exploitation_only").train()
    video, vm, words, wm = _inputs([7, 5], [3, 2])
    batch = _batch(video, vm, words, wm)
    out = model.forward_batch(batch)
    loss, parts = localization_loss(out, batch, lambda_bound=1.0, lambda_inner=10.0)
    bce = [
        F.binary_cross_entropy_with_logits(
            out.inner_logits[i, :n], batch.inner[i, :n], reduction="sum"
        )
        for i, n in enumerate([7, 5])
    ]
    manual_inner = sum(bce) / 12
    manual = (
        (
            F.cross_entropy(out.start_logits[0:1, :7], batch.start[:1])
            + F.cross_entropy(out.start_logits[1:2, :5], batch.start[1:])
        )
        / 2
        + (
            F.cross_entropy(out.end_logits[0:1, :7], batch.end[:1])
            + F.cross_entropy(out.end_logits[1:2, :5], batch.end[1:])
        )
        / 2
        + 10 * manual_inner
    )
    torch.testing.assert_close(loss, manual, atol=1e-5, rtol=1e-5)
    assert set(parts) == {"loss", "loss_start", "loss_end", "loss_inner"}
    assert parts["loss"] == pytest.approx(float(loss.detach()), rel=1e-6)
    loss.backward()


# --- registry, parameter counts, published tables, latency helper -------------------------------


def test_registry_metadata_and_unknown_arch() -> None:
    assert (
        set(ALL) == set(paper_ablation("charades_sta") or ()) == set(paper_ablation("tacos") or ())
    )
    assert variant_metadata("dynamic")["display"] == "Ours"
    assert variant_metadata("dynamic")["has_selector"]
    assert not variant_metadata("sum_fusion")["has_selector"]
    assert variant_metadata("exploration_wo_te")["modules"] == ["exploration"]
    with pytest.raises(Exception, match="registered"):
        build_model("nope", _cfg(), _embeddings(), FEAT)


def test_model_info_at_paper_configuration() -> None:
    rows = {r["variant"]: r for r in model_info(Config())}
    assert set(rows) == set(ALL)
    p = {k: r["parameters"] for k, r in rows.items()}
    d = 512
    # FC_1, FC_2 (Eq. 1; FC_2 without its softmax-invariant bias), FC_3
    selector = (d * d // 2 + d // 2) + d // 2 + (2 * d + 2)
    assert p["dynamic"] - p["sum_fusion"] == selector
    assert p["soft_dynamic"] == p["dynamic"]
    assert p["network_parallel"] == p["exploitation_only"]  # one module (Sec. IV-E4)
    assert p["concat_fusion"] - p["sum_fusion"] == 2 * d * d + d
    assert p["exploitation_only"] == p["exploration_only"]  # same networks, other order
    assert 30_000_000 < p["exploitation_only"] < p["dynamic"]


def test_model_info_respects_variant_overrides_and_matches_real_count() -> None:
    cfg = Config.model_validate(
        {"variants": {"small": {"arch": "dynamic", "model.dim": 16, "model.heads": 2}}}
    )
    [row] = model_info(cfg)
    assert row["arch"] == "dynamic"
    real = build_model(
        "dynamic",
        Config.model_validate({"model": {"dim": 16, "heads": 2}}),
        np.zeros((5, 300), np.float32),
        1024,
    )
    assert row["parameters"] == count_parameters(real)


@pytest.mark.parametrize(
    "override",
    [{"model.dim": 16, "model.heads": 2}, {"model": {"dim": 16, "heads": 2}}],
    ids=["dotted", "nested"],
)
def test_model_info_reads_overrides_like_training_does(override: dict[str, Any]) -> None:
    """One parser: a nested ``{model: {dim: ...}}`` override (what `dvc exp run -S` writes)
    changes the count exactly as the dotted one does, and as training's Config.variant sees it."""
    cfg = Config.model_validate({"variants": {"small": {"arch": "dynamic", **override}}})
    [row] = model_info(cfg)
    arch, resolved = cfg.variant("small")
    real = build_model(arch, resolved, np.zeros((5, 300), np.float32), 1024)
    assert row["parameters"] == count_parameters(real)
    assert (
        row["parameters"]
        < model_info(Config.model_validate({"variants": {"dynamic": {}}}))[0]["parameters"]
    )


def test_model_info_names_a_bad_override_key() -> None:
    cfg = Config.model_validate({"variants": {"x": {"arch": "dynamic", "model": {"dimm": 3}}}})
    with pytest.raises(ConfigError, match=r"variants\.x\.model\.dimm"):
        model_info(cfg)
