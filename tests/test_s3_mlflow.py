"""MLflow logging artifacts to S3 through a real tracking server, with basic auth on, as
deployed by infra/k8s (``mlflow server --app-name basic-auth --artifacts-destination s3://``)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from s3_server import BIN, CREDENTIALS, s3_endpoint, s3_env, stop, wait_http  # noqa: F401
from waiting import port_from_log

pytestmark = pytest.mark.slow

ADMIN_PASSWORD = "test-only-" + uuid.uuid4().hex  # generated per run, never a real credential


@pytest.fixture(scope="module")
def mlflow_server(
    s3_endpoint: str,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, str]]:
    """(tracking URL, bucket) of an authenticated MLflow server storing artifacts in S3."""
    from dynpath import s3

    tmp = tmp_path_factory.mktemp("mlflow")
    bucket = f"mlflow-{uuid.uuid4().hex[:12]}"
    auth = tmp / "basic_auth.ini"
    auth.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{tmp / 'auth.db'}\n"
        "admin_username = admin\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "auth_cache_ttl_seconds = 60\n"  # one password hash per client, not per request
    )
    env = {
        **os.environ,
        **CREDENTIALS,
        "MLFLOW_S3_ENDPOINT_URL": s3_endpoint,
        "AWS_ENDPOINT_URL": s3_endpoint,
        "MLFLOW_AUTH_CONFIG_PATH": str(auth),
        "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": uuid.uuid4().hex,
    }
    with pytest.MonkeyPatch.context() as mp:
        for key in ("AWS_ENDPOINT_URL", *CREDENTIALS):
            mp.setenv(key, env[key])
        s3.ensure_bucket(bucket)
    log = tmp / "server.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [
                str(BIN / "mlflow"),
                "server",
                "--app-name",
                "basic-auth",
                "--backend-store-uri",
                f"sqlite:///{tmp / 'mlflow.db'}",
                "--artifacts-destination",
                f"s3://{bucket}/mlflow",
                "--host",
                "127.0.0.1",
                "--port",
                "0",  # the OS picks a free port, the server binds it and logs which
                "--workers",
                "1",
            ],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port_from_log(proc, log, timeout=180)}"
        wait_http(url + "/health", timeout=180, proc=proc)
        yield url, bucket
    except Exception:
        print(log.read_text()[-4000:])
        raise
    finally:
        stop(proc)


def _get(url: str, user: str | None = None, password: str | None = None) -> int:
    req = urllib.request.Request(url)
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def test_server_requires_authentication(mlflow_server: tuple[str, str]) -> None:
    url, _ = mlflow_server
    api = f"{url}/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default"
    assert _get(api) == 401
    assert _get(api, "admin", "wrong") == 401
    assert _get(api, "admin", ADMIN_PASSWORD) == 200


def test_run_artifacts_land_in_s3(
    mlflow_server: tuple[str, str],
    s3_env: dict[str, str],  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mlflow

    from dynpath import s3

    url, bucket = mlflow_server
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)
    mlflow.set_tracking_uri(url)
    try:
        mlflow.set_experiment("dynpath-s3-test")
        report = tmp_path / "metrics.json"
        report.write_text(json.dumps({"r1_iou0.5": 42.0}))
        with mlflow.start_run() as run:
            mlflow.log_metric("r1_iou0.5", 42.0)
            mlflow.log_artifact(str(report), artifact_path="eval")
        # the artifact is in the bucket (the server proxies it: clients need no S3 access)...
        keys = [
            o["Key"]
            for o in s3.client().list_objects_v2(Bucket=bucket, Prefix="mlflow/")["Contents"]
        ]
        assert any(k.endswith(f"{run.info.run_id}/artifacts/eval/metrics.json") for k in keys), keys
        # ...and comes back through the tracking server
        back = mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path="eval/metrics.json", dst_path=str(tmp_path / "dl")
        )
        assert json.loads(Path(back).read_text()) == {"r1_iou0.5": 42.0}
        got = mlflow.get_run(run.info.run_id)
        assert got.data.metrics["r1_iou0.5"] == 42.0
        assert got.info.artifact_uri.startswith("mlflow-artifacts:")
    finally:
        mlflow.set_tracking_uri(None)
