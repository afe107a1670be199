"""Credentials come only from the environment (Kubernetes secrets in the cluster) and never leave.

With unique credential values set in the environment (AWS keys, MLflow user/password/token, a
database password), nothing dynpath writes may contain them:

(the MLflow user name is set as well; MLflow records it as the owner of the run, by design)

- a real ``dynpath train`` with MLflow tracking on (SQLite store + local artifact root, model
  logged and registered): the tracking database (params, tags, metrics, the registry), every
  artifact, the training outputs and the process's stdout/stderr are searched byte for byte;
  a positive control (a param value that IS logged) proves the search sees what MLflow stores;
- the compiled Kubeflow pipeline YAML: the values are absent and the credential variables are
  wired from Kubernetes secrets (``secretAsEnv``) instead.

The static checks of the images (non-root, no credentials) and of the cluster manifests (MLflow
basic-auth, secrets by reference) are in tests/test_infra_docker.py and tests/test_infra_k8s.py.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from reliability_workspace import REPO, VARIANT, build_workspace, params_dict, run_cli, write_params

from dynpath import cli
from dynpath.kfp.spec import MLFLOW_SECRET_KEYS, S3_SECRET_KEYS

TAG = uuid.uuid4().hex[:12]
SECRETS = {
    "AWS_ACCESS_KEY_ID": f"AKIATEST{TAG.upper()}",
    "AWS_SECRET_ACCESS_KEY": f"aws-secret-{TAG}",
    "MLFLOW_TRACKING_PASSWORD": f"mlflow-password-{TAG}",
    "MLFLOW_TRACKING_TOKEN": f"mlflow-token-{TAG}",
    "PGPASSWORD": f"pg-password-{TAG}",
    "DYNPATH_DB_PASSWORD": f"db-password-{TAG}",
}


# Set too, but an identity rather than a secret: MLflow records the authenticated user as the
# owner of runs and logged models (the ``mlflow.user`` tag), as it would with basic-auth.
IDENTITY = {"MLFLOW_TRACKING_USERNAME": f"alice-{TAG}"}


def _leaks(data: bytes) -> list[str]:
    return [name for name, value in SECRETS.items() if value.encode() in data]


@pytest.mark.slow
def test_a_tracked_training_run_stores_and_prints_no_credentials(tmp_path: Path) -> None:
    tracking = {
        "enabled": True,
        "uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "log_system_metrics": False,
    }
    ws = build_workspace(tmp_path, tracking=tracking, train={"epochs": 1})
    done = run_cli(ws.train_argv(), cwd=tmp_path, **SECRETS, **IDENTITY)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["mlflow_run_id"], summary  # tracking really ran

    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    db = tmp_path / "mlflow.db"
    artifacts = [p for p in files if "mlartifacts" in p.parts]
    assert db.is_file() and artifacts, sorted(str(p) for p in files)[:20]
    # positive control: a logged param value and the run id are visible to this byte search
    assert (
        b"reliability" in db.read_bytes() and summary["mlflow_run_id"].encode() in db.read_bytes()
    )
    assert any(p.name == "MLmodel" for p in artifacts)
    leaks = {str(p.relative_to(tmp_path)): _leaks(p.read_bytes()) for p in files}
    leaks["stdout"] = _leaks(done.stdout.encode())
    leaks["stderr"] = _leaks(done.stderr.encode())
    assert {k: v for k, v in leaks.items() if v} == {}
    # the registered model is code, not a pickle
    assert not [p for p in artifacts if p.suffix in (".pkl", ".pickle", ".joblib")]

    from mlflow import MlflowClient

    client = MlflowClient(tracking["uri"])
    run = client.get_run(summary["mlflow_run_id"])
    logged = json.dumps({"params": run.data.params, "tags": run.data.tags})
    assert run.data.params["variant"] == VARIANT and not _leaks(logged.encode())
    assert not any(k in run.data.params for k in SECRETS)


def _secret_env(platform: dict[str, Any]) -> set[str]:
    """Env vars every executor of the compiled pipeline reads from Kubernetes secrets."""
    out: set[str] = set()
    for executor in platform.values():
        for secret in executor.get("secretAsEnv", []):
            out |= {k["envVar"] for k in secret["keyToEnv"]}
    return out


def test_compiled_pipeline_holds_no_credentials_only_secret_references(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if not (REPO / "pipeline").is_dir():
        pytest.skip("no pipeline/ in this checkout")
    for name, value in {**SECRETS, **IDENTITY}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://bob:{SECRETS['PGPASSWORD']}@mlflow:5000")
    monkeypatch.chdir(REPO)
    out = tmp_path / "pipeline.yaml"
    params = write_params(tmp_path / "params.yaml", params_dict(tmp_path))
    assert cli.main(["--params", str(params), "pipeline", "compile", "--output", str(out)]) == 0
    text = out.read_bytes()
    captured = capsys.readouterr()
    assert _leaks(text) == [] and _leaks((captured.out + captured.err).encode()) == []
    docs = list(yaml.safe_load_all(text))
    platform = next(d for d in docs if "platforms" in d)["platforms"]["kubernetes"]
    assert set(S3_SECRET_KEYS) | set(MLFLOW_SECRET_KEYS) <= _secret_env(
        platform["deploymentSpec"]["executors"]
    )
