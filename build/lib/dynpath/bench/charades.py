"""The ``charades`` section: a Charades-STA-shaped workload (real counts and durations, or
the real annotations when present) and the projected ablation hours.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dynpath.bench.flops import count_flops
from dynpath.bench.inputs import PAPER_SHAPE, model_forward, random_batch, trainer_step
from dynpath.bench.peaks import MatmulPeak
from dynpath.bench.timing import interleaved, sync, trainer_determinism
from dynpath.config import Config, ModelConfig
from dynpath.model.registry import MODULES, build_model
from dynpath.variants import BY_NAME as VARIANTS_BY_NAME
from dynpath.variants import PAPER_VARIANT, Variant
from dynpath.variants import TABLE as VARIANT_TABLE

#: Charades-STA as the paper uses it (annotation files of the TALL release, charades.json):
#: queries and videos per split after the reader's checks, and the video durations' range/mean.
CHARADES_COUNTS = {"train": (12404, 5338), "test": (3720, 1334)}


CHARADES_DURATION = {"min": 5.5, "max": 194.3, "mean": 30.6}


def _timed_rate_of(variant: Variant) -> str:
    """The timed architecture whose training rate ``variant`` takes: the one that computes the
    same pathways in training. Hard routing (the paper's fusion) is the paper's model; every
    variant that runs two pathways, or two networks side by side, the soft dynamic model; a
    single chained module the exploitation module's."""
    if variant.fusion == VARIANTS_BY_NAME[PAPER_VARIANT].fusion:
        return PAPER_VARIANT
    if len(variant.modules) > 1 or any(MODULES[m].parallel for m in variant.modules):
        return "soft_dynamic"
    return "exploitation_only"


#: The ablation, every variant of :data:`dynpath.variants.TABLE`: variants not timed take the
#: rate of the timed architecture that computes the same pathways in training (an
#: approximation, stated in the JSON).
ABLATION_RATE_OF: dict[str, str] = {v.name: _timed_rate_of(v) for v in VARIANT_TABLE}

#: The architectures timed by default: the rates the ablation takes, in table order.
TIMED_ARCHS: tuple[str, ...] = tuple(dict.fromkeys(ABLATION_RATE_OF.values()))


def charades_moments(root: Path, seed: int) -> tuple[dict[str, list[Any]], str]:
    """Charades-STA's train/test moments: the real annotation files when ``root`` holds them,
    otherwise a generated list with the same counts (queries, videos per split) and a
    log-normal duration distribution with the real mean and range."""
    from dynpath.data.annotations import read_charades_sta
    from dynpath.data.types import Moment

    if (root / "charades_sta_train.txt").is_file() and (root / "charades_sta_test.txt").is_file():
        splits, _ = read_charades_sta(root)
        return {k: list(splits[k]) for k in ("train", "test")}, f"real annotations in {root}"
    rng = np.random.default_rng(seed)
    sigma = 0.45
    mu = math.log(CHARADES_DURATION["mean"]) - sigma**2 / 2
    words = ["person", "opens", "the", "door", "takes", "a", "book", "sits", "on", "chair"]
    out: dict[str, list[Any]] = {}
    for split, (n_queries, n_videos) in CHARADES_COUNTS.items():
        dur = np.clip(
            rng.lognormal(mu, sigma, n_videos), CHARADES_DURATION["min"], CHARADES_DURATION["max"]
        )
        moments = []
        for i in range(n_queries):
            v = i % n_videos
            length = float(min(dur[v], max(1.0, rng.gamma(4.0, 2.0))))  # Charades: ~8 s mean
            start = float(rng.uniform(0, dur[v] - length))
            query = " ".join(rng.choice(words, int(rng.integers(4, 13))))
            moments.append(
                Moment(
                    f"{split}{i}",
                    f"{split}v{v:05d}",
                    query,
                    start,
                    start + length,
                    float(dur[v]),
                    split,
                )
            )
        out[split] = moments
    return out, f"generated (no charades_sta_*.txt under {root})"


@dataclass
class _Workload:
    """The moments timed and the features they read, drawn once for every architecture."""

    splits: dict[str, list[Any]]
    source: str
    train: list[Any]  # (steps + 1) batches of training moments (the first one warms up)
    test: list[Any]  # the evaluation moments timed
    steps: int
    fps: float
    stride: int
    lengths: dict[str, int]  # clips per video (before resampling to data.max_len)
    vocab: Any
    embeddings: np.ndarray


def _workload(cfg: Config, scale: float) -> _Workload:
    """Charades-STA's moments (:func:`charades_moments`), the share of an epoch ``scale`` times,
    the clip count of each video and a vocabulary with random word vectors."""
    from dynpath.data.vocab import PAD, UNK, Vocabulary, tokenize

    splits, source = charades_moments(Path(cfg.data.root), cfg.seed)
    bs = PAPER_SHAPE["batch"]
    steps_per_epoch = math.ceil(len(splits["train"]) / bs)
    steps = max(2, round(scale * steps_per_epoch))
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(splits["train"]))[: (steps + 1) * bs]
    train = [splits["train"][i] for i in order]
    n_eval = max(cfg.eval.batch_size, round(scale * len(splits["test"])))
    test = splits["test"][:n_eval]
    fps = cfg.extract.frame_rate or 24.0
    stride = cfg.extract.stride
    durations = {m.vid: m.duration for m in train + test}
    lengths = {v: max(1, int(d * fps) // stride) for v, d in durations.items()}
    vocab_words = sorted({w for m in train + test for w in tokenize(m.query)})
    vocab = Vocabulary([PAD, UNK, *vocab_words])
    emb = np.random.default_rng(cfg.seed).standard_normal((len(vocab), 300)).astype(np.float32)
    return _Workload(splits, source, train, test, steps, fps, stride, lengths, vocab, emb)


def _write_store(h5: Path, work: _Workload, feature_dim: int, seed: int) -> None:
    """I3D-shaped random features for every video of ``work``, in a real HDF5 store."""
    from dynpath.data.features import write_features

    frng = np.random.default_rng(seed)
    write_features(
        h5,
        {
            v: frng.standard_normal((n, feature_dim), dtype=np.float32)
            for v, n in work.lengths.items()
        },
        {
            "backbone": "i3d-shaped",
            "dim": feature_dim,
            "fps": work.fps,
            "window": work.stride,
            "stride": work.stride,
            "pretrained": False,
            "weights": "none",
        },
    )


def _time_training(
    model: torch.nn.Module,
    loader: Any,
    wcfg: Config,
    device: torch.device,
    steps: int,
    first: Any,
    out_dir: Path,
) -> tuple[dict[str, Any], Any]:
    """``steps`` steps of the trainer's own step on the loader's batches after one warm-up step
    (whose batch's FLOPs are counted): the timings and the trainer. ``first`` is the batch the
    trainer is set up with."""
    load_s = step_s = 0.0
    samples = 0
    flops_per_sample = None
    step, trainer = trainer_step(model, wcfg, device, first, out_dir)
    del step
    with trainer_determinism(device):
        it = iter(loader)
        for i in range(steps + 1):
            t0 = time.perf_counter()
            batch = next(it).to(device)
            t1 = time.perf_counter()
            if i == 0:  # warm-up, and the FLOPs of one real batch
                flops, _ = count_flops(partial(trainer.train_step, batch))
                flops_per_sample = flops / len(batch)
                trainer.train_step(batch)
                sync(device)
                continue
            trainer.train_step(batch)
            sync(device)
            load_s += t1 - t0
            step_s += time.perf_counter() - t1
            samples += len(batch)
    timings = {
        "load_s": load_s,
        "step_s": step_s,
        "samples": samples,
        "flops_per_sample": flops_per_sample,
    }
    return timings, trainer


def _training_row(
    t: dict[str, Any], trainer: Any, steps: int, n_train: int, device: torch.device
) -> dict[str, Any]:
    """One architecture's row of the JSON from its training timings ``t``."""
    import resource

    samples, step_s, load_s = t["samples"], t["step_s"], t["load_s"]
    row: dict[str, Any] = {
        "steps_timed": steps,
        "samples_per_s": samples / step_s,
        "samples_per_s_with_loader": samples / (step_s + load_s),
        "loader_share": load_s / (load_s + step_s),
        "precision": str(trainer.amp_dtype or torch.float32).removeprefix("torch."),
        "gemm": trainer.gemm,
        "flops_per_sample_first_batch": t["flops_per_sample"],
        "epoch_s": n_train / (samples / (step_s + load_s)),
    }
    if device.type == "cuda":
        row["peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        row["peak_rss_mb_process"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return row


def _peak_fraction(
    row: dict[str, Any], peak: MatmulPeak, amp: torch.dtype | None, device: torch.device
) -> None:
    """Add the matmul peak (at the step's precision) and the step's estimated fraction of it."""
    p = peak if amp is None else MatmulPeak(device, peak.n, amp)
    pt = interleaved({"p": p}, 3, 0, device)["p"]
    row["matmul_peak"] = p.summary(pt)
    row["peak_fraction_estimate"] = min(
        1.0,
        row["flops_per_sample_first_batch"]
        * row["samples_per_s"]
        / (row["matmul_peak"]["gflops"] * 1e9),
    )


def _eval_rate(
    model: torch.nn.Module, work: _Workload, wcfg: Config, batch_size: int, device: torch.device
) -> float:
    """Evaluation queries/s of ``model`` (forward only, at the eval batch) on the test moments."""
    from dynpath.data.dataset import make_loader

    ev = make_loader(work.test, wcfg, work.vocab, shuffle=False, seed=0, batch_size=batch_size)
    model.eval()
    n_q, t_eval = 0, 0.0
    with torch.inference_mode():
        for eb in ev:
            eb = eb.to(device)
            t0 = time.perf_counter()
            model_forward(model, eb)
            sync(device)
            t_eval += time.perf_counter() - t0
            n_q += len(eb)
    return n_q / t_eval


def _ablation(rows: dict[str, Any], epochs: int) -> dict[str, Any]:
    """The projected wall time of the whole ablation (``epochs`` epochs, one seed each) from
    the rates of the timed architectures (:data:`ABLATION_RATE_OF`)."""
    per_variant = {v: epochs * rows[a]["epoch_s"] for v, a in ABLATION_RATE_OF.items() if a in rows}
    return {
        "epochs": epochs,
        "rate_of": {v: a for v, a in ABLATION_RATE_OF.items() if a in rows},
        "per_variant_hours": {v: s / 3600 for v, s in per_variant.items()},
        "ten_variants_hours": sum(per_variant.values()) / 3600
        if len(per_variant) == len(ABLATION_RATE_OF)
        else None,
    }


def _result(
    cfg: Config, work: _Workload, model_cfg: ModelConfig, scale: float, rows: dict[str, Any]
) -> dict[str, Any]:
    """The section's JSON: the workload's shape, the rows per architecture and the ablation."""
    splits, lengths = work.splits, work.lengths
    return {
        "source": work.source,
        "train_queries": len(splits["train"]),
        "test_queries": len(splits["test"]),
        "videos": len({m.vid for m in splits["train"]}) + len({m.vid for m in splits["test"]}),
        "clips_per_video": {
            "fps": work.fps,
            "stride": work.stride,
            "mean_before_cap": float(np.mean(list(lengths.values()))),
            "max_len": cfg.data.max_len,
            "capped_share": float(np.mean([n > cfg.data.max_len for n in lengths.values()])),
        },
        "model": model_cfg.model_dump(include={"dim", "heads", "lstm_scales", "text_lstm_layers"}),
        "batch": PAPER_SHAPE["batch"],
        "scale": scale,
        "archs": rows,
        "ablation": _ablation(rows, cfg.train.epochs),
    }


def charades_workload(
    cfg: Config,
    device: torch.device,
    scale: float,
    model_cfg: ModelConfig,
    feature_dim: int = 1024,
    archs: Sequence[str] = TIMED_ARCHS,
    peak: MatmulPeak | None = None,
) -> dict[str, Any]:
    """Training and evaluation at Charades-STA's real shape, on ``device``.

    The moments are Charades-STA's (:func:`charades_moments`); each video gets I3D-shaped
    features (``feature_dim`` wide, one clip per ``extract.stride`` frames at
    ``extract.frame_rate``, 24 fps when unset, as the charades_sta profile extracts) written to
    a real HDF5 store and read by the training loader (``make_loader``: resampling to
    ``data.max_len``, padding per batch), so batches have the real length mix. ``scale`` is the
    fraction of one epoch timed per architecture (at least 2 steps after 1 warm-up step): 1.0
    times a whole epoch, 0.01 runs in seconds at small widths (the tests).

    Reported per architecture: training samples/s (the trainer's step, its precision and
    kernels), loader share, peak memory (device memory on CUDA; the process's max RSS on CPU,
    a high-water mark over the whole process), FLOPs per sample (counted on the first batch) and
    the fraction of the matmul peak measured in this run; evaluation queries/s (forward, eval
    batch) for the first architecture; and the projected wall time of the ten-variant ablation
    (``train.epochs`` epochs, one seed each).
    """
    from dynpath.data.dataset import make_loader

    work = _workload(cfg, scale)
    bs = PAPER_SHAPE["batch"]
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        h5 = Path(tmp) / "charades_i3d.h5"
        _write_store(h5, work, feature_dim, cfg.seed)
        wcfg = cfg.model_copy(
            update={
                "model": model_cfg,
                "data": cfg.data.model_copy(update={"features": str(h5)}),
            }
        )
        for arch in archs:
            torch.manual_seed(cfg.seed)
            model = build_model(arch, wcfg, work.embeddings, feature_dim)
            loader = make_loader(
                work.train, wcfg, work.vocab, shuffle=False, seed=cfg.seed, batch_size=bs
            )
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            with tempfile.TemporaryDirectory() as out_dir:
                first = random_batch(2, 4, feature_dim, 3, len(work.vocab), cfg.seed)
                timings, trainer = _time_training(
                    model, loader, wcfg, device, work.steps, first, Path(out_dir)
                )
            row = _training_row(timings, trainer, work.steps, len(work.splits["train"]), device)
            if peak is not None and timings["flops_per_sample"]:
                _peak_fraction(row, peak, trainer.amp_dtype, device)
            if arch == archs[0]:
                row["eval_queries_per_s"] = _eval_rate(
                    model, work, wcfg, cfg.eval.batch_size, device
                )
                row["eval_batch"] = cfg.eval.batch_size
            rows[arch] = row
    return _result(cfg, work, model_cfg, scale, rows)
