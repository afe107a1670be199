"""``dynpath.steps.train`` / ``dynpath.steps.evaluate`` end to end on a small generated dataset.

The fixture writes a JSONL annotation set, an HDF5 feature store whose features mark the
ground-truth span (so the real model can learn it in a few epochs), and the vocabulary through
the real ``vocab`` step; then the real model is trained and evaluated with tracking disabled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from dynpath.config import Config
from dynpath.data.annotations import load_splits
from dynpath.data.features import FeatureStore, write_features
from dynpath.engine.checkpoint import load_checkpoint
from dynpath.engine.metrics import iou
from dynpath.errors import CheckpointError
from dynpath.io import file_sha256
from dynpath.model import gemm
from dynpath.steps import evaluate, train
from dynpath.steps import vocab as vocab_step

WORDS = ["person", "opens", "door", "closes", "window", "walks", "sits", "chair", "drinks"]
METRIC_KEYS = {f"r{k}_iou{m}" for k in (1, 5) for m in ("0.3", "0.5", "0.7")} | {"miou"}


def _write_dataset(root: Path, n_videos: int = 32, dim: int = 12) -> None:
    """Each video has one moment, marked in its features; two queries per video describe it."""
    rng = np.random.default_rng(0)
    feats: dict[str, np.ndarray] = {}
    lines: dict[str, list[str]] = {"train": [], "test": []}
    for v in range(n_videos):
        vid = f"vid{v:03d}"
        t = int(rng.integers(20, 40))
        duration = float(rng.uniform(10.0, 30.0))
        x = rng.normal(0, 0.5, size=(t, dim)).astype(np.float32)
        split = "test" if v % 4 == 0 else "train"
        a = int(rng.integers(0, t - 6))
        b = int(rng.integers(a + 3, min(t, a + 14)))
        x[a:b] += 1.5
        for q in range(2):
            rec = {
                "qid": f"{vid}_{q}",
                "vid": vid,
                "query": " ".join(rng.choice(WORDS, size=4)),
                "duration": duration,
                "relevant_windows": [[a * duration / t, b * duration / t]],
            }
            lines[split].append(json.dumps(rec))
        feats[vid] = x
    for split, recs in lines.items():
        (root / f"{split}.jsonl").write_text("\n".join(recs) + "\n")
    attrs = {
        "backbone": "test",
        "fps": 8,
        "window": 16,
        "stride": 16,
        "pretrained": False,
        "weights": None,
    }
    write_features(root / "features.h5", feats, attrs)


def make_cfg(root: Path, **train: Any) -> Config:
    base = Config().model_dump(mode="json")
    base.update(
        data={
            "dataset": "jsonl",
            "name": "enginetest",
            "root": str(root),
            "videos": str(root),
            "features": str(root / "features.h5"),
            "max_len": 24,
            "val_fraction": 0.2,
        },
        vocab={"embeddings": None, "dim": 16, "max_query_len": 10},
        model={
            "dim": 16,
            "heads": 2,
            "lstm_scales": 2,
            "kernels": [3, 5],
            "text_lstm_layers": 1,
            "dropout": 0.1,
        },
        train={"epochs": 15, "batch_size": 8, "lr": 0.005, "threads": 1, "device": "cpu", **train},
        # 10 validation queries make R@1 too coarse to select on; mIoU is continuous
        eval={"batch_size": 16, "selection_metric": "miou"},
        tracking={"enabled": False},
        variants={
            "dynamic": {},
            "sum_fusion": {},
            "dynamic_tau05": {"arch": "dynamic", "model.gumbel_tau": 0.5},
        },
    )
    return Config.model_validate(base)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("engine_steps")
    _write_dataset(root)
    before = torch.get_num_threads()
    vocab_step.run(make_cfg(root), root / "vocab")
    torch.set_num_threads(before)
    return root


@pytest.fixture(scope="module")
def trained(workspace: Path) -> dict[str, Any]:
    before = torch.get_num_threads()
    cfg = make_cfg(workspace)
    summary = train.run(
        cfg, "dynamic", workspace / "vocab", workspace / "models" / "dynamic", resume=False
    )
    metrics = evaluate.run(
        cfg,
        "dynamic",
        workspace / "vocab",
        workspace / "models" / "dynamic",
        workspace / "eval" / "dynamic",
    )
    torch.set_num_threads(before)
    return {"summary": summary, "metrics": metrics}


def test_train_outputs(workspace: Path, trained: dict[str, Any]) -> None:
    out = workspace / "models" / "dynamic"
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary == trained["summary"]
    for key in (
        "variant",
        "arch",
        "parameters",
        "train_seconds",
        "best_epoch",
        "best_val",
        "mlflow_run_id",
        "pretrained_features",
        "feature_dim",
    ):
        assert key in summary
    assert summary["pretrained_features"] is False and summary["feature_dim"] == 12
    assert summary["mlflow_run_id"] is None  # tracking disabled
    # train.gemm: auto (the default) resolved and recorded: the library this CPU gets
    assert summary["gemm"] == gemm.auto_backend()
    history = json.loads((out / "history.json").read_text())
    assert [e["epoch"] for e in history] == list(range(1, 16))
    assert {"train_loss", "train_loss_start", "train_loss_end", "train_loss_inner"} <= set(
        history[0]
    )
    assert {k.removeprefix("val_") for k in history[0]} >= METRIC_KEYS
    best = max(e["val_miou"] for e in history)
    assert summary["best_val"]["miou"] == best
    assert history[summary["best_epoch"] - 1]["val_miou"] == best
    meta = load_checkpoint(out / "best.pt", variant="dynamic", arch="dynamic")["meta"]
    assert meta["feature_dim"] == 12 and meta["config"]["model"]["dim"] == 16
    assert meta["vocab_size"] > 2


def test_evaluate_outputs(workspace: Path, trained: dict[str, Any]) -> None:
    m = trained["metrics"]
    out = workspace / "eval" / "dynamic"
    assert json.loads((out / "metrics.json").read_text()) == m
    assert (
        set(m)
        == {"variant", "arch", "split", "n", "shuffled", "routes", "latency_ms", "mlflow_run_id"}
        | {"dataset", "checkpoint"}
        | METRIC_KEYS
    )
    # which dataset and which best.pt it scored (the report refuses a mix or a stale file)
    assert m["dataset"] == {"format": "jsonl", "name": "enginetest"}
    best = workspace / "models" / "dynamic" / "best.pt"
    assert m["checkpoint"] == {"path": str(best), "sha256": file_sha256(best)}
    assert m["split"] == "test" and m["n"] == 16
    assert set(m["shuffled"]) == METRIC_KEYS
    assert set(m["routes"]) == {"exploitation", "exploration"}
    shares = [r["share"] for r in m["routes"].values()]
    assert abs(sum(shares) - 1.0) < 1e-9
    assert sum(r["n"] for r in m["routes"].values()) == 16
    assert m["latency_ms"]["p95"] >= m["latency_ms"]["p50"] > 0
    # R@5 can only be >= R@1, and recall falls as the threshold rises
    for t in ("0.3", "0.5", "0.7"):
        assert m[f"r5_iou{t}"] >= m[f"r1_iou{t}"]
    assert m["r1_iou0.3"] >= m["r1_iou0.5"] >= m["r1_iou0.7"]

    lines = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == 16
    first = lines[0]
    assert set(first) == {"qid", "vid", "query", "topk", "route", "gt", "duration"}
    assert first["route"] in ("exploitation", "exploration")
    assert 1 <= len(first["topk"]) <= 5
    # metrics.json is exactly what predictions.jsonl implies (seconds, top-1 IoU)
    ious = [float(iou(p["topk"][0][:2], p["gt"])) for p in lines]
    assert abs(100 * np.mean(ious) - m["miou"]) < 1e-6
    for p in lines:
        scores = [s[2] for s in p["topk"]]
        assert scores == sorted(scores, reverse=True)
        assert all(0 <= s < e <= p["duration"] + 1e-6 for s, e, _ in p["topk"])


def test_model_learns_and_shuffled_control_is_worse(trained: dict[str, Any]) -> None:
    """The features mark the moment, so a working pipeline beats the shuffled-video control."""
    m = trained["metrics"]
    assert m["miou"] > m["shuffled"]["miou"] + 10.0
    assert m["r1_iou0.3"] > m["shuffled"]["r1_iou0.3"]


def test_variant_with_arch_override_and_mismatch_errors(workspace: Path) -> None:
    cfg = make_cfg(workspace, epochs=1)
    out = workspace / "models" / "dynamic_tau05"
    s = train.run(cfg, "dynamic_tau05", workspace / "vocab", out, resume=False)
    assert s["arch"] == "dynamic" and s["variant"] == "dynamic_tau05"
    assert load_checkpoint(out / "best.pt")["meta"]["config"]["model"]["gumbel_tau"] == 0.5
    # evaluating another variant's checkpoint names both variants
    with pytest.raises(CheckpointError, match=r"'dynamic_tau05'.*'dynamic'"):
        evaluate.run(cfg, "dynamic", workspace / "vocab", out, workspace / "eval" / "x")
    # resuming a run of another variant into this directory is refused too
    with pytest.raises(CheckpointError, match=r"'dynamic_tau05'.*'sum_fusion'"):
        train.run(cfg, "sum_fusion", workspace / "vocab", out, resume=True)


def test_selector_free_variant_has_no_routes(workspace: Path) -> None:
    cfg = make_cfg(workspace, epochs=1)
    out = workspace / "models" / "sum_fusion"
    train.run(cfg, "sum_fusion", workspace / "vocab", out, resume=False)
    cfg2 = Config.model_validate(
        {**cfg.model_dump(mode="json"), "eval": {"batch_size": 16, "shuffled_control": False}},
    )
    m = evaluate.run(cfg2, "sum_fusion", workspace / "vocab", out, workspace / "eval" / "sum")
    assert m["routes"] == {} and m["shuffled"] == {}
    assert set(m) >= METRIC_KEYS


@pytest.mark.slow
def test_real_model_resume_after_kill_matches(workspace: Path, tmp_path: Path) -> None:
    """The real model + data path: interrupted mid-epoch, resumed, same history and weights."""
    from dynpath.engine import trainer as trainer_mod

    cfg = make_cfg(workspace, epochs=2)
    ref = tmp_path / "ref"
    train.run(cfg, "dynamic", workspace / "vocab", ref, resume=False)

    class Killed(RuntimeError):
        pass

    original = trainer_mod.Trainer.fit
    calls = {"n": 0}

    def killing_fit(self: trainer_mod.Trainer, resume: bool = False) -> Any:
        self.opt = trainer_mod.TrainOptions(**{**self.opt.__dict__, "checkpoint_every_steps": 2})

        def hook(step: int) -> None:
            if step == 5 and calls["n"] == 0:
                calls["n"] += 1
                raise Killed("kill")

        self.on_step = hook
        return original(self, resume)

    got = tmp_path / "got"
    trainer_mod.Trainer.fit = killing_fit  # type: ignore[method-assign]
    try:
        with pytest.raises(Killed):
            train.run(cfg, "dynamic", workspace / "vocab", got, resume=False)
        train.run(cfg, "dynamic", workspace / "vocab", got, resume=True)
    finally:
        trainer_mod.Trainer.fit = original  # type: ignore[method-assign]
    strip = {"seconds", "samples_per_s"}
    a = [
        {k: v for k, v in e.items() if k not in strip}
        for e in json.loads((ref / "history.json").read_text())
    ]
    b = [
        {k: v for k, v in e.items() if k not in strip}
        for e in json.loads((got / "history.json").read_text())
    ]
    assert a == b
    wa = load_checkpoint(ref / "last.pt")["model"]
    wb = load_checkpoint(got / "last.pt")["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.slow
def test_mlflow_run_holds_training_and_test_metrics(workspace: Path, tmp_path: Path) -> None:
    """Tracking on (local SQLite): one run per variant gets the epoch curves, the SELECTED
    checkpoint's val_* metrics, the test metrics of evaluate, and a challenger model version;
    --resume continues the same run."""
    from mlflow import MlflowClient

    raw = make_cfg(workspace, epochs=2).model_dump(mode="json")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    raw["tracking"] = {
        "enabled": True,
        "uri": uri,
        "artifact_location": str(tmp_path / "art"),
        "log_system_metrics": False,
    }
    cfg = Config.model_validate(raw)
    models = tmp_path / "models" / "dynamic"
    s = train.run(cfg, "dynamic", workspace / "vocab", models, resume=False)
    m = evaluate.run(cfg, "dynamic", workspace / "vocab", models, tmp_path / "eval")
    assert s["mlflow_run_id"] and m["mlflow_run_id"] == s["mlflow_run_id"]
    assert load_checkpoint(models / "last.pt")["meta"]["mlflow_run_id"] == s["mlflow_run_id"]
    client = MlflowClient(uri)
    metrics = client.get_run(s["mlflow_run_id"]).data.metrics
    assert metrics["val_miou"] == s["best_val"]["miou"]
    assert metrics["test_miou"] == m["miou"]
    assert metrics["test_shuffled_miou"] == m["shuffled"]["miou"]
    curve = client.get_metric_history(s["mlflow_run_id"], "epoch_train_loss")
    assert [p.step for p in curve] == [1, 2]
    assert client.get_registered_model("dynpath-enginetest").aliases.get("challenger") in (1, "1")
    again = train.run(cfg, "dynamic", workspace / "vocab", models, resume=True)
    assert again["mlflow_run_id"] == s["mlflow_run_id"]


def test_normalised_features_use_training_statistics_and_travel_with_the_checkpoint(
    workspace: Path,
) -> None:
    base = make_cfg(workspace, epochs=1)
    dump = base.model_dump(mode="json")
    dump["model"]["normalize_features"] = True
    cfg = Config.model_validate(dump)
    out = workspace / "models" / "normalised"
    train.run(cfg, "dynamic", workspace / "vocab", out, resume=False)
    state = load_checkpoint(out / "best.pt")["model"]
    splits, _ = load_splits(cfg)
    with FeatureStore(cfg.data.features) as store:
        mean, std = store.statistics(m.vid for m in splits["train"])
        all_mean, _ = store.statistics(store.keys())
    torch.testing.assert_close(state["video.feature_mean"], torch.from_numpy(mean))
    torch.testing.assert_close(state["video.feature_inv_std"], torch.from_numpy(1.0 / std))
    assert not np.allclose(mean, all_mean)  # validation/test videos did not leak in
    m = evaluate.run(cfg, "dynamic", workspace / "vocab", out, workspace / "eval" / "normalised")
    assert set(m) >= METRIC_KEYS


def test_seeds_train_and_evaluate_into_their_own_directories(
    workspace: Path, tmp_path: Path
) -> None:
    """seeds [7, 8]: the primary run where a single run always was, seed 8 under seeds/8, both
    evaluated (with validation predictions), different weights from the same data; --seed
    trains one seed only, reproducing that seed's run of the full loop."""
    from dynpath.config import ConfigError

    raw = make_cfg(workspace, epochs=1).model_dump(mode="json")
    raw["seeds"] = [7, 8]
    cfg = Config.model_validate(raw)
    vocab = workspace / "vocab"
    models, evals = tmp_path / "models" / "dynamic", tmp_path / "eval" / "dynamic"
    before = torch.get_num_threads()
    summary = train.run(cfg, "dynamic", vocab, models, resume=False)
    other = models / "seeds" / "8"
    assert summary["seed"] == 7
    assert sorted(p.name for p in (models / "seeds").iterdir()) == ["8"]
    for d, seed in ((models, 7), (other, 8)):
        assert {"best.pt", "last.pt", "history.json", "train_summary.json"} <= {
            p.name for p in d.iterdir()
        }
        assert json.loads((d / "train_summary.json").read_text())["seed"] == seed
        meta = load_checkpoint(d / "best.pt")["meta"]
        # the checkpoint's config keeps the DATA seed (the localizer rebuilds features with it)
        assert meta["train_seed"] == seed and meta["config"]["seed"] == cfg.seed
    wa = load_checkpoint(models / "best.pt")["model"]
    wb = load_checkpoint(other / "best.pt")["model"]
    assert any(not torch.equal(wa[k], wb[k]) for k in wa), "the seed did not change the model"

    metrics = evaluate.run(cfg, "dynamic", vocab, models, evals)
    assert json.loads((evals / "metrics.json").read_text()) == metrics
    n_val = len(load_splits(cfg)[0]["val"])
    preds = {}
    for d in (evals, evals / "seeds" / "8"):
        names = {p.name for p in d.iterdir()}
        assert {"metrics.json", "predictions.jsonl", "val_predictions.jsonl"} <= names
        val = [json.loads(x) for x in (d / "val_predictions.jsonl").read_text().splitlines()]
        assert len(val) == n_val and set(val[0]) == {
            "qid",
            "vid",
            "query",
            "topk",
            "route",
            "gt",
            "duration",
        }
        preds[d] = (d / "predictions.jsonl").read_text()
    assert preds[evals] != preds[evals / "seeds" / "8"]

    only = tmp_path / "only"
    assert train.run(cfg, "dynamic", vocab, only, resume=False, seed=8)["seed"] == 8
    assert not (only / "best.pt").exists() and (only / "seeds" / "8" / "best.pt").exists()
    wc = load_checkpoint(only / "seeds" / "8" / "best.pt")["model"]
    assert all(torch.equal(wb[k], wc[k]) for k in wb)
    with pytest.raises(ConfigError, match="--seed 9"):
        train.run(cfg, "dynamic", vocab, only, resume=False, seed=9)
    with pytest.raises(ConfigError, match="--seed 9"):
        evaluate.run(cfg, "dynamic", vocab, models, evals, seed=9)
    # the primary directory now belongs to seed 8: resuming seed 7's run there is refused
    swapped = Config.model_validate({**raw, "seeds": [8, 7]})
    with pytest.raises(CheckpointError, match="trained with seed 7, not 8"):
        train.run(swapped, "dynamic", vocab, models, resume=True, seed=8)
    torch.set_num_threads(before)


@pytest.mark.slow
def test_parallel_seeds_train_in_processes_like_one_after_the_other(
    workspace: Path, tmp_path: Path
) -> None:
    """train.parallel_seeds=2: two seeds train at once, the first in this process and the
    others in a spawned one (round robin: 7 and 9 here, 8 there), each with threads // 2
    threads, into the same layout and to the same weights as sequential 1-thread runs (compared
    within float tolerance: another process may pick other kernels)."""
    raw = make_cfg(workspace, epochs=1).model_dump(mode="json")
    raw["seeds"] = [7, 8, 9]
    vocab = workspace / "vocab"
    before = torch.get_num_threads()
    sequential = Config.model_validate({**raw, "train": {**raw["train"], "threads": 1}})
    train.run(sequential, "dynamic", vocab, tmp_path / "seq", resume=False)
    par_cfg = {**raw["train"], "threads": 2, "parallel_seeds": 2}
    parallel = Config.model_validate({**raw, "train": par_cfg})
    assert train.seed_threads(parallel, 2) == 1
    torch.set_num_threads(3)  # any count: the run must put this process's own back
    summary = train.run(parallel, "dynamic", vocab, tmp_path / "par", resume=False)
    assert torch.get_num_threads() == 3
    torch.set_num_threads(before)
    assert summary["seed"] == 7
    for rel in ("best.pt", "seeds/8/best.pt", "seeds/9/best.pt"):
        a = load_checkpoint(tmp_path / "seq" / rel)["model"]
        b = load_checkpoint(tmp_path / "par" / rel)["model"]
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=f"{rel}: {k}")
    seq8 = load_checkpoint(tmp_path / "seq" / "seeds/8/best.pt")["model"]
    seq7 = load_checkpoint(tmp_path / "seq" / "best.pt")["model"]
    assert any(not torch.allclose(seq7[k], seq8[k]) for k in seq7)  # the seeds differ
