"""Every optimised path of the default profile's training step (``dynpath.model.fastpath``)
computes what the reference path it replaced computes: values AND gradients, on random inputs
with padding, for every variant kind (both route groups of the selector, soft selection, one
module). A test fails if a fast path drifts from its reference by more than float rounding
(docs/performance.md, "The default profile", says which paths are bit-identical).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import Tensor

from dynpath.config import Config, ModelConfig
from dynpath.data.batch import Batch
from dynpath.model import build_model, fastpath, localization_loss
from dynpath.model.layers import _fold_taps

FEAT, VOCAB, D = 20, 40, 16


def _batch(seed: int, b: int = 6, t: int = 13, words: int = 7) -> Batch:
    """Random features, padded videos (one full length) and queries, valid targets."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(4, t + 1, (b,), generator=g)
    lengths[0] = t
    vm = torch.arange(t)[None, :] < lengths[:, None]
    n_words = torch.randint(2, words + 1, (b,), generator=g)
    wm = torch.arange(words)[None, :] < n_words[:, None]
    ids = torch.randint(1, VOCAB, (b, words), generator=g).masked_fill(~wm, 0)
    start = (torch.rand(b, generator=g) * (lengths - 1)).long()
    end = torch.minimum(start + 2, lengths - 1)
    pos = torch.arange(t)
    inner = ((pos >= start[:, None]) & (pos <= end[:, None]) & vm).float()
    video = torch.randn(b, t, FEAT, generator=g).masked_fill(~vm[..., None], 7.0)
    return Batch(
        video=video,
        video_mask=vm,
        words=ids,
        word_mask=wm,
        start=start,
        end=end,
        inner=inner,
        durations=torch.full((b,), 10.0),
        gt_seconds=torch.zeros(b, 2),
        num_positions=lengths,
        qids=[str(i) for i in range(b)],
        vids=[str(i) for i in range(b)],
        queries=["" for _ in range(b)],
    )


def _model(arch: str, **model: object) -> torch.nn.Module:
    torch.manual_seed(0)
    emb = np.random.default_rng(0).standard_normal((VOCAB, 8)).astype(np.float32)
    emb[0] = 0.0
    cfg = Config(model=ModelConfig(dim=D, heads=4, lstm_scales=2, **model))  # type: ignore[arg-type]
    m = build_model(arch, cfg, emb, FEAT)
    m.pathway_heads = True
    return m


def _loss_and_grads(
    model: torch.nn.Module, batch: Batch, noise: Tensor | None
) -> tuple[list[Tensor], list[Tensor]]:
    """Outputs (logits, per-pathway logits, loss) and every parameter's gradient."""
    model.zero_grad(set_to_none=True)
    out = model(batch.video, batch.video_mask, batch.words, batch.word_mask, gumbel_noise=noise)
    loss, _ = localization_loss(out, batch, 1.0, 10.0, 1.0, 0.5, 0.5)
    loss.backward()
    values = [out.start_logits, out.end_logits, out.inner_logits, loss.detach()]
    for logits in out.pathway_logits or []:
        values += list(logits)
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]
    return [v.detach() for v in values], grads


def _compare(run: Callable[[], tuple[list[Tensor], list[Tensor]]]) -> None:
    fast_v, fast_g = run()
    with fastpath.reference():
        ref_v, ref_g = run()
    assert len(fast_v) == len(ref_v) and len(fast_g) == len(ref_g)
    for a, b in zip(fast_v, ref_v, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    for a, b in zip(fast_g, ref_g, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


# route noise that sends samples 0, 2, 4 to exploitation and 1, 3, 5 to exploration
_SPLIT = torch.tensor([[30.0, 0.0], [0.0, 30.0]]).repeat(3, 1)


@pytest.mark.parametrize(
    ("arch", "model_kw", "noise"),
    [
        ("dynamic", {}, _SPLIT),  # both route groups in one batch
        ("dynamic", {}, None),
        ("dynamic", {"selector_training": "selected"}, _SPLIT),
        ("soft_dynamic", {}, None),
        ("exploitation_only", {"conv_blocks": 2, "conv_block_form": "prenorm"}, None),
    ],
)
def test_model_fast_paths_equal_reference_values_and_grads(
    arch: str, model_kw: dict[str, object], noise: Tensor | None
) -> None:
    model = _model(arch, **model_kw).train()
    batch = _batch(1)

    def run() -> tuple[list[Tensor], list[Tensor]]:
        torch.manual_seed(5)  # the same Gumbel noise draw in both runs when noise is None
        return _loss_and_grads(model, batch, noise)

    _compare(run)


def test_fold_taps_bit_identical_to_unfold_backward() -> None:
    torch.manual_seed(0)
    for shape in [(3, 13, 9, 16), (2, 4, 9, 3), (1, 1, 3, 2)]:  # includes T < kmax
        gu = torch.randn(*shape)
        fast = _fold_taps(gu)
        with fastpath.reference():
            ref = _fold_taps(gu)
        assert torch.equal(fast, ref)
