"""A small real project on disk for the reliability, security and load tests.

``build_workspace(root)`` writes what the DAG's first stages would: JSONL annotations, an HDF5
feature store whose features mark each ground-truth moment (so a real model learns something in a
few epochs and the metrics are not all zero), a ``params.yaml`` that the real CLI reads, and the
vocabulary made by the real ``vocab`` step. Training and evaluation then run through
``dynpath.cli`` exactly as DVC runs them. Sizes are chosen so that a full CPU training takes a few
seconds with one thread (CI has two cores shared by the whole suite).

Helpers here are shared by ``test_reliability_*``, ``test_security_*`` and ``test_load_*``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

WORDS = ["person", "opens", "door", "closes", "window", "walks", "sits", "chair", "drinks", "cup"]
FEATURE_DIM = 12
VARIANT = "dynamic"
TIMING_KEYS = {"seconds", "samples_per_s"}
# Summary keys that legitimately differ between an interrupted and an uninterrupted run.
RUN_KEYS = {"train_seconds", "samples_per_s", "wall_seconds", "resumed_from"}
REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Workspace:
    """Paths of a built workspace (all absolute, so the CLI can run from any directory)."""

    root: Path
    params: Path
    data: Path
    features: Path
    vocab: Path
    models: Path

    def model_dir(self, variant: str = VARIANT) -> Path:
        return self.models / variant

    def train_argv(self, *extra: str, variant: str = VARIANT, out: Path | None = None) -> list[str]:
        """Arguments of ``dynpath train`` for this workspace (the CLI's own flags); the model
        lands in ``<out>/<variant>`` (default ``outputs/models/<variant>``)."""
        return [
            "--params",
            str(self.params),
            "train",
            "--variant",
            variant,
            "--vocab",
            str(self.vocab),
            "--out",
            str(out or self.models),
            *extra,
        ]


def write_dataset(root: Path, n_videos: int = 32, dim: int = FEATURE_DIM, seed: int = 0) -> Path:
    """``train.jsonl``/``test.jsonl`` + ``features.h5``; each video's moment is visible in its
    features (+1.5 on the moment's positions), two queries per video."""
    from dynpath.data.features import write_features

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    feats: dict[str, np.ndarray] = {}
    lines: dict[str, list[str]] = {"train": [], "test": []}
    for v in range(n_videos):
        vid = f"vid{v:03d}"
        t = int(rng.integers(16, 32))
        duration = float(rng.uniform(10.0, 30.0))
        x = rng.normal(0, 0.5, size=(t, dim)).astype(np.float32)
        a = int(rng.integers(0, t - 6))
        b = int(rng.integers(a + 3, min(t, a + 12)))
        x[a:b] += 1.5
        split = "test" if v % 4 == 0 else "train"
        for q in range(2):
            rec = {
                "qid": f"{vid}_{q}",
                "vid": vid,
                "query": " ".join(rng.choice(WORDS, size=4)),
                "duration": round(duration, 3),
                "relevant_windows": [[a * duration / t, b * duration / t]],
            }
            lines[split].append(json.dumps(rec))
        feats[vid] = x
    for split, recs in lines.items():
        (root / f"{split}.jsonl").write_text("\n".join(recs) + "\n", encoding="utf-8")
    attrs = {
        "backbone": "test",
        "fps": 8,
        "window": 16,
        "stride": 16,
        "pretrained": False,
        "weights": None,
    }
    write_features(root / "features.h5", feats, attrs)
    return root


def params_dict(data_root: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """A complete params mapping for the dataset in ``data_root``; ``sections`` update (merge
    into) whole sections, e.g. ``data={"features": ...}``."""
    data = data_root
    from dynpath.config import Config

    raw: dict[str, Any] = Config().model_dump(mode="json")
    raw.update(
        data={
            "dataset": "jsonl",
            "name": "reliability",
            "root": str(data),
            "videos": str(data / "videos"),
            "features": str(data / "features.h5"),
            "max_len": 24,
            "val_fraction": 0.2,
        },
        vocab={"embeddings": None, "dim": 16, "max_query_len": 10, "lowercase": True},
        model={
            "dim": 16,
            "heads": 2,
            "lstm_scales": 2,
            "kernels": [3, 5],
            "text_lstm_layers": 1,
            "dropout": 0.1,
            "gumbel_tau": 1.0,
            "second_order": "module",
            # one conv block, forward LSTM: the checkpoint size the disk-full test sizes its
            # tmpfs for (~672 KB)
            "conv_blocks": 1,
            "lstm_bidirectional": False,
        },
        train={
            **raw["train"],
            "epochs": 4,
            "batch_size": 8,
            "lr": 0.005,
            "threads": 1,
            "device": "cpu",
            "amp": False,
        },
        eval={**raw["eval"], "batch_size": 32},
        tracking={**raw["tracking"], "enabled": False},
        variants={VARIANT: {}, "sum_fusion": {}},
    )
    for name, values in sections.items():
        raw[name] = {**raw[name], **values} if isinstance(raw.get(name), dict) else values
    return raw


def write_params(path: Path, raw: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def build_workspace(root: Path, **sections: dict[str, Any]) -> Workspace:
    """Dataset + params.yaml + vocabulary (through the real ``vocab`` step)."""
    import torch

    from dynpath.config import load_config
    from dynpath.steps import vocab as vocab_step

    data = write_dataset(root / "data")
    params = write_params(root / "params.yaml", params_dict(data, **sections))
    ws = Workspace(
        root=root,
        params=params,
        data=data,
        features=data / "features.h5",
        vocab=root / "outputs" / "vocab",
        models=root / "outputs" / "models",
    )
    threads = torch.get_num_threads()
    vocab_step.run(load_config(params), ws.vocab)
    torch.set_num_threads(threads)
    return ws


# --------------------------------------------------------------------------- subprocesses


def child_env(**extra: str) -> dict[str, str]:
    """Environment of a CLI child: one BLAS thread (same floats as the parent's runs), no
    MLflow URI leaking in from the developer's shell unless given."""
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def cli_command(argv: list[str]) -> list[str]:
    return [sys.executable, "-m", "dynpath.cli", *argv]


def run_cli(
    argv: list[str], cwd: Path, timeout: float = 300, **env: str
) -> subprocess.CompletedProcess[str]:
    """``python -m dynpath.cli ARGV`` in a fresh process; output captured."""
    return subprocess.run(
        cli_command(argv),
        cwd=cwd,
        env=child_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# --------------------------------------------------------------------------- checks


def load_weights_only(path: Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)``: what every consumer of a checkpoint uses."""
    import torch

    obj = torch.load(path, map_location="cpu", weights_only=True)
    assert isinstance(obj, dict) and {"meta", "model"} <= set(obj), path
    return obj


def assert_checkpoints_loadable(model_dir: Path) -> list[str]:
    """Every best.pt/last.pt that exists loads safely; returns the names found."""
    found = []
    for name in ("best.pt", "last.pt"):
        path = model_dir / name
        if path.exists():
            load_weights_only(path)
            found.append(name)
    return found


def strip_timing(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k not in TIMING_KEYS} for e in history]


def comparable_summary(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k not in RUN_KEYS}


def temp_files(directory: Path) -> list[str]:
    """Leftovers of :func:`dynpath.io.atomic_path` (hidden ``.<name>.<random><suffix>`` files)."""
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


# --------------------------------------------------------------------------- videos


def write_videos(directory: Path, frames: list[int], fps: int = 8, size: int = 32) -> Path:
    """Small real H.264 MP4 files ``v00.mp4``, ``v01.mp4``, ... with ``frames[i]`` frames of
    seeded noise each (decoded by the real extractor exactly like any other video)."""
    import av

    directory.mkdir(parents=True, exist_ok=True)
    for i, n in enumerate(frames):
        with av.open(str(directory / f"v{i:02d}.mp4"), "w") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = size, size, "yuv420p"
            rng = np.random.default_rng(i)
            for _ in range(n):
                img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    return directory


def extract_params(root: Path, **extract: Any) -> Path:
    """A params.yaml whose ``extract`` section suits 32-pixel test videos on CPU."""
    settings = {"size": 32, "batch_size": 4, "device": "cpu", "max_failures": 0.0, **extract}
    return write_params(root / "params.yaml", params_dict(root, extract=settings))


def read_store(path: Path) -> dict[str, np.ndarray]:
    import h5py

    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in f}
