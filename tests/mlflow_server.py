"""A real ``mlflow server`` on loopback for the tracking tests (one process per session).

Import the fixtures into a test module (``from mlflow_server import mlflow_server, mlflow_env``).
The server runs with a SQLite backend and a local artifact root in a session temp dir, on a free
127.0.0.1 port, with ``--workers 1`` and job execution off (about 0.5 GiB, ~12 s to start on an
idle 2-CPU machine). :class:`MlflowServer` can ``stop()`` and ``start()`` again on the same port and
store, which the outage test uses to take the server away in the middle of a run.

The process is started in its own session and stopped by its process-group id (the ``mlflow
server`` launcher spawns a uvicorn child that must go too).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from waiting import port_from_log, wait_until

if TYPE_CHECKING:
    from dynpath.config import Config

BIN = Path(sys.executable).parent
START_TIMEOUT = float(os.environ.get("DYNPATH_TEST_MLFLOW_START_TIMEOUT", "180"))


class MlflowServer:
    """One ``mlflow server`` process bound to a fixed port and store across restarts.

    The first start asks for port 0 and reads the port the server bound from its log (no window
    in which another process could take a port chosen beforehand); restarts bind that port
    again, once the stopped server has freed it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = 0
        self.backend = f"sqlite:///{root / 'mlflow.db'}"
        self.artifacts = root / "artifacts"
        self.log = root / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start_seconds: list[float] = []

    def start(self) -> None:
        exe = BIN / "mlflow"
        env = dict(os.environ)
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        env.pop("MLFLOW_TRACKING_URI", None)
        cmd = [
            str(exe),
            "server",
            "--backend-store-uri",
            self.backend,
            "--artifacts-destination",
            str(self.artifacts),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        t0 = time.monotonic()
        offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(
                cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        if self.port == 0:
            try:
                self.port = port_from_log(self.proc, self.log, offset, timeout=START_TIMEOUT)
            except AssertionError:
                self.stop()
                raise
        self._wait_healthy(t0)
        self.start_seconds.append(time.monotonic() - t0)

    @property
    def url(self) -> str:
        assert self.port, "the server has not started yet"
        return f"http://127.0.0.1:{self.port}"

    def _wait_healthy(self, t0: float) -> None:
        assert self.proc is not None
        while time.monotonic() - t0 < START_TIMEOUT:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"mlflow server exited with {self.proc.returncode}:\n{self.tail()}"
                )
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.25)
        self.stop()
        raise TimeoutError(f"mlflow server not healthy after {START_TIMEOUT}s:\n{self.tail()}")

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL after 15 s; wait until the port is free."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        # children (uvicorn) may outlive the launcher by a moment
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        self.wait_port_closed()

    def wait_port_closed(self, timeout: float = 30) -> None:
        """Wait until nothing listens on the port (a restart binds it again); fail loudly."""
        wait_until(lambda: not self.port_open(), f"port {self.port} freed by the server", timeout)

    def port_open(self) -> bool:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def memory_mib(self) -> float:
        """Resident memory of the server's process group (launcher + uvicorn), MiB."""
        if self.proc is None:
            return 0.0
        import psutil

        try:
            parent = psutil.Process(self.proc.pid)
            procs = [parent, *parent.children(recursive=True)]
            return sum(p.memory_info().rss for p in procs) / 2**20
        except psutil.Error:
            return 0.0

    def tail(self, n: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """The session's MLflow tracking server (a missing mlflow CLI is a broken install: fail)."""
    if not (BIN / "mlflow").exists():
        pytest.fail(f"{BIN / 'mlflow'} missing: mlflow is a required dependency (make setup)")
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    server.start()
    print(
        f"\nmlflow server on {server.url}: started in {server.start_seconds[0]:.1f}s, "
        f"{server.memory_mib():.0f} MiB RSS"
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mlflow_env(mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch) -> MlflowServer:
    """MLFLOW_TRACKING_URI -> the session server (child processes inherit it); short HTTP
    retries so a test of a stopped server does not wait for minutes."""
    if mlflow_server.proc is None:  # a previous test stopped it and failed before restarting
        mlflow_server.start()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    return mlflow_server


# --------------------------------------------------------------------------- a tiny trained model

FEATURE_DIM = 12
WORDS = ["<pad>", "<unk>", "person", "opens", "door", "a", "the", "closes", "window", "sits"]


def tiny_config(name: str = "unit", **model: object) -> Config:
    """A config small enough that a real model builds and runs in milliseconds on CPU."""
    from dynpath.config import Config

    return Config.model_validate(
        {
            "data": {"name": name, "max_len": 16},
            "vocab": {"dim": 8, "embeddings": None},
            "extract": {"backbone": "i3d", "size": 64, "batch_size": 4, "device": "cpu"},
            "model": {
                "dim": 16,
                "heads": 2,
                "lstm_scales": 2,
                "kernels": [3, 5],
                "text_lstm_layers": 1,
                "dropout": 0.0,
                **model,
            },
            "variants": {"dynamic": {}, "sum_fusion": {}},
        }
    )


def make_model_dir(
    root: Path,
    variant: str = "dynamic",
    seed: int = 0,
    name: str = "unit",
    feature_dim: int = FEATURE_DIM,
) -> Path:
    """``root/outputs/models/<variant>/best.pt`` (the trainer's checkpoint format, real model
    code, random weights) and ``root/outputs/vocab``; returns the model directory."""
    import numpy as np
    import torch

    from dynpath.data.vocab import Vocabulary
    from dynpath.engine.checkpoint import make_meta, save_checkpoint
    from dynpath.model.registry import build_model

    cfg = tiny_config(name)
    arch, resolved = cfg.variant(variant)
    vocab_dir = root / "outputs" / "vocab"
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(len(WORDS), 8)).astype(np.float32)
    emb[0] = 0.0
    if not (vocab_dir / "vocab.json").is_file():
        Vocabulary(WORDS, embeddings=emb).save(vocab_dir)
    else:
        emb = Vocabulary.load(vocab_dir).embeddings  # type: ignore[assignment]
    torch.manual_seed(seed)
    model = build_model(arch, resolved, emb, feature_dim)
    model_dir = root / "outputs" / "models" / variant
    model_dir.mkdir(parents=True, exist_ok=True)
    meta = make_meta(variant, arch, resolved.model_dump(mode="json"), feature_dim, len(WORDS))
    save_checkpoint(model_dir / "best.pt", {"meta": meta, "model": model.state_dict()})
    return model_dir


def make_feature_store(
    path: Path, videos: dict[str, int], seed: int = 0, dim: int = FEATURE_DIM
) -> Path:
    """An HDF5 feature store with ``videos`` = {id: positions} of ``dim`` random features
    (fps 8, stride 16: one position = 2 s)."""
    import numpy as np

    from dynpath.data.features import write_features

    rng = np.random.default_rng(seed)
    feats = {v: rng.normal(size=(t, dim)).astype(np.float32) for v, t in videos.items()}
    attrs = {
        "backbone": "i3d",
        "fps": 8.0,
        "window": 16,
        "stride": 16,
        "pretrained": False,
        "weights": None,
    }
    write_features(path, feats, attrs)
    return path


def make_video(path: Path, frames: int = 32, fps: int = 8, seed: int = 0) -> Path:
    """A small real H.264 video (64x64 noise with a moving square): ``frames / fps`` seconds."""
    import numpy as np

    from dynpath.data.synthetic import encode_video

    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 60, size=(frames, 64, 64, 3), dtype=np.uint8)
    for i in range(frames):
        x = (i * 2) % 48
        imgs[i, 20:36, x : x + 16] = (230, 40, 40)
    encode_video(imgs, path, fps)
    return path
