"""`make run`'s combination: the DVC DAG with MLflow tracking ON, against a real MLflow server.

The other DVC tests (test_dvc_repro.py) and the kfp.local tests run the tiny profile with tracking
off; the tracking tests (test_tracking_server.py) drive the tracker in-process. Here `dvc repro`
of the tiny profile runs every stage as its own `dynpath` process, with `tracking.enabled: true`
and `tracking.uri` on the session's server (``mlflow_server.py``), and the server must then hold,
for every variant: one FINISHED run (its params, every epoch's training loss as in history.json,
the test metrics evaluate wrote) and one registered model version made from that run.

Registry naming: a variant's version is found by its run id, not by model name, so the test holds
whether every variant is a version of ``dynpath-<dataset>`` or each variant registers its own
``dynpath-<dataset>-<variant>`` (with ``dynpath-<dataset>`` holding ``dynamic``).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import mlflow_server as fixtures
import pytest
import yaml
from dvc_project import RAN, copy_repo, run, set_params
from mlflow_server import MlflowServer

from dynpath.profiles import VARIANT_NAMES, use_profile

mlflow_server = fixtures.mlflow_server
mlflow_env = fixtures.mlflow_env

pytestmark = pytest.mark.slow

NAME = "dvc-tracked"  # data.name: the experiment and registered model(s) of this test alone
# As the kfp.local test: three variants (a selector, a single module, a fusion) keep the suite's
# time down; DYNPATH_TEST_ALL_VARIANTS=1 runs all ten of the tiny profile.
SOME_VARIANTS = ["dynamic", "exploitation_only", "sum_fusion"]
VARIANTS = list(VARIANT_NAMES) if os.environ.get("DYNPATH_TEST_ALL_VARIANTS") else SOME_VARIANTS


def _tracked_repo(dest: Path, server: MlflowServer) -> Path:
    repo = copy_repo(dest)
    use_profile("tiny", repo / "params.yaml")
    for stale in ("dvc.lock", "mlflow.db"):
        (repo / stale).unlink(missing_ok=True)
    variants = yaml.safe_load((repo / "params.yaml").read_text())["variants"]
    set_params(
        repo,
        **{
            "data/name": NAME,
            "tracking/enabled": True,
            "tracking/uri": server.url,
            "variants": {v: variants[v] for v in VARIANTS},
        },
    )
    run(repo, "git", "init", "-q", "-b", "main")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-q", "-m", "tiny, tracked")
    return repo


@pytest.mark.timeout(2400)  # 10 DVC stages as processes: beyond the 900 s default under load
def test_dvc_repro_with_tracking_logs_every_variant_and_registers_it(
    mlflow_env: MlflowServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    # the stages run with MLflow's own HTTP retries (mlflow_env turns them off for outage tests):
    # a slow answer on a loaded machine is not an outage, and the runs must end "ok"
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT")
    repo = _tracked_repo(tmp_path / "repo", mlflow_env)
    t0 = time.perf_counter()
    out = run(repo, "dvc", "repro")
    print(f"\ntiny dvc repro with tracking on {mlflow_env.url}: {time.perf_counter() - t0:.1f} s")
    ran = set(RAN.findall(out))
    assert {f"train@{v}" for v in VARIANTS} <= ran and "report" in ran, out[-3000:]
    assert not (repo / "mlflow.db").exists()  # everything went to the server

    client = MlflowClient(mlflow_env.url, registry_uri=mlflow_env.url)
    experiment = client.get_experiment_by_name(f"dynpath-{NAME}")
    assert experiment is not None
    runs = {r.info.run_id: r for r in client.search_runs([experiment.experiment_id])}
    assert sorted(r.info.run_name for r in runs.values()) == sorted(VARIANTS)

    registered: dict[str, Any] = {}
    for variant in VARIANTS:
        summary = json.loads((repo / "outputs/models" / variant / "train_summary.json").read_text())
        history = json.loads((repo / "outputs/models" / variant / "history.json").read_text())
        metrics = json.loads((repo / "outputs/eval" / variant / "metrics.json").read_text())
        run_id = summary["mlflow_run_id"]
        assert run_id in runs, (variant, run_id)
        assert metrics["mlflow_run_id"] == run_id  # evaluate logged into the training run
        r = runs[run_id]
        assert r.info.status == "FINISHED" and r.info.run_name == variant
        assert r.data.params["variant"] == variant
        assert r.data.tags["tracking_status"] == "ok", r.data.tags
        losses = sorted(client.get_metric_history(run_id, "epoch_train_loss"), key=lambda m: m.step)
        assert [(m.step, m.value) for m in losses] == [
            (e["epoch"], e["train_loss"]) for e in history
        ]
        for key in ("r1_iou0.5", "r1_iou0.7", "miou"):
            assert r.data.metrics[f"test_{key}"] == metrics[key], (variant, key)
        # the version made from this run, whatever the registered model is called
        (version,) = client.search_model_versions(f"run_id = '{run_id}'")
        assert version.name in (f"dynpath-{NAME}", f"dynpath-{NAME}-{variant}"), version.name
        registered[variant] = version
    print(
        "registered: "
        + ", ".join(f"{v} -> {mv.name} v{mv.version}" for v, mv in sorted(registered.items()))
    )
    # each registered model's challenger alias points at one of the versions made here
    for name in {mv.name for mv in registered.values()}:
        challenger = client.get_model_version_by_alias(name, "challenger")
        assert any(
            mv.name == name and mv.version == challenger.version for mv in registered.values()
        )
    # a second repro runs nothing and logs nothing more
    again = run(repo, "dvc", "repro")
    assert not RAN.findall(again), again[-3000:]
    assert len(client.search_runs([experiment.experiment_id])) == len(VARIANTS)
