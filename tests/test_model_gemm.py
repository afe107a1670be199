"""The oneDNN GEMM path (dynpath.model.gemm) computes the same fp32 function as the MKL path.

Same weights, same inputs, both backends: outputs and every gradient agree within float32
summation-order tolerance, for the bare linear, the layers that use it (FFN, MSAB, the fused
temporal convolution) and a whole dynamic model's training loss. The backend choice itself is
deterministic (a capability check) and rejects unknown or unavailable names by name.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from dynpath.config import Config, ModelConfig
from dynpath.errors import DynpathError
from dynpath.model import gemm
from dynpath.model.layers import FFN, MSAB, Masks, MultiScaleTemporalConv

needs_onednn = pytest.mark.skipif(not gemm.onednn_available(), reason="no oneDNN in this torch")


def _both(fn: Any) -> tuple[Any, Any]:
    with gemm.backend("mkl"):
        ref = fn()
    with gemm.backend("onednn"):
        fast = fn()
    return ref, fast


def _grads(module: nn.Module, x: torch.Tensor, run: Any) -> list[torch.Tensor]:
    module.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_()
    out = run(x)
    g = torch.Generator().manual_seed(1)
    (out * torch.randn(out.shape, generator=g)).sum().backward()
    grads = [x.grad] + [p.grad for p in module.parameters() if p.grad is not None]
    return [out.detach()] + [t.detach().clone() for t in grads if t is not None]


def _assert_all_close(ref: list[torch.Tensor], fast: list[torch.Tensor]) -> None:
    assert len(ref) == len(fast) > 1
    for a, b in zip(ref, fast, strict=True):
        torch.testing.assert_close(b, a, atol=2e-4, rtol=2e-4)


@needs_onednn
@pytest.mark.parametrize("bias", [True, False])
def test_linear_values_and_gradients_equal(bias: bool) -> None:
    torch.manual_seed(0)
    layer = gemm.Linear(48, 40, bias=bias)
    x = torch.randn(3, 17, 48)
    ref, fast = _both(lambda: _grads(layer, x, layer))
    _assert_all_close(ref, fast)
    # and the onednn path really ran a different kernel than F.linear would be asked for
    with gemm.backend("onednn"):
        assert gemm._use_onednn(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not gemm._use_onednn(x)  # autocast keeps torch's own bf16 path


@needs_onednn
def test_linear_gradcheck_like_fp32_against_float64_reference() -> None:
    """The oneDNN result is as close to the float64 truth as MKL's (no precision loss)."""
    torch.manual_seed(0)
    x, w, b = torch.randn(256, 512), torch.randn(384, 512), torch.randn(384)
    exact = (x.double() @ w.double().t() + b.double()).float()
    with gemm.backend("onednn"):
        err_onednn = (gemm.linear(x, w, b) - exact).abs().max().item()
    with gemm.backend("mkl"):
        err_mkl = (gemm.linear(x, w, b) - exact).abs().max().item()
    assert err_onednn < 1e-3 and err_onednn <= 4 * max(err_mkl, 1e-5)


@needs_onednn
def test_layers_equal_on_both_backends() -> None:
    torch.manual_seed(0)
    lengths, t, d = [9, 6], 9, 32
    vm = torch.arange(t)[None, :] < torch.tensor(lengths)[:, None]
    masks = Masks.build(vm, torch.ones(2, 3, dtype=torch.bool), torch.float32)
    x = torch.randn(2, t, d)
    ffn = FFN(d, d, dropout=0.0)
    conv = MultiScaleTemporalConv(d, (3, 5, 9), dropout=0.0)
    msab = MSAB(d, 4, dropout=0.0)
    assert conv.fused_path(x)
    for module, run in (
        (ffn, ffn),
        (conv, lambda v: conv(v, masks)),
        (msab, lambda v: msab(v, masks)),
    ):
        ref, fast = _both(lambda m=module, r=run: _grads(m, x, r))
        _assert_all_close(ref, fast)


@needs_onednn
def test_dynamic_model_loss_and_gradients_equal() -> None:
    from dynpath.bench import random_batch
    from dynpath.model.loss import localization_loss
    from dynpath.model.registry import build_model

    cfg = Config(model=ModelConfig(dim=32, heads=4, text_lstm_layers=1, dropout=0.0))
    emb = np.random.default_rng(0).standard_normal((50, 300)).astype(np.float32)
    torch.manual_seed(0)
    model = build_model("dynamic", cfg, emb, 24)
    batch = random_batch(3, 12, 24, 5, 50, seed=0)

    def step() -> list[torch.Tensor]:
        model.zero_grad(set_to_none=True)
        torch.manual_seed(3)  # the same Gumbel draws on both backends
        out = model(batch.video, batch.video_mask, batch.words, batch.word_mask)
        loss, _ = localization_loss(out, batch, 1.0, 10.0)
        loss.backward()
        return [loss.detach()] + [p.grad.clone() for p in model.parameters() if p.grad is not None]

    ref, fast = _both(step)
    _assert_all_close(ref, fast)


def test_backend_choice_is_deterministic_and_validated() -> None:
    assert gemm.resolve("auto") == gemm.resolve("auto") == gemm.auto_backend()
    assert gemm.resolve("mkl") == "mkl"
    with pytest.raises(DynpathError, match=r"train\.gemm"):
        gemm.resolve("blas")
    info = gemm.cpu_info()
    assert {"vendor", "model", "flags"} <= set(info)
    if info["vendor"] == "GenuineIntel" or "avx512f" not in info["flags"]:
        assert gemm.auto_backend() == "mkl"
    with gemm.backend("mkl"):
        assert gemm.get_backend() == "mkl"


def test_onednn_unavailable_is_an_error_naming_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gemm, "onednn_available", lambda: False)
    with pytest.raises(DynpathError, match=r"train\.gemm.*onednn"):
        gemm.resolve("onednn")
    assert gemm.auto_backend() == "mkl"


@pytest.mark.parametrize(("autocast", "gemm_name"), [("fp32", "mkl"), ("bf16", "auto")])
def test_train_params_reach_the_trainer(tmp_path: Any, autocast: str, gemm_name: str) -> None:
    """``train.autocast`` / ``train.gemm`` from the params select the trainer's CPU precision
    and GEMM library; a bf16 step keeps fp32 weights and a finite loss."""
    from dynpath.bench import bench_model, random_batch, trainer_step

    cfg = Config(model=ModelConfig(dim=16, heads=2, text_lstm_layers=1))
    cfg = cfg.model_copy(
        update={"train": cfg.train.model_copy(update={"autocast": autocast, "gemm": gemm_name})}
    )
    model = bench_model("dynamic", cfg.model, 8, 0)
    batch = random_batch(2, 6, 8, 4, 1000, seed=0)
    step, trainer = trainer_step(model, cfg, torch.device("cpu"), batch, tmp_path)
    assert trainer.amp_dtype == (torch.bfloat16 if autocast == "bf16" else None)
    assert trainer.gemm == gemm.resolve(gemm_name) == gemm.get_backend()
    values, n = step()
    assert n == 2 and np.isfinite(values["loss"])
    assert all(p.dtype == torch.float32 for p in model.parameters())
    gemm.set_backend("mkl")  # leave the process default for the other tests


@needs_onednn
def test_onednn_path_is_bitwise_reproducible() -> None:
    """Exact resume and the determinism tests rely on run-to-run identical kernels: two runs of
    the same forward + backward on the oneDNN path give identical bits."""
    from dynpath.bench import random_batch
    from dynpath.model.loss import localization_loss
    from dynpath.model.registry import build_model

    cfg = Config(model=ModelConfig(dim=32, heads=4, text_lstm_layers=1, dropout=0.0))
    emb = np.random.default_rng(0).standard_normal((50, 300)).astype(np.float32)
    batch = random_batch(4, 20, 24, 5, 50, seed=0)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = build_model("dynamic", cfg, emb, 24)
        with gemm.backend("onednn"):
            torch.manual_seed(1)
            out = model(batch.video, batch.video_mask, batch.words, batch.word_mask)
            loss, _ = localization_loss(out, batch, 1.0, 10.0)
            loss.backward()
        runs.append([loss.detach()] + [p.grad for p in model.parameters() if p.grad is not None])
    assert all(torch.equal(a, b) for a, b in zip(*runs, strict=True))
