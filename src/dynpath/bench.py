"""`dynpath bench`: how fast dynpath does its job, against the hardware and the alternatives.

A benchmark, not a test: every figure is measured in this one process (medians over repeats) and
written to one JSON plus a short table, with pass/fail against the targets of the performance
issue. FLOPs are counted honestly: ``FlopCounterMode`` sees nothing inside oneDNN's fused LSTM on
CPU, so the counting pass runs with oneDNN switched off (the LSTM then decomposes into counted
matmuls); the timed passes run with the default fast kernels. The LSTM count is cross-checked
against the analytic ``3 x 2 * B*T*4H*(I+H)`` per direction and layer (forward + 2x backward).
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from dynpath.config import Config, ModelConfig
from dynpath.data.batch import Batch
from dynpath.io import write_json
from dynpath.model.layers import Masks, MultiScaleLSTM
from dynpath.model.loss import localization_loss
from dynpath.model.registry import build_model, count_parameters

log = logging.getLogger(__name__)

#: Targets of the performance issue (ratios are dynamic / other).
TARGETS = {
    "dynamic_vs_soft_latency_max": 0.55,
    "dynamic_vs_exploitation_latency_max": 1.15,
    "loader_share_max": 0.05,
    "train_peak_fraction_min": 0.65,
    "dvc_noop_seconds_max": 5.0,
}

PAPER_SHAPE = {"batch": 16, "clips": 128, "feature_dim": 1024, "words": 20}


def _time(fn: Callable[[], Any], repeats: int, warmup: int, device: torch.device) -> list[float]:
    """Wall seconds of ``fn`` per call (CUDA synchronised)."""
    out = []
    for i in range(warmup + repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            out.append(time.perf_counter() - t0)
    return out


def matmul_peak(device: torch.device, n: int, repeats: int) -> dict[str, float]:
    """Dense float32 matmul throughput: the roofline this machine's kernels can reach."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    times = _time(lambda: a @ b, repeats, 2, device)
    med = statistics.median(times)
    return {"n": n, "median_s": med, "gflops": 2 * n**3 / med / 1e9}


def random_batch(
    batch: int, clips: int, feature_dim: int, words: int, vocab: int, seed: int
) -> Batch:
    """A full-length random batch with valid labels (the paper's shape by default)."""
    g = torch.Generator().manual_seed(seed)
    start = torch.randint(0, clips // 2, (batch,), generator=g)
    end = start + torch.randint(1, clips // 2, (batch,), generator=g)
    pos = torch.arange(clips)
    inner = ((pos >= start[:, None]) & (pos <= end[:, None])).float()
    dur = torch.full((batch,), 30.0)
    return Batch(
        video=torch.randn(batch, clips, feature_dim, generator=g),
        video_mask=torch.ones(batch, clips, dtype=torch.bool),
        words=torch.randint(2, vocab, (batch, words), generator=g),
        word_mask=torch.ones(batch, words, dtype=torch.bool),
        start=start,
        end=end,
        inner=inner,
        durations=dur,
        gt_seconds=torch.stack([start * 30.0 / clips, (end + 1) * 30.0 / clips], 1),
        num_positions=torch.full((batch,), clips),
        qids=[str(i) for i in range(batch)],
        vids=[str(i) for i in range(batch)],
        queries=["" for _ in range(batch)],
    )


def _model(arch: str, model_cfg: ModelConfig, feature_dim: int, vocab: int, seed: int) -> Any:
    torch.manual_seed(seed)
    emb = np.random.default_rng(seed).standard_normal((vocab, 300)).astype(np.float32)
    emb[0] = 0.0
    return build_model(arch, Config(model=model_cfg), emb, feature_dim)


def _step_fn(model: Any, batch: Batch, cfg: Config) -> Callable[[], None]:
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.train.lr)

    def step() -> None:
        out = model(batch.video, batch.video_mask, batch.words, batch.word_mask)
        loss, _ = localization_loss(out, batch, cfg.train.lambda_bound, cfg.train.lambda_inner)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.clip_norm)
        opt.step()

    return step


def count_step_flops(step: Callable[[], None]) -> int:
    """FLOPs of one training step, counted with oneDNN off so LSTM matmuls are visible."""
    with torch.backends.mkldnn.flags(enabled=False), FlopCounterMode(display=False) as fc:
        step()
    return int(fc.get_total_flops())


def lstm_flops_analytic(model: torch.nn.Module, batch: int, clips: int, words: int) -> int:
    """Forward+backward FLOPs of every nn.LSTM, from its sizes: 3 x 2*N*4H*(I+H) per dir/layer.

    The multi-scale LSTM processes ``clips`` positions in total at every scale (the subsets
    partition the sequence), so each LSTM sees ``batch*clips`` steps; text LSTMs see
    ``batch*words``.
    """
    total = 0
    for name, mod in model.named_modules():
        if not isinstance(mod, torch.nn.LSTM):
            continue
        steps = batch * (words if "text" in name else clips)
        dirs = 2 if mod.bidirectional else 1
        for layer in range(mod.num_layers):
            inp = mod.input_size if layer == 0 else mod.hidden_size * dirs
            total += dirs * 3 * 2 * steps * 4 * mod.hidden_size * (inp + mod.hidden_size)
    return total


def top_operators(step: Callable[[], None], k: int = 10) -> list[dict[str, Any]]:
    """Where a training step's time goes (torch.profiler, self CPU time)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in rows) or 1.0
    return [
        {
            "op": e.key,
            "self_ms": e.self_cpu_time_total / 1000.0,
            "share": e.self_cpu_time_total / total,
            "calls": e.count,
        }
        for e in rows[:k]
    ]


def train_throughput(
    arch: str,
    model_cfg: ModelConfig,
    shape: dict[str, int],
    cfg: Config,
    device: torch.device,
    repeats: int,
    peak_gflops: float,
    profile_ops: bool,
) -> dict[str, Any]:
    vocab = 1000
    model = _model(arch, model_cfg, shape["feature_dim"], vocab, cfg.seed).to(device).train()
    batch = random_batch(
        shape["batch"], shape["clips"], shape["feature_dim"], shape["words"], vocab, cfg.seed
    ).to(device)
    step = _step_fn(model, batch, cfg)
    flops = count_step_flops(step)
    lstm_analytic = lstm_flops_analytic(model, shape["batch"], shape["clips"], shape["words"])
    times = _time(step, repeats, 2, device)
    med = statistics.median(times)
    out: dict[str, Any] = {
        "arch": arch,
        "shape": shape,
        "d": model_cfg.dim,
        "parameters": count_parameters(model),
        "step_s": med,
        "samples_per_s": shape["batch"] / med,
        "flops_per_step": flops,
        "lstm_flops_analytic": lstm_analytic,
        "achieved_gflops": flops / med / 1e9,
        "peak_fraction": flops / med / 1e9 / peak_gflops,
    }
    if profile_ops:
        out["top_operators"] = top_operators(step)
    return out


def _forward(model: Any, batch: Batch) -> Any:
    return model(batch.video, batch.video_mask, batch.words, batch.word_mask)


def inference_latency(
    archs: tuple[str, ...],
    model_cfg: ModelConfig,
    cfg: Config,
    device: torch.device,
    repeats: int,
    throughput_batch: int,
) -> dict[str, Any]:
    """p50/p95 of one query (batch 1) and batch throughput, per variant, in eval mode."""
    shape = PAPER_SHAPE
    vocab = 1000
    single = random_batch(1, shape["clips"], shape["feature_dim"], shape["words"], vocab, 1)
    many = random_batch(
        throughput_batch, shape["clips"], shape["feature_dim"], shape["words"], vocab, 2
    )
    single, many = single.to(device), many.to(device)
    rows: dict[str, Any] = {}
    for arch in archs:
        model = _model(arch, model_cfg, shape["feature_dim"], vocab, cfg.seed).to(device).eval()
        with torch.inference_mode():
            t1 = _time(partial(_forward, model, single), repeats * 4, 3, device)
            tb = _time(partial(_forward, model, many), repeats, 1, device)
            routes = model(many.video, many.video_mask, many.words, many.word_mask).route
        rows[arch] = {
            "p50_ms": float(np.percentile(t1, 50) * 1000),
            "p95_ms": float(np.percentile(t1, 95) * 1000),
            "batch": throughput_batch,
            "batch_s": statistics.median(tb),
            "queries_per_s": throughput_batch / statistics.median(tb),
            "exploitation_share": float((routes == 0).float().mean())
            if routes.ge(0).all()
            else None,
        }
    return rows


def mslstm_ratio(device: torch.device, repeats: int) -> dict[str, Any]:
    """The batched multi-scale LSTM (one call per scale) against a loop over subsets."""
    b, t, d, scales = PAPER_SHAPE["batch"], PAPER_SHAPE["clips"], 512, 3
    torch.manual_seed(0)
    block = MultiScaleLSTM(d, scales, dropout=0.0).to(device).eval()
    x = torch.randn(b, t, d, device=device)
    masks = Masks.build(
        torch.ones(b, t, dtype=torch.bool, device=device),
        torch.ones(b, 1, dtype=torch.bool, device=device),
        x.dtype,
    )

    def looped() -> list[torch.Tensor]:
        outs = []
        for s, lstm in enumerate(block.lstms, start=1):
            for i in range(s):
                outs.append(lstm(x[:, i::s])[0])
        return outs

    with torch.inference_mode():
        batched_s = statistics.median(_time(lambda: block(x, masks), repeats, 1, device))
        loop_s = statistics.median(_time(looped, repeats, 1, device))
    return {"batched_ms": batched_s * 1000, "loop_ms": loop_s * 1000, "speedup": loop_s / batched_s}


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    old = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def data_loading(cfg: Config, device: torch.device, repeats: int) -> dict[str, Any]:
    """HDF5 read throughput and the loader's share of a default-profile training step."""
    from dynpath.data.dataset import make_loader
    from dynpath.data.features import FeatureStore, write_features
    from dynpath.data.types import Moment
    from dynpath.data.vocab import PAD, UNK, Vocabulary

    rng = np.random.default_rng(cfg.seed)
    n_videos, t_raw, dim = 200, 3 * cfg.data.max_len // 2, 1024
    with tempfile.TemporaryDirectory() as tmp:
        h5 = Path(tmp) / "features.h5"
        feats = {
            f"v{i:04d}": rng.standard_normal((t_raw, dim)).astype(np.float32)
            for i in range(n_videos)
        }
        write_features(
            h5,
            feats,
            {
                "backbone": "bench",
                "dim": dim,
                "fps": 8.0,
                "window": 16,
                "stride": 16,
                "pretrained": False,
                "weights": "none",
            },
        )
        nbytes = sum(f.nbytes for f in feats.values())
        t0 = time.perf_counter()
        with FeatureStore(h5) as store:
            vids = store.keys()
            for vid in vids:
                store.read(vid)
        read_s = time.perf_counter() - t0
        words = [PAD, UNK, "the", "red", "circle", "moves", "left", "then", "grows"]
        vocab = Vocabulary(words, embeddings=np.zeros((len(words), 300), np.float32))
        moments = [
            Moment(
                f"q{i}",
                f"v{i % n_videos:04d}",
                "the red circle moves left then grows",
                2.0,
                9.0,
                30.0,
                "train",
            )
            for i in range(4 * n_videos)
        ]
        bench_cfg = cfg.model_copy(
            update={"data": cfg.data.model_copy(update={"features": str(h5)})}
        )
        loader = make_loader(
            moments, bench_cfg, vocab, shuffle=True, seed=cfg.seed, batch_size=cfg.train.batch_size
        )
        for _ in loader:  # warm the feature cache, like every epoch after the first
            pass
        t0 = time.perf_counter()
        n_batches = 0
        for _ in loader:
            n_batches += 1
        per_batch = (time.perf_counter() - t0) / max(n_batches, 1)
    model_cfg = cfg.model
    shape = {
        "batch": cfg.train.batch_size,
        "clips": cfg.data.max_len,
        "feature_dim": dim,
        "words": 10,
    }
    vocab_n = 1000
    model = _model("dynamic", model_cfg, dim, vocab_n, cfg.seed).to(device).train()
    batch = random_batch(shape["batch"], shape["clips"], dim, shape["words"], vocab_n, 0)
    step_s = statistics.median(_time(_step_fn(model, batch.to(device), cfg), repeats, 1, device))
    return {
        "hdf5_read_mb_per_s": nbytes / read_s / 1e6,
        "loader_batch_ms": per_batch * 1000,
        "train_step_ms": step_s * 1000,
        "loader_share": per_batch / (per_batch + step_s),
    }


def extraction(cfg: Config, device: torch.device, repeats: int) -> dict[str, Any]:
    """Clips per second of each backbone's forward at its default resolution (random weights)."""
    from dynpath.extract.backbones import build_backbone

    rows = {}
    for name, size in (("i3d", cfg.extract.size), ("i3d", 224), ("c3d", 112)):
        net = build_backbone(name, None, cfg.seed).model.to(device)
        clips = torch.randn(
            cfg.extract.batch_size, 3, cfg.extract.window, size, size, device=device
        )
        with torch.inference_mode():
            times = _time(partial(net, clips), repeats, 1, device)
        rows[f"{name}@{size}"] = {
            "batch": cfg.extract.batch_size,
            "clips_per_s": cfg.extract.batch_size / statistics.median(times),
        }
    return rows


def dvc_noop(repo: Path) -> dict[str, Any]:
    """Wall time of a `dvc repro` with nothing to do (needs a completed run: dvc.lock)."""
    if not (repo / "dvc.lock").exists():
        return {"skipped": "no dvc.lock: run `dvc repro` once first"}
    dvc = Path(sys.executable).with_name("dvc")
    t0 = time.perf_counter()
    proc = subprocess.run([str(dvc), "repro"], cwd=repo, capture_output=True, text=True)
    secs = time.perf_counter() - t0
    return {
        "seconds": secs,
        "returncode": proc.returncode,
        "ran_nothing": "didn't change" in proc.stdout or "up to date" in proc.stdout,
    }


def run_bench(
    cfg: Config, output: Path, quick: bool = False, device: str = "auto"
) -> dict[str, Any]:
    dev = torch.device(
        "cuda"
        if device == "auto" and torch.cuda.is_available()
        else ("cpu" if device == "auto" else device)
    )
    repeats = 3 if quick else 7
    threads = cfg.train.threads if dev.type == "cpu" else 0
    paper_model = ModelConfig.model_validate({"dropout": 0.0})
    result: dict[str, Any] = {
        "env": {
            "torch": torch.__version__,
            "device": str(dev),
            "threads": threads or torch.get_num_threads(),
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "onednn": torch.backends.mkldnn.is_available(),
            "quick": quick,
        }
    }
    with _threads(threads):
        peak = matmul_peak(dev, 1024 if quick else 2048, repeats * 2)
        result["matmul_peak"] = peak
        log.info("matmul peak %.1f GFLOP/s", peak["gflops"])
        result["train_paper"] = train_throughput(
            "dynamic", paper_model, PAPER_SHAPE, cfg, dev, repeats, peak["gflops"], True
        )
        default_shape = {
            "batch": cfg.train.batch_size,
            "clips": cfg.data.max_len,
            "feature_dim": 1024,
            "words": 10,
        }
        result["train_default"] = train_throughput(
            "dynamic", cfg.model, default_shape, cfg, dev, repeats, peak["gflops"], False
        )
        lat = inference_latency(
            ("dynamic", "soft_dynamic", "exploitation_only"), paper_model, cfg, dev, repeats, 64
        )
        lat["ratios"] = {
            "dynamic_vs_soft_p50": lat["dynamic"]["p50_ms"] / lat["soft_dynamic"]["p50_ms"],
            "dynamic_vs_exploitation_p50": lat["dynamic"]["p50_ms"]
            / lat["exploitation_only"]["p50_ms"],
            "dynamic_vs_soft_batch": lat["dynamic"]["batch_s"] / lat["soft_dynamic"]["batch_s"],
            "dynamic_vs_exploitation_batch": lat["dynamic"]["batch_s"]
            / lat["exploitation_only"]["batch_s"],
        }
        result["inference"] = lat
        result["mslstm"] = mslstm_ratio(dev, repeats)
        result["data"] = data_loading(cfg, dev, repeats)
        result["extraction"] = extraction(cfg, dev, max(2, repeats // 2))
    result["dvc"] = dvc_noop(Path.cwd())
    result["targets"] = _check_targets(result)
    write_json(output, result)
    print(format_table(result))
    return {"output": str(output), "targets": result["targets"]}


def _check_targets(r: dict[str, Any]) -> dict[str, Any]:
    lat = r["inference"]["ratios"]
    checks = {
        "dynamic <= 0.55x soft_dynamic latency": lat["dynamic_vs_soft_p50"]
        <= TARGETS["dynamic_vs_soft_latency_max"],
        "dynamic <= 1.15x exploitation_only latency": lat["dynamic_vs_exploitation_p50"]
        <= TARGETS["dynamic_vs_exploitation_latency_max"],
        "data loading < 5% of a step": r["data"]["loader_share"] < TARGETS["loader_share_max"],
        "train step >= 65% of matmul peak": r["train_paper"]["peak_fraction"]
        >= TARGETS["train_peak_fraction_min"],
    }
    if "seconds" in r["dvc"]:
        checks["no-op dvc repro < 5 s"] = r["dvc"]["seconds"] < TARGETS["dvc_noop_seconds_max"]
    return {k: "pass" if v else "FAIL" for k, v in checks.items()}


def format_table(r: dict[str, Any]) -> str:
    tp, lat = r["train_paper"], r["inference"]
    lines = [
        f"device {r['env']['device']}, {r['env']['threads']} threads, torch {r['env']['torch']}",
        f"matmul peak                 {r['matmul_peak']['gflops']:8.1f} GFLOP/s",
        f"train step (paper shape)    {tp['samples_per_s']:8.1f} samples/s  "
        f"{tp['achieved_gflops']:.1f} GFLOP/s = {100 * tp['peak_fraction']:.0f}% of peak",
        f"train step (default)        {r['train_default']['samples_per_s']:8.1f} samples/s",
    ]
    for arch in ("dynamic", "soft_dynamic", "exploitation_only"):
        row = lat[arch]
        lines.append(
            f"infer {arch:<21} p50 {row['p50_ms']:7.1f} ms  p95 {row['p95_ms']:7.1f} ms  "
            f"{row['queries_per_s']:7.1f} q/s @ batch {row['batch']}"
        )
    lines.append(f"MS-LSTM batched vs loop     {r['mslstm']['speedup']:8.2f}x faster")
    lines.append(
        f"data loader share of step   {100 * r['data']['loader_share']:8.2f}%  "
        f"HDF5 read {r['data']['hdf5_read_mb_per_s']:.0f} MB/s"
    )
    for name, row in r["extraction"].items():
        lines.append(f"extract {name:<19} {row['clips_per_s']:8.1f} clips/s")
    if "seconds" in r["dvc"]:
        lines.append(f"no-op dvc repro             {r['dvc']['seconds']:8.2f} s")
    lines += [f"[{v}] {k}" for k, v in r["targets"].items()]
    return "\n".join(lines)
