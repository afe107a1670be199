"""Compose docs/study/paper-config.json: the paper-configuration run beside the synthetic default.

Reads the paper-configuration run (``make paper-config``, default ``runs/paper-config``): its
params, and per variant (every seed) the history, train summary and test metrics; and the
synthetic default's report summary (``reports/summary.json`` of ``make run``, same data: both
profiles generate the synthetic benchmark with the same ``synth`` params and seed). A variant
whose training did not finish is recorded with how far it got (``stopped``: "interrupted") and,
when its ``best.pt`` was evaluated, its test metrics.

    python scripts/paper_config_json.py --run runs/paper-config --default reports/summary.json \
        --out docs/study/paper-config.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

KEYS = ("r1_iou0.3", "r1_iou0.5", "r1_iou0.7", "miou")


def _read(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def _run(model_dir: Path, eval_dir: Path, cap: int, patience: int) -> dict[str, Any]:
    history = _read(model_dir / "history.json") or []
    summary = _read(model_dir / "train_summary.json")
    metrics = _read(eval_dir / "metrics.json")
    vals = [(e["val_r1_iou0.5"], e["epoch"]) for e in history]
    best = max(vals, key=lambda ve: (ve[0], -ve[1])) if vals else None
    if summary is None:
        stopped = "interrupted"  # the session's budget ended the run before its plateau or cap
    else:
        stopped = "early_stop" if summary.get("stopped_early") else "epoch_cap"
    return {
        "epochs_trained": len(history),
        "epoch_cap": cap,
        "patience": patience,
        "best_epoch": None if best is None else best[1],
        "best_val_r1_iou0.5": None if best is None else best[0],
        "stopped": stopped,
        "plateaued": stopped == "early_stop",
        "train_seconds": sum(e.get("seconds", 0.0) for e in history),
        "curve": [
            {k: e.get(k) for k in ("epoch", "train_loss", "val_r1_iou0.5", "val_miou", "lr")}
            for e in history
        ],
        "test": None if metrics is None else {k: metrics.get(k) for k in KEYS},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=Path("runs/paper-config"))
    ap.add_argument("--default", type=Path, default=Path("reports/summary.json"))
    ap.add_argument(
        "--default-models",
        type=Path,
        default=Path("outputs/models"),
        help="the synthetic default's model dirs (their validation curves go beside)",
    )
    ap.add_argument("--out", type=Path, default=Path("docs/study/paper-config.json"))
    args = ap.parse_args()
    params = yaml.safe_load((args.run / "params.yaml").read_text())
    cap, patience = params["train"]["epochs"], params["train"]["patience"]
    seeds = params["seeds"]
    variants: dict[str, Any] = {}
    for v in params["variants"]:
        mdir, edir = args.run / "outputs/models" / v, args.run / "outputs/eval" / v
        if not mdir.exists():
            variants[v] = {"trained": False, "why": "not started within the session's budget"}
            continue
        runs = {}
        for i, seed in enumerate(seeds):
            sub = Path() if i == 0 else Path("seeds") / str(seed)
            runs[str(seed)] = _run(mdir / sub, edir / sub, cap, patience)
        variants[v] = {"trained": True, "seeds": runs}
    default = _read(args.default) or {}
    beside = {
        v: {
            "primary_seed": {k: d.get("metrics", {}).get(k) for k in KEYS},
            "seeds_mean": (d.get("seeds") or {}).get("mean"),
            "seeds_sd": (d.get("seeds") or {}).get("sd"),
        }
        for v, d in (default.get("variants") or {}).items()
        if v in params["variants"]
    }
    curves = {
        v: [
            {k: e.get(k) for k in ("epoch", "val_r1_iou0.5", "val_miou")}
            for e in _read(args.default_models / v / "history.json") or []
        ]
        for v in params["variants"]
    }
    out = {
        "what": "the paper's model and optimiser (profile synthetic_paper) on the synthetic "
        "benchmark's data, beside the synthetic default's small model on the same data",
        "params": {k: params[k] for k in ("seeds", "model", "train")},
        "variants": variants,
        "synthetic_default": {
            "source": str(args.default),
            "variants": beside,
            "primary_seed_validation_curves": curves,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(args.out)


if __name__ == "__main__":
    main()
