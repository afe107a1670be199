"""A real ``dynpath train`` whose MLflow tracking server is stopped mid-run and restarted.

tests/test_tracking_server.py covers the tracker against a stopped server with a training-loop
double, and a registry promotion that fails half-way (the champion stays). This test puts the
real training step (CLI child process, tracking on, model logged and registered at the end) in
front of the real server (``mlflow_server.py``): the server is killed (SIGKILL) as soon as
training starts (the run exists, its params are logged), every epoch is trained and logged into
the void, the server comes back while the step retries its final flush, and the run must end
FINISHED with every epoch's metrics (same values as history.json), its params, a degraded
tracking status with nothing dropped, and the model registered as the new challenger.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import mlflow_server as fixtures
import pytest
from mlflow_server import MlflowServer
from reliability_workspace import VARIANT, build_workspace, child_env, cli_command
from waiting import wait_for_line, wait_until

mlflow_server = fixtures.mlflow_server
mlflow_env = fixtures.mlflow_env

pytestmark = pytest.mark.slow

NAME = "reliability-outage"
STARTED = "training dynamic (dynamic)"  # logged after the run's params and inputs
EPOCHS = 8


def _history(model_dir: Path) -> list[dict[str, Any]]:
    try:
        return list(json.loads((model_dir / "history.json").read_text()))
    except (OSError, json.JSONDecodeError):
        return []


def _crash(server: MlflowServer) -> None:
    """SIGKILL the server's process group: an outage without a graceful shutdown."""
    proc, server.proc = server.proc, None
    assert proc is not None
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    server.wait_port_closed()


def test_training_survives_a_tracking_server_outage(
    mlflow_env: MlflowServer, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    server = mlflow_env
    tracking = {"enabled": True, "log_system_metrics": False}
    ws = build_workspace(tmp_path, data={"name": NAME}, tracking=tracking, train={"epochs": EPOCHS})
    model_dir = ws.model_dir(VARIANT)
    env = child_env(
        MLFLOW_TRACKING_URI=server.url,
        MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
        MLFLOW_HTTP_REQUEST_TIMEOUT="5",
        DYNPATH_TRACKING_PROBE_SECONDS="1",
        DYNPATH_TRACKING_CLOSE_RETRIES="120",  # the final flush waits up to ~2 min for the server
    )
    log = tmp_path / "train.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            cli_command(ws.train_argv()), cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=fh
        )
    outage: dict[str, float] = {}
    try:
        # the run exists and its params are logged once training starts: take the server away
        wait_for_line(proc, log, STARTED)
        # paused while the server goes: the outage starts at a known point of the training
        # (right after its start), however long the crash takes on a loaded machine
        proc.send_signal(signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            _crash(server)
            outage["stopped_at_epoch"] = len(_history(model_dir))
        finally:
            proc.send_signal(signal.SIGCONT)
        # training goes on while the server is down (no stall on the dead endpoint)
        wait_until(
            lambda: len(_history(model_dir)) == EPOCHS,
            f"all {EPOCHS} epochs in history.json during the outage",
            proc=proc,
            log=log,
        )
        outage["epochs_during_outage"] = len(_history(model_dir)) - outage["stopped_at_epoch"]
        outage["training_seconds_during_outage"] = round(time.monotonic() - t0, 1)
    finally:
        t1 = time.monotonic()
        server.start()  # the child is now retrying its final flush
        outage["restart_seconds"] = round(time.monotonic() - t1, 1)
    out, _ = proc.communicate(timeout=400)
    assert proc.returncode == 0, log.read_text(errors="replace")[-4000:]
    print(f"\nMLflow outage during training: {outage}")
    assert outage["epochs_during_outage"] >= 2

    summary = json.loads(out)
    history = _history(model_dir)
    assert len(history) == EPOCHS and summary["mlflow_run_id"]
    client = MlflowClient(server.url)
    run = client.get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["variant"] == VARIANT and run.data.params["train.epochs"] == str(EPOCHS)
    metric = sorted(
        client.get_metric_history(run.info.run_id, "epoch_train_loss"), key=lambda m: m.step
    )
    assert [(m.step, m.value) for m in metric] == [(e["epoch"], e["train_loss"]) for e in history]
    assert run.data.metrics["val_r1_iou0.5"] == summary["best_val"]["r1_iou0.5"]
    tags = run.data.tags
    assert tags["tracking_status"] == "degraded" and tags["tracking_dropped_calls"] == "0"
    assert int(tags["tracking_failed_calls"]) >= 1
    # The "missing registration" of session 1 (and of a CI run in session 2) was this client:
    # a tracker that ran earlier in this process (test_engine_steps) left MLflow's
    # MLFLOW_REGISTRY_URI on its own SQLite store, so ``MlflowClient(url)`` read that registry.
    # The tracker now restores MLflow's global URIs and their variables on close.
    names = {m.name for m in client.search_registered_models()}
    assert f"dynpath-{NAME}" in names, (summary, tags, log.read_text(errors="replace")[-6000:])
    version = client.get_model_version_by_alias(f"dynpath-{NAME}", "challenger")
    assert version.run_id == run.info.run_id
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"history.json", "train_summary.json"} <= artifacts
