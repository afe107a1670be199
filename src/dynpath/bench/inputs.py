"""The benchmark's shapes (the paper's and --quick's) and its inputs: random batches, models (and
the "balanced" dynamic model), and the trainer's real training step, shared by every section.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dynpath.config import Config, ModelConfig
from dynpath.data.batch import Batch
from dynpath.model.layers import Masks
from dynpath.model.loss import localization_loss
from dynpath.model.network import DynamicPathwayModel
from dynpath.model.output import ModelOutput
from dynpath.model.registry import build_model
from dynpath.model.selection import DynamicSelection

PAPER_SHAPE = {"batch": 16, "clips": 128, "feature_dim": 1024, "words": 20}


VOCAB = 1000


# --quick: the same code paths on tiny shapes (a smoke test of the benchmark, not its figures).
QUICK_SHAPE = {"batch": 4, "clips": 16, "feature_dim": 64, "words": 6}


QUICK_MODEL = {"dim": 32, "heads": 4, "text_lstm_layers": 1}


def random_batch(
    batch: int,
    clips: int,
    feature_dim: int,
    words: int,
    vocab: int,
    seed: int,
    min_clips: int | None = None,
) -> Batch:
    """A random batch with valid labels (the paper's shape by default).

    Videos are full length unless ``min_clips`` is given (the timing must not depend on how a
    random batch happens to pad); with it, video lengths are uniform in [min_clips, clips]
    (the first one full), as a profile's real batches pad. Query lengths vary between
    ``words // 2`` and ``words`` as real queries do, so the text encoder's packed path is
    exercised as in training.
    """
    g = torch.Generator().manual_seed(seed)
    start = torch.randint(0, clips // 2, (batch,), generator=g)
    end = start + torch.randint(1, clips // 2, (batch,), generator=g)
    lengths = torch.full((batch,), clips)
    if min_clips is not None and min_clips < clips:
        lengths = torch.randint(max(min_clips, 2), clips + 1, (batch,), generator=g)
        lengths[0] = clips
        end = torch.minimum(end, lengths - 1)
        start = torch.minimum(start, end)
    pos = torch.arange(clips)
    video_mask = pos[None, :] < lengths[:, None]
    inner = ((pos >= start[:, None]) & (pos <= end[:, None])).float()
    n_words = torch.randint(max(1, words // 2), words + 1, (batch,), generator=g)
    n_words[0] = words
    word_mask = torch.arange(words)[None, :] < n_words[:, None]
    ids = torch.randint(2, vocab, (batch, words), generator=g).masked_fill(~word_mask, 0)
    dur = torch.full((batch,), 30.0)
    return Batch(
        video=torch.randn(batch, clips, feature_dim, generator=g),
        video_mask=video_mask,
        words=ids,
        word_mask=word_mask,
        start=start,
        end=end,
        inner=inner,
        durations=dur,
        gt_seconds=torch.stack([start * 30.0 / clips, (end + 1) * 30.0 / clips], 1),
        num_positions=lengths,
        qids=[str(i) for i in range(batch)],
        vids=[str(i) for i in range(batch)],
        queries=["" for _ in range(batch)],
    )


def bench_model(
    arch: str, model_cfg: ModelConfig, feature_dim: int, seed: int
) -> DynamicPathwayModel:
    """``arch`` with random word vectors (``VOCAB`` words) and weights seeded by ``seed``: two
    calls with the same arguments give the same weights, so rows built apart compare alike."""
    torch.manual_seed(seed)
    emb = np.random.default_rng(seed).standard_normal((VOCAB, 300)).astype(np.float32)
    emb[0] = 0.0
    return build_model(arch, Config(model=model_cfg), emb, feature_dim)


def balance_routes(model: DynamicPathwayModel, batch: Batch) -> DynamicPathwayModel:
    """``model`` (a ``DynamicSelection`` variant, eval mode) with its selector's FC_3 bias
    shifted so that half of ``batch`` takes each route; returns the same model.

    Why: an untrained selector may send every sample one way, and the latency would then be that
    of one pathway; half and half is the realistic mix of a trained model. The one place the
    benchmark builds its ``[balanced]`` rows. ``batch`` is on the model's device.
    """
    if not isinstance(model.fusion, DynamicSelection):
        raise TypeError(f"{model.arch!r} has no hard route selection to balance")
    with torch.inference_mode():
        masks = Masks.build(batch.video_mask, batch.word_mask, batch.video.dtype)
        _, fs = model.text(batch.words, masks)
        assert fs is not None  # a selecting variant pools the sentence feature F_s
        model.fusion.balance(fs)
    return model


def model_forward(model: Any, batch: Batch) -> ModelOutput:
    out: ModelOutput = model(batch.video, batch.video_mask, batch.words, batch.word_mask)
    return out


def trainer_step(
    model: nn.Module,
    cfg: Config,
    device: torch.device,
    batch: Batch,
    out_dir: Path,
    full_loss: bool = False,
) -> tuple[Callable[[], Any], Any]:
    """The trainer's own step (``Trainer.train_step``) on ``batch``, and the trainer.

    ``full_loss``: the loss exactly as ``dynpath train`` builds it from ``cfg.train`` (the
    per-pathway, route and balance terms too, and the per-pathway heads they need); otherwise
    the paper's two terms only (the ``paper`` section's step)."""
    from dynpath.engine.from_config import train_options
    from dynpath.engine.trainer import Trainer

    options = train_options(cfg, epochs=1, batch_size=len(batch), compile=False, progress=False)
    t = cfg.train
    if full_loss and isinstance(model, DynamicPathwayModel):
        model.pathway_heads = t.lambda_pathway > 0.0 or t.lambda_route > 0.0

    def loss_fn(out: ModelOutput, batch: Batch) -> tuple[torch.Tensor, Mapping[str, Any]]:
        if not full_loss:
            return localization_loss(out, batch, t.lambda_bound, t.lambda_inner)
        return localization_loss(
            out,
            batch,
            t.lambda_bound,
            t.lambda_inner,
            t.lambda_pathway,
            t.lambda_route,
            t.lambda_balance,
            t.inner_average,
        )

    trainer = Trainer(
        model,
        loss_fn,
        num_train=10**6,  # a long schedule: the LR stays ~constant over the timed steps
        loader_fn=lambda indices, size: [],
        validate=lambda m: {},
        options=options,
        out_dir=out_dir,
        meta={},
        device=device,
    )
    on_device = batch.to(device)
    return (lambda: trainer.train_step(on_device)), trainer
