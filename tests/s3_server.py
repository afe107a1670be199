"""A real S3-compatible server on loopback for the tests: moto's server as a subprocess.

Import the fixtures into a test module (``from s3_server import s3_endpoint, s3_env``). The
server starts once per session on a free 127.0.0.1 port; ``s3_env`` points boto3, DVC and
MLflow at it through the standard environment variables, with throwaway credentials.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from waiting import port_from_log

BIN = Path(sys.executable).parent


def wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``url`` until it answers (any HTTP status) or fail with the server's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server for {url} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a moto S3 server running for the whole session."""
    exe = BIN / "moto_server"
    if not exe.exists():
        pytest.skip("moto_server is not installed (pip install 'moto[server]')")
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as fh:  # port 0: the server binds a port the OS picks, then says which
        proc = subprocess.Popen(
            [str(exe), "-H", "127.0.0.1", "-p", "0"], stdout=fh, stderr=subprocess.STDOUT
        )
    try:
        url = f"http://127.0.0.1:{port_from_log(proc, log, timeout=120)}"
        wait_http(url + "/moto-api/", timeout=30, proc=proc)
        yield url
    finally:
        stop(proc)


CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "test-access-key",
    "AWS_SECRET_ACCESS_KEY": "test-secret-key",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The standard S3 variables pointing at the session's server (also for subprocesses)."""
    env = {**CREDENTIALS, "AWS_ENDPOINT_URL": s3_endpoint, "MLFLOW_S3_ENDPOINT_URL": s3_endpoint}
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def bucket(s3_env: dict[str, str]) -> str:
    """A fresh, empty bucket on the session's server."""
    from dynpath import s3

    name = f"test-{uuid.uuid4().hex[:12]}"
    s3.ensure_bucket(name)
    return name


def subprocess_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The current environment (with the fixtures' variables) for a child process."""
    env = dict(os.environ)
    env.update(extra or {})
    return env
