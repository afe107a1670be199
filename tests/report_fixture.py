"""Outputs of the train, evaluate and vocab steps as the report step reads them (hand-made).

Shared by the report, MLflow-link and DVC-plots tests: a helper module, so no test module imports
another (which made them depend on sys.path tricks and on each other's import side effects).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dynpath.config import Config
from dynpath.profiles import VARIANT_NAMES

SELECTORS = {"dynamic", "soft_dynamic"}


def _metrics(i: int, thresholds: tuple[float, ...] = (0.3, 0.5, 0.7)) -> dict[str, float]:
    base = 60.0 + 2 * i
    out = {}
    for k in (1, 5):
        for t in thresholds:
            out[f"r{k}_iou{t:g}"] = min(100.0, base + (10 if k == 5 else 0) - 40 * (t - 0.5))
    out["miou"] = base - 5
    return out


def write_fixture(
    root: Path,
    variants: tuple[str, ...] = VARIANT_NAMES,
    pretrained: bool = False,
    dynamic_r05: float = 80.0,
    dynamic_shuffled_r05: float = 20.0,
    shares: tuple[float, float] = (0.625, 0.375),
    run_ids: dict[str, str] | None = None,
    experiment_id: str | None = "7",
) -> tuple[Path, Path]:
    """outputs/{eval,models,vocab} as the train, evaluate and vocab steps write them."""
    eval_dir, models_dir, vocab_dir = root / "eval", root / "models", root / "vocab"
    for i, name in enumerate(variants):
        m: dict[str, Any] = {"variant": name, "arch": name, "split": "test", "n": 8}
        m.update(_metrics(i))
        m["shuffled"] = {k: v / 4 for k, v in _metrics(i).items()}
        if name == "dynamic":
            m["r1_iou0.5"] = dynamic_r05
            m["shuffled"]["r1_iou0.5"] = dynamic_shuffled_r05
        if name in SELECTORS:
            m["routes"] = {
                "exploitation": {"share": shares[0], "n": int(8 * shares[0]), **_metrics(i + 1)},
                "exploration": {"share": shares[1], "n": int(8 * shares[1]), **_metrics(i - 1)},
            }
        else:
            m["routes"] = {}
        m["latency_ms"] = {"p50": 3.5 + i, "p95": 5.0 + i}
        m["mlflow_run_id"] = (run_ids or {}).get(name, f"{i:032x}")
        (eval_dir / name).mkdir(parents=True)
        (eval_dir / name / "metrics.json").write_text(json.dumps(m))
        preds = []
        for q in range(8):
            route = None if name not in SELECTORS else ("exploitation" if q % 2 else "exploration")
            preds.append(
                {
                    "qid": f"q{q}",
                    "vid": f"v{q // 2}",
                    "query": f"the red circle moves left and then grows <{q}>",
                    "topk": [[1.0 + q, 5.0 + q, 0.9], [0.0, 2.0, 0.1]],
                    "route": route,
                    "gt": [1.0, 5.0],
                    "duration": 20.0,
                }
            )
        (eval_dir / name / "predictions.jsonl").write_text(
            "".join(json.dumps(p) + "\n" for p in preds)
        )
        (models_dir / name).mkdir(parents=True)
        (models_dir / name / "train_summary.json").write_text(
            json.dumps(
                {
                    "variant": name,
                    "arch": name,
                    "parameters": 100_000 + i,
                    "train_seconds": 12.5 * (i + 1),
                    "best_epoch": 2,
                    "best_val": {"r1_iou0.5": 50.0},
                    "mlflow_run_id": m["mlflow_run_id"],
                    "mlflow_experiment_id": experiment_id,
                    "pretrained_features": pretrained,
                }
            )
        )
        history = [
            {"epoch": e, "train_loss": 3.0 / e, "val_r1_iou0.5": 20.0 * e, "lr": 1e-3}
            for e in (1, 2, 3)
        ]
        (models_dir / name / "history.json").write_text(json.dumps(history))
    vocab_dir.mkdir(parents=True)
    (vocab_dir / "data_report.json").write_text(
        json.dumps(
            {
                "dataset": "synthetic",
                "lines": {"train": 40, "test": 10},
                "kept": {"train": 30, "val": 8, "test": 9},
                "videos": {"train": 12, "val": 3, "test": 5},
                "clipped": {"train": 2, "test": 0},
                "duplicates": {"train": 0, "test": 0},
                "skipped": [
                    {"split": "train", "file": "a.txt", "line": 3, "reason": "start >= end"},
                    {"split": "test", "file": "b.txt", "line": 9, "reason": "unknown video"},
                ],
                "carved": {"val_moments": 8, "val_videos": 3, "fraction": 0.1, "seed": 1},
                "notes": ["durations from charades.json"],
            }
        )
    )
    (vocab_dir / "vocab_report.json").write_text(
        json.dumps({"size": 42, "pretrained": True, "embeddings": "glove.txt", "coverage": {}})
    )
    return eval_dir, models_dir


def report_config(
    dataset: str = "synthetic", uri: str = "sqlite:///mlflow.db", **kw: Any
) -> Config:
    """A config for the report step over :func:`write_fixture`'s outputs."""
    return Config.model_validate(
        {
            # a root without synthetic_meta.json (not the repository's data/synthetic)
            "data": {"dataset": dataset, "name": dataset, "root": "tests/no-such-data-root"},
            "variants": {v: {} for v in VARIANT_NAMES},
            "tracking": {"uri": uri},
            **kw,
        }
    )
