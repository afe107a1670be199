"""The driver of ``dynpath bench``: which sections run, the environment record, the JSON."""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from dynpath.bench.charades import charades_workload
from dynpath.bench.data import data_loading
from dynpath.bench.dvc import dvc_timings
from dynpath.bench.extraction import extraction, extraction_projection
from dynpath.bench.inference import inference_latency, mslstm_ratio
from dynpath.bench.inputs import PAPER_SHAPE, QUICK_MODEL, QUICK_SHAPE
from dynpath.bench.peaks import MatmulPeak, matmul_peaks
from dynpath.bench.report import check_targets, format_table
from dynpath.bench.timing import torch_threads
from dynpath.bench.train import PEERS_REPORTED, lstm_peer, train_throughput
from dynpath.config import Config, ModelConfig
from dynpath.device import resolve_device
from dynpath.io import write_json

log = logging.getLogger(__name__)


def _env(device: torch.device, threads: int, quick: bool) -> dict[str, Any]:
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    env = {
        "torch": torch.__version__,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu,
        "threads": threads,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "onednn": torch.backends.mkldnn.is_available(),
        "quick": quick,
    }
    if device.type == "cpu":
        from dynpath.model.gemm import cpu_info

        info = cpu_info()
        env["cpu_vendor"] = info["vendor"]
        env["cpu_flags"] = info["flags"]  # the SIMD sets that decide the GEMM paths
        env["torch_cpu_capability"] = info.get("torch_capability")
    with contextlib.suppress(OSError):
        env["load_average_start"] = list(os.getloadavg())
    return env


#: Sections of ``dynpath bench`` (``--sections``); ``charades`` runs only when asked for or
#: when ``charades_scale`` is given.
SECTIONS = (
    "paper",
    "data",
    "inference",
    "mslstm",
    "extraction",
    "dvc",
    "default",
    "localize",
    "charades",
)


DEFAULT_SECTIONS = SECTIONS[:-1]


def parse_sections(text: str) -> tuple[str, ...]:
    """``--sections`` (comma-separated names, or ``all``) -> section names; unknown names are
    an error naming them and the valid ones."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["all"]:
        return SECTIONS
    unknown = [n for n in names if n not in SECTIONS]
    if unknown or not names:
        raise ValueError(
            f"--sections: unknown {', '.join(unknown) or '(empty)'}; use 'all' or a "
            f"comma-separated list of {', '.join(SECTIONS)}"
        )
    return tuple(names)


def _train_paper(
    paper_model: ModelConfig,
    paper_shape: dict[str, int],
    cfg: Config,
    dev: torch.device,
    repeats: int,
    peak: MatmulPeak,
) -> dict[str, Any]:
    """The training step at the paper's configuration, with the operator detail, and a bare
    ``nn.LSTM`` step beside it (with the peers' reported figures)."""
    row = train_throughput("dynamic", paper_model, paper_shape, cfg, dev, repeats, peak, True)
    row["peers_reported"] = PEERS_REPORTED
    row["peer_lstm_measured"] = lstm_peer(paper_shape, paper_model.dim, dev, repeats, peak)
    return row


def _workload_sections(
    result: dict[str, Any],
    sections: Sequence[str],
    cfg: Config,
    dev: torch.device,
    paper_model: ModelConfig,
    paper_shape: dict[str, int],
    repeats: int,
    quick: bool,
    charades_scale: float,
    peak: MatmulPeak,
) -> None:
    """The MS-LSTM, extraction and Charades-STA-shaped sections, into ``result``."""
    if "mslstm" in sections:
        log.info("bench: MS-LSTM batched vs looped")
        result["mslstm"] = mslstm_ratio(
            paper_shape, paper_model.dim, paper_model.lstm_scales, dev, repeats
        )
    if "extraction" in sections:
        log.info("bench: extraction")
        result["extraction"] = extraction(cfg, dev, 2 if quick else 3, quick)
        projected = extraction_projection(
            result, cfg.extract.frame_rate or 24.0, cfg.extract.stride
        )
        if projected is not None:
            result["charades_extraction"] = projected
    if "charades" in sections:
        log.info("bench: Charades-STA-shaped workload (scale %s)", charades_scale)
        result["charades"] = charades_workload(
            cfg,
            dev,
            charades_scale,
            paper_model,
            QUICK_SHAPE["feature_dim"] if quick else 1024,
            peak=peak,
        )


def run_bench(
    cfg: Config,
    output: Path,
    quick: bool = False,
    device: str = "auto",
    sections: Sequence[str] = DEFAULT_SECTIONS,
    charades_scale: float = 0.02,
    localize_model: str | None = None,
) -> dict[str, Any]:
    """Run the ``sections``, write ``output`` (JSON) and print the table; returns a summary."""
    dev = resolve_device(device, setting="--device")
    repeats = 2 if quick else 7
    threads = cfg.train.threads if dev.type == "cpu" else 0
    paper_shape = QUICK_SHAPE if quick else PAPER_SHAPE
    # The paper's configuration: the schema defaults (d=512, 8 heads, 3 scales, kernels 3/5/7/9,
    # 3-layer text BiLSTM, dropout 0.5); --quick shrinks the widths only.
    paper_model = ModelConfig.model_validate(QUICK_MODEL if quick else {})
    result: dict[str, Any] = {}
    t_start = time.perf_counter()
    with torch_threads(threads):
        result["env"] = _env(dev, torch.get_num_threads(), quick)
        result["env"]["sections"] = list(sections)
        log.info("bench: matmul peaks (every fp32 path, bf16 beside)")
        peak, result["matmul_peaks"] = matmul_peaks(dev, 256 if quick else 2048, repeats)
        if "paper" in sections:
            log.info("bench: training step at the paper's configuration")
            result["train_paper"] = _train_paper(paper_model, paper_shape, cfg, dev, repeats, peak)
        if "data" in sections:
            log.info("bench: data loading and the default profile's training step")
            result["data"] = data_loading(cfg, dev, repeats, quick, peak)
            result["train_default"] = result["data"].pop("train_default")
        if "default" in sections:
            log.info("bench: every variant's training step on the params' profile")
            from dynpath.bench.default import default_profile

            result["default"] = default_profile(cfg, dev, 2 if quick else 5, quick)
        if "inference" in sections:
            log.info("bench: inference latency")
            result["inference"] = inference_latency(
                ("dynamic", "soft_dynamic", "exploitation_only"),
                paper_model.model_copy(update={"dropout": 0.0}),
                paper_shape,
                cfg.seed,
                dev,
                repeats,
                8 if quick else 64,
            )
        _workload_sections(
            result,
            sections,
            cfg,
            dev,
            paper_model,
            paper_shape,
            repeats,
            quick,
            charades_scale,
            peak,
        )
    if "localize" in sections:
        log.info("bench: one `dynpath localize` call, stage by stage")
        from dynpath.bench.localize import localize_stages

        result["localize"] = localize_stages(cfg, localize_model)
    if "dvc" in sections:
        log.info("bench: dvc")
        result["dvc"] = dvc_timings(Path.cwd(), full=not quick)
    with contextlib.suppress(OSError):
        result["env"]["load_average_end"] = list(os.getloadavg())
    result["env"]["bench_seconds"] = time.perf_counter() - t_start
    result["targets"] = check_targets(result)
    write_json(output, result)
    print(format_table(result))
    return {
        "output": str(output),
        "targets": {k: v["status"] for k, v in result["targets"].items()},
    }
