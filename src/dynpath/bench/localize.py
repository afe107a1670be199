"""The ``localize`` section: one ``dynpath localize`` call split into its stages.

A fresh interpreter (a subprocess, as the CLI is) runs :func:`probe`, which times, in order:
importing torch, importing the Localizer's module, resolving a registry URI to a local model
(importing mlflow, the alias lookup, the download or the cache hit; 0 for a local directory),
loading the model, decoding the video, extracting its clip features, the model with the span
decoding, and formatting the output. The whole CLI call is timed beside it, so the stages can be
checked to add up.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from dynpath.config import Config

#: The default model: the training output ``make run`` leaves.
DEFAULT_MODEL = "outputs/models/dynamic"

QUERY = "the red circle moves left"

STAGES = (
    "import_torch",
    "import_localizer",
    "registry",
    "model_load",
    "decode",
    "features",
    "model",
    "output",
)


def _first_video(cfg: Config) -> Path | None:
    root = Path(cfg.data.videos)
    if not root.is_dir():
        return None
    videos = sorted(p for p in root.iterdir() if p.suffix.lower() in (".mp4", ".avi", ".mkv"))
    return videos[0] if videos else None


def probe(
    model: str, video: str | None, query: str, import_torch_s: float | None = None
) -> dict[str, float]:
    """Seconds of each stage of one localize call, in this (fresh) interpreter.

    ``import_torch_s``: the caller's own timing of ``import torch``, taken before importing
    this module (whose package imports torch, so the lap here would only see a cache hit)."""
    out: dict[str, float] = {}
    t = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        out[name] = now - t
        t = now

    import torch  # noqa: F401

    lap("import_torch")
    if import_torch_s is not None:
        out["import_torch"] = import_torch_s
    from dynpath.inference import localizer as loc_mod

    lap("import_localizer")
    source: str | Path = model
    if not Path(model).exists() and model.startswith("models:/"):
        cached = loc_mod.cached_registry_model(model)
        source = cached if cached is not None else loc_mod.download_model(model)
    lap("registry")
    loc = loc_mod.Localizer.load(source, device="cpu")
    lap("model_load")
    import numpy as np

    if video is not None:
        from dynpath.extract.video import read_frames

        read_frames(video, loc.cfg.extract.size, loc.cfg.extract.frame_rate)
        lap("decode")
        from dynpath import extract

        feats_out = extract.extract_video_features(
            video,
            loc.cfg.extract.backbone,
            loc.cfg.extract,
            loc.backbone_weights,
            "cpu",
            seed=loc.cfg.seed,
        )
        feats_any = feats_out[0] if isinstance(feats_out, tuple) else feats_out
        feats = np.asarray(getattr(feats_any, "features", feats_any), dtype=np.float32)
        duration = loc_mod.video_duration(Path(video))
        # the extractor decodes the video itself: its decode is not counted twice
        out["features"] = max(time.perf_counter() - t - out["decode"], 0.0)
        t = time.perf_counter()
    else:
        out["decode"] = 0.0
        feats = np.random.default_rng(0).standard_normal((32, loc.feature_dim), dtype=np.float32)
        duration = 32.0
        lap("features")
    result = loc.predict_features(feats, query, duration, topk=5)
    lap("model")
    loc_mod.format_spans(result)
    json.dumps(result)
    lap("output")
    return out


def localize_stages(cfg: Config, model: str | None, query: str = QUERY) -> dict[str, Any]:
    """The stage split of one call (fresh interpreter) and the CLI call's own wall time."""
    model = model or DEFAULT_MODEL
    if not Path(model).exists() and "://" not in model and not model.startswith("models:"):
        return {"skipped": f"no model at {model} (train one, or pass --localize-model)"}
    video = _first_video(cfg)
    code = (
        "import time\n"
        "t0 = time.perf_counter()\n"
        "import torch\n"
        "torch_s = time.perf_counter() - t0\n"
        "import json, sys\n"
        "from dynpath.bench.localize import probe\n"
        "print(json.dumps(probe(sys.argv[1], sys.argv[2] or None, sys.argv[3], torch_s)))\n"
    )
    argv = [sys.executable, "-c", code, model, str(video or ""), query]
    t0 = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    probe_wall = time.perf_counter() - t0
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"skipped": f"the probe failed: {tail}"}
    stages = json.loads(done.stdout.strip().splitlines()[-1])
    cli = [sys.executable, "-m", "dynpath.cli", "localize", "--model", model, "--query", query]
    cli += ["--video", str(video)] if video is not None else []
    t0 = time.perf_counter()
    cli_done = subprocess.run(cli, capture_output=True, text=True, check=False)
    cli_wall = time.perf_counter() - t0
    return {
        "model": model,
        "video": str(video) if video is not None else None,
        "stages_s": {k: stages.get(k, 0.0) for k in STAGES},
        "stages_total_s": sum(stages.values()),
        "probe_process_s": probe_wall,
        "cli_s": cli_wall if cli_done.returncode == 0 else None,
        "cli_returncode": cli_done.returncode,
    }
