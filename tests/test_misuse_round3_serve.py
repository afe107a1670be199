"""Issue 26, third round: what the bad-input corpus cannot express, each with a real process.

- ``mlflow models serve`` with ``DYNPATH_MEDIA_ROOT`` pointing at a file starts, says so in ONE
  log line (no traceback) and refuses video paths with that reason;
- a served model busy with a long request stops within seconds of SIGTERM (measured before:
  19 s for 40 video rows, as long as the request whatever its length), leaving no upload;
- SIGTERM to ``dynpath demo`` removes the models it downloaded into TMPDIR, as Ctrl-C does.

The request forms, the demo's startup checks and the pipeline params are corpus cases
(tests/data/bad_inputs_round3_serve.yaml).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mlflow_server import make_model_dir, make_video, tiny_config
from waiting import wait_until

BIN = Path(sys.executable).parent
NAME = "dynpath-round3"
QUERY = "the person opens the door"
START_TIMEOUT = float(os.environ.get("DYNPATH_TEST_SERVE_START_TIMEOUT", "300"))

pytestmark = pytest.mark.slow


@dataclass
class Store:
    root: Path
    uri: str
    video: Path


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """The tiny model (I3D-sized features) logged and registered in a SQLite store."""
    import mlflow

    from dynpath.tracking.mlflow_env import mlflow_uris
    from dynpath.tracking.pyfunc_model import build_pyfunc_kwargs

    root = tmp_path_factory.mktemp("round3")
    model_dir = make_model_dir(root / "train", feature_dim=1024)
    arch, resolved = tiny_config().variant("dynamic")
    kwargs = build_pyfunc_kwargs(model_dir, None, resolved, "dynamic", arch, root / "stage")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with mlflow_uris(uri):
        experiment = mlflow.create_experiment("r3", artifact_location=str(root / "artifacts"))
        with mlflow.start_run(experiment_id=experiment):
            mlflow.pyfunc.log_model(name="model", registered_model_name=NAME, **kwargs)
    return Store(root, uri, make_video(root / "clip.mp4", frames=40, fps=8))


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(store: Store, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        MLFLOW_TRACKING_URI=store.uri,
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        **extra,
    )
    return env


def wait_for(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    t0 = time.monotonic()
    while True:
        if proc.poll() is not None:
            pytest.fail(f"exited {proc.returncode} before serving:\n{log.read_text()[-4000:]}")
        with (
            contextlib.suppress(OSError, urllib.error.URLError),
            urllib.request.urlopen(url, timeout=2) as resp,
        ):
            if resp.status == 200:
                return
        if time.monotonic() - t0 > START_TIMEOUT:
            pytest.fail(f"not serving after {START_TIMEOUT}s:\n{log.read_text()[-4000:]}")
        time.sleep(0.25)


@contextlib.contextmanager
def serving(store: Store, log: Path, **env: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``mlflow models serve`` of the registered model (its own process group), stopped after."""
    port = free_port()
    cmd = [
        str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{NAME}/1",
        "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1",
    ]  # fmt: skip
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            cmd,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=child_env(store, **env),
            start_new_session=True,
            cwd=store.root,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(url + "/ping", proc, log)
        yield url, proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def invoke(url: str, payload: dict[str, Any], timeout: float = 300) -> tuple[int, str]:
    req = urllib.request.Request(
        url + "/invocations",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_media_root_that_is_a_file_is_one_log_line(store: Store, tmp_path: Path) -> None:
    """The server starts (it crashed with two tracebacks, 85 lines), its log says why in one
    line, video paths are refused with that reason and features still work."""
    media = tmp_path / "media.txt"
    media.write_text("a file, not a directory\n")
    log = tmp_path / "serve.log"
    with serving(store, log, DYNPATH_MEDIA_ROOT=str(media)) as (url, _):
        status, text = invoke(url, {"dataframe_records": [{"query": QUERY, "video": "clip.mp4"}]})
        assert status == 400, text
        message = json.loads(text)["message"]
        assert "media root (DYNPATH_MEDIA_ROOT) is not a directory" in message, message
        assert str(media) not in text and "stack_trace" not in text
        feats = [[0.1] * 1024] * 6
        row = {"query": QUERY, "features": feats, "duration": 3.0}
        status, text = invoke(url, {"dataframe_records": [row]})
        assert status == 200, text[-2000:]
    out = log.read_text()
    assert "Traceback" not in out, out[-4000:]
    lines = [ln for ln in out.splitlines() if "DYNPATH_MEDIA_ROOT" in ln]
    assert lines == [
        f"dynpath: DYNPATH_MEDIA_ROOT={media} is not a directory: this server refuses video paths"
    ], lines


def test_busy_server_stops_within_seconds_of_sigterm(store: Store, tmp_path: Path) -> None:
    """SIGTERM to the server's process group while it works through a long request: every
    process is gone within seconds (not when the request ends), the request is answered 503
    or cut, and its upload directory is removed."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    log = tmp_path / "serve.log"
    b64 = base64.b64encode(store.video.read_bytes()).decode()
    rows = [{"query": QUERY, "video_b64": b64}] * 60  # minutes of CPU work
    answers: list[tuple[int, str]] = []
    with serving(store, log, TMPDIR=str(temp)) as (url, proc):
        client = threading.Thread(
            target=lambda: answers.append(invoke(url, {"dataframe_records": rows})), daemon=True
        )
        client.start()
        wait_until(lambda: any(temp.glob("dynpath-upload-*")), timeout=60, what="the request")
        time.sleep(1.0)
        t0 = time.monotonic()
        os.killpg(proc.pid, signal.SIGTERM)  # the launcher and its uvicorn child
        wait_until(  # the launcher reaped (poll), then no process of the group left
            lambda: proc.poll() is not None and not _group_alive(proc.pid),
            timeout=120,
            what="the process group",
        )
        stopped = time.monotonic() - t0
    client.join(timeout=30)
    print(f"\nbusy server gone {stopped:.1f} s after SIGTERM; answer: {answers[:1]}")
    assert stopped < 15, f"{stopped:.1f} s\n{log.read_text()[-3000:]}"
    assert not answers or answers[0][0] != 200, answers[0][1][:300]
    assert list(temp.glob("dynpath-upload-*")) == []
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def test_sigterm_to_the_demo_removes_its_downloaded_models(store: Store, tmp_path: Path) -> None:
    """A model the page loaded from the registry (downloaded into TMPDIR) is removed when the
    demo is stopped with SIGTERM, as after Ctrl-C (it was left behind, one per model)."""
    pytest.importorskip("gradio")
    temp = tmp_path / "tmp"
    temp.mkdir()
    port = free_port()
    uri = f"models:/{NAME}/latest"  # not a version: downloaded into a temp directory
    code = (
        "from dynpath import demo\n"
        "from dynpath.inference.localizer import Localizer\n"
        f"loaded = Localizer.load({uri!r}, device='cpu')  # as the page's first query does\n"
        f"demo.serve(model={uri!r}, host='127.0.0.1', port={port}, device='cpu')\n"
    )
    log = tmp_path / "demo.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=child_env(store, TMPDIR=str(temp), GRADIO_ANALYTICS_ENABLED="False"),
            cwd=tmp_path,
            start_new_session=True,
        )
    try:
        wait_for(f"http://127.0.0.1:{port}/", proc, log)
        assert list(temp.glob("dynpath-model-*")), sorted(p.name for p in temp.iterdir())
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        print(f"\ndemo gone {time.monotonic() - t0:.1f} s after SIGTERM, exit {proc.returncode}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert list(temp.glob("dynpath-model-*")) == [], log.read_text()[-3000:]
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
