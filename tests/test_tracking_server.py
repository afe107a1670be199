"""Integration tests against a REAL ``mlflow server`` process (SQLite backend, loopback port).

One server serves the whole session (fixture in ``mlflow_server.py``). Each test uses its own
dataset name, hence its own experiment and registered model, so the tests are independent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import mlflow_server as fixtures
import pytest
from compare import assert_same_answer, assert_same_answers
from mlflow_server import (
    MlflowServer,
    make_feature_store,
    make_model_dir,
    make_video,
    tiny_config,
)
from waiting import FakeClock, wait_until

from dynpath.config import Config
from dynpath.errors import TrackingError
from dynpath.inference.localizer import Localizer
from dynpath.tracking.provenance import digest_files
from dynpath.tracking.registry import promote
from dynpath.tracking.tracker import start_tracking

# the session's server and the per-test environment pointing at it (see mlflow_server.py)
mlflow_server = fixtures.mlflow_server
mlflow_env = fixtures.mlflow_env

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:.*An input example was not provided"),
]

QUERY = "the person opens a door"
REPO = Path(__file__).resolve().parents[1]


def _client(server: MlflowServer) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(server.url, registry_uri=server.url)


def _resolved(name: str, variant: str = "dynamic") -> tuple[str, Config]:
    return tiny_config(name).variant(variant)


# --------------------------------------------------------------------------- logging


def test_run_logs_config_metrics_artifacts_dataset_and_system_metrics(
    mlflow_env: MlflowServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")
    arch, cfg = _resolved("srv-log")
    feats = make_feature_store(tmp_path / "feats.h5", {"v1": 10})
    ann = tmp_path / "train.txt"
    ann.write_text("v1 0.0 4.0##the person opens a door\n")
    report = tmp_path / "metrics.json"
    report.write_text(json.dumps({"r1_iou0.5": 12.5}))
    vocab = make_model_dir(tmp_path).parents[1] / "vocab"

    with start_tracking(cfg, "dynamic", arch) as tracker:
        for epoch in range(3):
            tracker.log_metrics({"train_loss": 2.0 - epoch, "val": {"miou": 10.0 * epoch}}, epoch)
        tracker.log_artifact(report, "eval")
        tracker.log_artifact(vocab, "vocab")
        digest = tracker.log_dataset("srv-log", paths=[feats, ann], context="train")
        tracker.log_params({"extra": {"note": "hello", "api_token": "never-logged"}})
        run_id = tracker.run_id
        probe = _client(mlflow_env)
        wait_until(  # the monitor thread samples every second: wait for its first sample
            lambda: any(k.startswith("system/") for k in probe.get_run(run_id).data.metrics),
            "a system-metrics sample on the server",
            timeout=120,
            poll=0.25,
        )
        assert tracker.summary()["tracking_status"] == "ok"

    client = _client(mlflow_env)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "dynamic"
    assert client.get_experiment(run.info.experiment_id).name == "dynpath-srv-log"
    params = run.data.params
    assert params["variant"] == "dynamic" and params["arch"] == arch
    assert params["model.dim"] == "16" and params["model.kernels"] == "[3, 5]"
    assert params["extra.note"] == "hello"
    assert not any("secret" in k or "token" in k for k in params)  # pipeline.mlflow_secret too
    history = client.get_metric_history(run_id, "train_loss")
    assert [(m.step, m.value) for m in history] == [(0, 2.0), (1, 1.0), (2, 0.0)]
    assert run.data.metrics["val.miou"] == 20.0
    assert any(k.startswith("system/") for k in run.data.metrics), sorted(run.data.metrics)
    tags = run.data.tags
    assert tags["tracking_status"] == "ok" and tags["tracking_dropped_calls"] == "0"
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:
        assert tags["mlflow.source.git.commit"] == head.stdout.strip()
    arts = {a.path for a in client.list_artifacts(run_id)}
    assert {"config", "eval", "vocab"} <= arts
    assert {a.path for a in client.list_artifacts(run_id, "vocab")} >= {"vocab/vocab.json"}
    local = client.download_artifacts(run_id, "config/resolved.yaml", str(tmp_path / "dl"))
    import yaml

    resolved = yaml.safe_load(Path(local).read_text())
    assert resolved["variant"] == "dynamic" and resolved["config"]["model"]["dim"] == 16
    (inp,) = run.inputs.dataset_inputs
    assert inp.dataset.name == "srv-log" and digest == digest_files([feats, ann])
    assert inp.dataset.digest == digest[:36] and json.loads(inp.dataset.profile)["sha256"] == digest
    assert {t.key: t.value for t in inp.tags}["mlflow.data.context"] == "train"


def test_failed_training_ends_the_run_failed_and_reraises(mlflow_env: MlflowServer) -> None:
    arch, cfg = _resolved("srv-fail")
    with (
        pytest.raises(RuntimeError, match="diverged"),
        start_tracking(cfg, "dynamic", arch) as tracker,
    ):
        tracker.log_metrics({"train_loss": 1.0}, 0)
        raise RuntimeError("loss diverged")
    assert _client(mlflow_env).get_run(tracker.run_id).info.status == "FAILED"


# --------------------------------------------------------------------------- model + fresh process

FRESH_PROCESS = r"""
import contextlib, io, json, sys
import mlflow, numpy as np, pandas as pd
uri, run_uri, store, feats_file, video, query = sys.argv[1:7]
assert "dynpath" not in sys.modules
model = mlflow.pyfunc.load_model(uri)
feats = np.load(feats_file)
frame = pd.DataFrame([
    {"query": query, "features": feats.tolist(), "duration": 30.0, "video": None},
    {"query": query, "video": video, "features": None, "duration": None},
])
pyfunc = model.predict(frame, params={"topk": 3})
from dynpath.cli import main
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    rc = main(["localize", "--model", uri, "--features", store, "--video-id", "vidA",
               "--query", query, "--topk", "3", "--json"])
from dynpath.inference.localizer import Localizer
by_run = Localizer.load(run_uri).predict(features=feats, query=query, duration=30.0, topk=3)
print("RESULT" + json.dumps({"pyfunc": pyfunc, "cli_rc": rc, "cli": json.loads(buf.getvalue()),
                             "run": by_run}))
"""


def test_model_is_logged_registered_and_predicts_in_a_fresh_process(
    mlflow_env: MlflowServer, tmp_path: Path
) -> None:
    """Features, a feature store (CLI) and a video file (I3D on the fly) -> identical spans."""
    import numpy as np

    arch, cfg = _resolved("srv-model")
    dim = 1024  # the I3D backbone of the model's extract config
    model_dir = make_model_dir(tmp_path, name="srv-model", feature_dim=dim)
    store = make_feature_store(tmp_path / "feats.h5", {"vidA": 15}, dim=dim)
    video = make_video(tmp_path / "clip.mp4", frames=32, fps=8)  # 4 s
    with start_tracking(cfg, "dynamic", arch) as tracker:
        tracker.log_metrics({"val_r1_iou0.5": 30.0}, 0)
        model_uri = tracker.log_model(model_dir, model_dir.parents[1] / "vocab")
        version = tracker.register_model(model_uri)
        run_id = tracker.run_id
    assert model_uri and model_uri.startswith("models:/")
    assert version == "1"
    client = _client(mlflow_env)
    mv = client.get_model_version_by_alias("dynpath-srv-model", "challenger")
    assert mv.version == "1" and mv.run_id == run_id
    assert client.get_run(run_id).data.tags["dynpath.model_uri"] == model_uri

    local = Localizer.load(model_dir, device="cpu")
    feats = np.random.default_rng(3).normal(size=(20, dim)).astype(np.float32)
    np.save(tmp_path / "feats.npy", feats)
    expected = local.predict(features=feats, query=QUERY, duration=30.0, topk=3)
    expected_store = local.predict(features=store, video_id="vidA", query=QUERY, topk=3)
    expected_video = local.predict(video=video, query=QUERY, topk=3)
    assert expected_video["duration"] == 4.0
    assert all(0 <= s["start"] < s["end"] <= 4.0 for s in expected_video["spans"])

    # the served model opens video paths only under its media root (docs/reliability.md)
    env = {**os.environ, "PYTHONPATH": "", "DYNPATH_MEDIA_ROOT": str(tmp_path)}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            FRESH_PROCESS,
            "models:/dynpath-srv-model@challenger",
            f"runs:/{run_id}/model",
            str(store),
            str(tmp_path / "feats.npy"),
            str(video),
            QUERY,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT"))
    got = json.loads(line[len("RESULT") :])
    # another process may pick other kernels: spans exact, scores within a tolerance
    assert_same_answers(got["pyfunc"], [expected, expected_video])
    assert_same_answer(got["run"], expected)
    assert got["cli_rc"] == 0
    assert_same_answer(got["cli"], expected_store)
    assert len(expected["spans"]) == 3


# --------------------------------------------------------------------------- promotion


def _train_version(name: str, root: Path, metric: float | None, seed: int) -> str:
    """A real (tiny) training output logged + registered through the tracker."""
    arch, cfg = _resolved(name)
    model_dir = make_model_dir(root / f"v{seed}", seed=seed, name=name)
    with start_tracking(cfg, "dynamic", arch) as tracker:
        if metric is not None:
            tracker.log_metrics({"val_r1_iou0.5": metric}, 0)
        version = tracker.register_model(tracker.log_model(model_dir))
    assert version is not None
    return version


class FlakyClient:
    """The real client, except that version tags fail after ``ok_tags`` successful writes and
    the alias write fails when ``fail_alias``."""

    def __init__(self, real: Any, ok_tags: int, fail_alias: bool = False) -> None:
        self.real = real
        self.ok_tags = ok_tags
        self.fail_alias = fail_alias

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def set_registered_model_alias(self, *args: Any) -> None:
        from mlflow.exceptions import MlflowException

        if self.fail_alias:
            raise MlflowException("API request failed: server closed the connection")
        self.real.set_registered_model_alias(*args)

    def set_model_version_tag(self, *args: Any) -> None:
        from mlflow.exceptions import MlflowException

        if self.ok_tags <= 0:
            raise MlflowException("API request failed: connection reset by peer")
        self.ok_tags -= 1
        self.real.set_model_version_tag(*args)


def test_promotion_moves_champion_only_on_merit_and_records_why(
    mlflow_env: MlflowServer, tmp_path: Path
) -> None:
    from dynpath.steps import promote as promote_step

    name = "srv-promo"
    model = f"dynpath-{name}"
    cfg = tiny_config(name)
    client = _client(mlflow_env)

    def champion() -> str:
        return str(client.get_model_version_by_alias(model, "champion").version)

    def tags(version: str) -> dict[str, str]:
        return dict(client.get_model_version(model, version).tags)

    v1 = _train_version(name, tmp_path, 30.0, seed=1)
    first = promote_step.run(cfg, None)  # the challenger (v1); no champion yet
    assert first["decision"] == "promoted" and champion() == v1
    assert tags(v1)["compared_to"] == "none" and tags(v1)["promotion_decision"] == "promoted"

    v2 = _train_version(name, tmp_path, 25.0, seed=2)  # worse
    worse = promote_step.run(cfg, None)
    assert worse["decision"] == "rejected" and champion() == v1
    t2 = tags(v2)
    assert t2["promotion_decision"] == "rejected" and t2["compared_to"] == f"v{v1}"
    assert float(t2["candidate_value"]) == 25.0 and float(t2["champion_value"]) == 30.0
    assert "25.0000 <= champion" in t2["promotion_reason"]
    alias = client.get_model_version_by_alias(model, "challenger").version
    assert str(alias) == v2  # the challenger alias stays on the newest version

    v3 = _train_version(name, tmp_path, 35.0, seed=3)  # better
    better = promote_step.run(cfg, v3)
    assert better["decision"] == "promoted" and better["previous_champion"] == v1
    assert champion() == v3 and tags(v3)["compared_to"] == f"v{v1}"
    assert promote_step.run(cfg, v3)["decision"] == "already_champion"
    assert champion() == v3

    # a promotion that fails half-way (server error after the first tag) keeps the champion
    v4 = _train_version(name, tmp_path, 50.0, seed=4)
    with pytest.raises(Exception, match="connection reset"):
        promote(FlakyClient(client, ok_tags=1), model, v4, "val_r1_iou0.5")
    assert champion() == v3
    with pytest.raises(Exception, match="closed the connection"):  # the last step fails
        promote(FlakyClient(client, ok_tags=100, fail_alias=True), model, v4, "val_r1_iou0.5")
    assert champion() == v3
    assert tags(v4)["promotion_decision"] == "failed" and "closed" in tags(v4)["promotion_error"]
    # a candidate whose run never logged the metric is refused, champion untouched
    v5 = _train_version(name, tmp_path, None, seed=5)
    with pytest.raises(TrackingError, match=r"no metric 'val_r1_iou0\.5'"):
        promote_step.run(cfg, v5)
    assert champion() == v3 and "promotion_decision" not in tags(v5)
    # the retried promotion of v4 goes through
    assert promote_step.run(cfg, v4)["decision"] == "promoted" and champion() == v4


# --------------------------------------------------------------------------- outage


def test_tracker_survives_a_server_stopped_mid_run_and_flushes_after_restart(
    mlflow_env: MlflowServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the circuit breaker's clock moves when the test says so: no sleep past the probe interval
    clock = FakeClock().patch(monkeypatch, "dynpath.tracking.resilience")
    arch, cfg = _resolved("srv-outage")
    server = mlflow_env
    losses = [1.0 / (epoch + 1) for epoch in range(6)]
    checkpoints = tmp_path / "ckpt"
    checkpoints.mkdir()
    with start_tracking(cfg, "dynamic", arch, probe_interval=0.5, close_retries=3) as tracker:
        for epoch in range(2):  # the training-loop double: metrics + a checkpoint per epoch
            tracker.log_metrics({"train_loss": losses[epoch]}, epoch)
            (checkpoints / f"epoch{epoch}.pt").write_text("ok")
        server.stop()
        try:
            t0 = time.monotonic()
            for epoch in range(2, 5):
                tracker.log_metrics({"train_loss": losses[epoch]}, epoch)
                (checkpoints / f"epoch{epoch}.pt").write_text("ok")
            tracker.set_tag("outage", "seen")
            stalled = time.monotonic() - t0
            summary = tracker.summary()
            assert summary["tracking_status"] == "degraded"
            assert summary["buffered_calls"] >= 4
        finally:
            server.start()
        tracker.set_tag("restarted", "yes")
        assert tracker.summary()["buffered_calls"] >= 5  # probe not due yet: still buffered
        clock.advance(0.5)  # the probe interval has passed
        tracker.log_metrics({"train_loss": losses[5]}, 5)
        assert tracker.summary()["buffered_calls"] == 0
        run_id = tracker.run_id
    assert stalled < 15, f"training stalled {stalled:.1f}s on a dead server"
    assert sorted(p.name for p in checkpoints.iterdir()) == [f"epoch{i}.pt" for i in range(5)]
    run = _client(server).get_run(run_id)
    assert run.info.status == "FINISHED"
    history = _client(server).get_metric_history(run_id, "train_loss")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == list(
        enumerate(losses)
    )
    tags = run.data.tags
    assert tags["tracking_status"] == "degraded" and tags["outage"] == "seen"
    assert tags["restarted"] == "yes"
    assert int(tags["tracking_failed_calls"]) >= 4 and tags["tracking_dropped_calls"] == "0"

    # the evaluate step resumes the run: same run, no param conflict, the outage stays recorded
    changed = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"batch_size": 7})})
    with start_tracking(changed, "dynamic", arch, resume_run_id=run_id) as again:
        again.log_metrics({"test_miou": 12.0})
        assert again.run_id == run_id
    run = _client(server).get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.metrics["test_miou"] == 12.0
    assert run.data.params["eval.batch_size"] == str(cfg.eval.batch_size)  # first value kept
    assert run.data.tags["tracking_status"] == "degraded"
    assert run.data.tags["tracking_failed_calls"] == tags["tracking_failed_calls"]


def test_resuming_an_unknown_run_starts_a_new_one(mlflow_env: MlflowServer) -> None:
    arch, cfg = _resolved("srv-resume")
    with start_tracking(cfg, "dynamic", arch, resume_run_id="0" * 32) as tracker:
        tracker.log_metrics({"loss": 1.0}, 0)
    assert tracker.run_id and tracker.run_id != "0" * 32
    run = _client(mlflow_env).get_run(tracker.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["tracking_status"] == "ok"


# --------------------------------------------------------------------------- default store


def test_default_store_is_a_local_sqlite_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No server: cfg.tracking.uri = sqlite:///mlflow.db in the project, artifacts beside it."""
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    arch, cfg = _resolved("local")
    model_dir = make_model_dir(tmp_path, name="local")
    with start_tracking(cfg, "dynamic", arch) as tracker:
        tracker.log_metrics({"val_r1_iou0.5": 1.0}, 0)
        version = tracker.register_model(tracker.log_model(model_dir))
    assert version == "1" and (tmp_path / "mlflow.db").is_file()
    assert (tmp_path / "mlartifacts").is_dir()
    client = MlflowClient("sqlite:///mlflow.db")
    assert client.get_run(tracker.run_id).info.status == "FINISHED"
    loc = Localizer.load("models:/dynpath-local@challenger", device="cpu")
    assert loc.variant == "dynamic"
