"""MLflow run links in the report against a real tracking server (and a dead one)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow_server import MlflowServer, mlflow_env, mlflow_server  # noqa: F401
from report_fixture import report_config as _cfg
from report_fixture import write_fixture
from waiting import held_port

from dynpath.steps import report

pytestmark = pytest.mark.slow


def test_links_ask_the_server_for_the_experiment(
    mlflow_env: MlflowServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_env.url)
    exp = client.create_experiment(f"report-links-{tmp_path.name}")
    run_id = client.create_run(exp).info.run_id
    eval_dir, models_dir = write_fixture(tmp_path, run_ids={"dynamic": run_id}, experiment_id=None)
    report.run(_cfg(), eval_dir, models_dir, tmp_path / "r")  # URI from MLFLOW_TRACKING_URI
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert s["variants"]["dynamic"]["mlflow_url"] == (
        f"{mlflow_env.url}/#/experiments/{exp}/runs/{run_id}"
    )
    assert s["variants"]["sum_fusion"]["mlflow_url"] is None  # unknown run: no link, no error
    assert f'href="{mlflow_env.url}/#/experiments/{exp}/runs/{run_id}"' in (
        (tmp_path / "r" / "report.html").read_text()
    )


def test_unreachable_server_gives_ids_without_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    sock = held_port()  # bound, never listening: refused, and no one else can take it
    request.addfinalizer(sock.close)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{sock.getsockname()[1]}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    eval_dir, models_dir = write_fixture(tmp_path, experiment_id=None)
    result = report.run(_cfg(), eval_dir, models_dir, tmp_path / "r")
    assert result["variants"] == 10
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert all(v["mlflow_url"] is None and v["mlflow_run_id"] for v in s["variants"].values())
