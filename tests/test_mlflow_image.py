"""The MLflow server image built and run for real (issue 27, item 4): `infra/docker/build.sh
mlflow` then the server in its container on a host port, its runs in a SQLite file on a volume
mounted from the host: /health and the UI page answer, an experiment created through the REST
API lands in that file, and the server runs as a non-root user.

Slow and opt-in like tests/test_container_run.py (DYNPATH_CONTAINER_TESTS=1, an engine that
runs containers); the image is built once when the engine lacks it (DYNPATH_MLFLOW_IMAGE names
another tag to test).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_container_run import DOCKER, ENGINE, _engine_env, _image_exists, _writable_dir
from test_container_run import pytestmark as container_marks

pytestmark = container_marks


@pytest.fixture(scope="session")
def mlflow_image() -> str:
    """DYNPATH_MLFLOW_IMAGE, else dynpath-mlflow:3.17.2, built by build.sh if absent."""
    tag = os.environ.get("DYNPATH_MLFLOW_IMAGE", "dynpath-mlflow:3.17.2")
    if not _image_exists(tag):
        env = dict(_engine_env(), TAG=tag)
        subprocess.run([str(DOCKER / "build.sh"), "mlflow"], check=True, env=env)
    assert _image_exists(tag), f"{tag} is missing after the build"
    return tag


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str, data: dict[str, str] | None = None) -> tuple[int, str]:
    body = None if data is None else json.dumps(data).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status), resp.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return int(err.code), err.read().decode(errors="replace")


def serve(image: str, store: Path, timeout: float = 120.0) -> Iterator[str]:
    """Start the server from ``image`` (its own entry point, our arguments) with ``store``
    mounted at /data; yield its URL once /health answers, stop and remove it afterwards.
    ``-p PORT:PORT`` with the same port inside: right with a bridge and with the host network."""
    port = _free_port()
    name = f"dynpath-mlflow-test-{port}"
    cmd = [str(ENGINE), "run", "-d", "--rm", "--name", name, "-p", f"{port}:{port}"]
    cmd += ["-v", f"{store}:/data", image]
    cmd += ["--host", "0.0.0.0", "--port", str(port), "--workers", "1"]
    cmd += ["--backend-store-uri", "sqlite:////data/mlflow.db"]
    cmd += ["--default-artifact-root", "/data/artifacts"]
    subprocess.run(cmd, check=True, capture_output=True, env=_engine_env(), timeout=60)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if _get(f"{url}/health")[0] == 200:
                    break
            except OSError:
                pass
            logs = subprocess.run(
                [str(ENGINE), "logs", name], capture_output=True, text=True, env=_engine_env()
            )
            if logs.returncode != 0 or time.monotonic() > deadline:
                raise AssertionError(f"the server never answered /health: {logs.stderr[-2000:]}")
            time.sleep(1)
        yield url
    finally:
        stop = [str(ENGINE), "rm", "-f", name]
        subprocess.run(stop, capture_output=True, env=_engine_env(), timeout=60)


@pytest.fixture(scope="module")
def server(mlflow_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    store = _writable_dir(tmp_path_factory.mktemp("mlflow") / "data")
    for url in serve(mlflow_image, store):
        yield {"url": url, "store": str(store)}


def test_health_and_the_ui_page_answer(server: dict[str, str]) -> None:
    assert _get(f"{server['url']}/health") == (200, "OK")
    status, page = _get(f"{server['url']}/")
    assert status == 200 and "<title>MLflow</title>" in page, page[:500]


def test_runs_are_kept_in_the_sqlite_file_on_the_volume(server: dict[str, str]) -> None:
    status, body = _get(
        f"{server['url']}/api/2.0/mlflow/experiments/create", {"name": "container-test"}
    )
    assert status == 200, body
    experiment_id = json.loads(body)["experiment_id"]
    db = Path(server["store"]) / "mlflow.db"
    assert db.is_file() and db.stat().st_uid == 10001  # written by the image's user
    status, body = _get(
        f"{server['url']}/api/2.0/mlflow/experiments/get-by-name?experiment_name=container-test"
    )
    assert status == 200 and json.loads(body)["experiment"]["experiment_id"] == experiment_id


def test_a_planted_fault_fails_the_checks(mlflow_image: str, tmp_path: Path) -> None:
    """The UI's files missing from the image: /health still answers, the UI page does not."""
    broken = "localhost/dynpath-mlflow:planted-fault"
    containerfile = tmp_path / "Containerfile"
    ui = "/opt/venv/lib/python3.11/site-packages/mlflow/server/js/build/index.html"
    containerfile.write_text(f"FROM {mlflow_image}\nUSER 0\nRUN rm {ui}\nUSER 10001:10001\n")
    build = [str(ENGINE), "build", "-t", broken, "-f", str(containerfile), str(tmp_path)]
    subprocess.run(build, check=True, capture_output=True, env=_engine_env(), timeout=300)
    try:
        for url in serve(broken, _writable_dir(tmp_path / "data")):
            status, page = _get(f"{url}/")
            assert not (status == 200 and "<title>MLflow</title>" in page)
    finally:
        subprocess.run([str(ENGINE), "rmi", "-f", broken], capture_output=True, env=_engine_env())
