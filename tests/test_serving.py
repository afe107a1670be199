"""``mlflow models serve`` of a registered dynpath model, tested against the real server process.

A tiny model (real model code, random weights, the I3D backbone's 1024-d features) is logged and
registered in a local SQLite MLflow store, then served by ``mlflow models serve -m
models:/dynpath-serve/1 --env-manager local`` on a port taken from the OS, with a media root
(``DYNPATH_MEDIA_ROOT``) and a 1 MB upload limit (``DYNPATH_MAX_VIDEO_BYTES``). The test waits on
the server's ``/ping``, not on sleeps. One server answers every case:

- the good requests (features, a base64 video, a media-root path) answer 200 with spans equal to
  the in-process Localizer's;
- every ``serve`` case of tests/data/bad_inputs.yaml answers its HTTP status with a short JSON
  ``message``: no ``stack_trace``, no "Traceback", no server path (the store, the model's
  artifacts, the media root, the upload directory, site-packages);
- a path outside the media root is refused with the same answer whether or not it exists.

Also here: ``dynpath localize --model models:/...`` leaves no temporary directory behind.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from mlflow_server import make_feature_store, make_model_dir, make_video, tiny_config

CORPUS = yaml.safe_load(
    (Path(__file__).parent / "data" / "bad_inputs.yaml").read_text(encoding="utf-8")
)
# issue 26's third round: the other request forms (csv, inputs, instances) and wrapped base64
CORPUS["serve"] += yaml.safe_load(
    (Path(__file__).parent / "data" / "bad_inputs_round3_serve.yaml").read_text(encoding="utf-8")
)["serve"]
BIN = Path(sys.executable).parent
NAME = "dynpath-serve"
QUERY = "the person opens the door"
DIM = 1024  # the I3D backbone's features: videos are localized with the model's own backbone
START_TIMEOUT = float(os.environ.get("DYNPATH_TEST_SERVE_START_TIMEOUT", "300"))
MAX_VIDEO_BYTES = 1_000_000

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Served:
    url: str
    root: Path  # everything the server owns (store, artifacts, media root) lives under it
    media: Path
    tracking_uri: str
    video: Path
    log: Path


def _register(root: Path) -> tuple[str, Path]:
    """Log + register the tiny model in a SQLite store under ``root``; returns the store URI
    and the model directory."""
    import mlflow

    from dynpath.tracking.mlflow_env import mlflow_uris
    from dynpath.tracking.pyfunc_model import build_pyfunc_kwargs

    model_dir = make_model_dir(root / "train", feature_dim=DIM)
    arch, resolved = tiny_config().variant("dynamic")
    kwargs = build_pyfunc_kwargs(model_dir, None, resolved, "dynamic", arch, root / "stage")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with mlflow_uris(uri):
        experiment = mlflow.create_experiment("serve", artifact_location=str(root / "artifacts"))
        with mlflow.start_run(experiment_id=experiment):
            mlflow.pyfunc.log_model(name="model", registered_model_name=NAME, **kwargs)
    return uri, model_dir


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    if not (BIN / "mlflow").exists():
        pytest.fail(f"{BIN / 'mlflow'} missing: mlflow is a required dependency (make setup)")
    root = tmp_path_factory.mktemp("serve")
    uri, _ = _register(root)
    media = root / "media"
    media.mkdir()
    video = make_video(media / "clip.mp4", frames=40, fps=8)
    (media / "notes.txt").write_text("not a video\n")
    (media / "escape.mp4").symlink_to("/etc/hostname")
    port = free_port()
    env = dict(os.environ)
    env.update(
        MLFLOW_TRACKING_URI=uri,
        DYNPATH_MEDIA_ROOT=str(media),
        DYNPATH_MAX_VIDEO_BYTES=str(MAX_VIDEO_BYTES),
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        # the server execs `uvicorn` by name: this environment's, not whatever PATH finds
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    log = root / "serve.log"
    cmd = [
        str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{NAME}/1",
        "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1",
    ]  # fmt: skip
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=root
        )
    url = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow models serve exited {proc.returncode}:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(url + "/ping", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() - t0 > START_TIMEOUT:
                pytest.fail(f"not ready after {START_TIMEOUT}s:\n{log.read_text()[-4000:]}")
            time.sleep(0.25)
        print(f"\nmlflow models serve ready in {time.monotonic() - t0:.1f}s")
        yield Served(url, root, media, uri, video, log)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def invoke(
    served: Served, body: str | bytes, content_type: str = "application/json"
) -> tuple[int, str]:
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(
        served.url + "/invocations", data=data, headers={"Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(req, timeout=300) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _features(seed: int = 0, t: int = 12, dim: int = DIM) -> list[list[float]]:
    return np.random.default_rng(seed).normal(size=(t, dim)).round(4).tolist()


def _value(value: Any, served: Served) -> Any:
    """Stand-ins of the YAML rows: $feats, $feats5 (wrong dimension), $huge, $video_b64,
    $b64:TEXT, $random_b64, $big_b64, $media (the server's media root)."""
    if not isinstance(value, str) or not value.startswith("$"):
        return value
    if value == "$feats":
        return _features()
    if value == "$feats5":
        return _features(dim=5)
    if value == "$huge":
        return np.full((12, DIM), 3e38).tolist()
    if value == "$video_b64":
        return base64.b64encode(served.video.read_bytes()).decode()
    if value == "$video_b64_wrapped":  # what the `base64` tool prints: 76-column lines
        return base64.encodebytes(served.video.read_bytes()).decode()
    if value == "$video_b64_crlf":
        return base64.encodebytes(served.video.read_bytes()).decode().replace("\n", "\r\n")
    if value.startswith("$b64:"):
        return base64.b64encode(value[5:].encode()).decode()
    if value == "$random_b64":
        return base64.b64encode(np.random.default_rng(3).bytes(5000)).decode()
    if value == "$big_b64":
        return base64.b64encode(bytes(MAX_VIDEO_BYTES + 10)).decode()
    if value.startswith("$media"):
        return str(served.media) + value[6:]
    raise AssertionError(f"unknown stand-in {value}")


def request_body(spec: dict[str, Any], served: Served) -> tuple[str, str]:
    """The request's body and content type: a raw ``body``, or ``row`` (``rows`` times) in the
    request ``form`` (records, split, inputs, instances or csv)."""
    if "body" in spec:
        return str(spec["body"]), spec.get("content_type", "application/json")
    row = {k: _value(v, served) for k, v in spec["row"].items()}
    rows = [row] * int(spec.get("rows", 1))
    form = spec.get("form", "records")
    if form == "csv":
        import csv
        import io

        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(row))
        writer.writeheader()
        for r in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()})
        return out.getvalue(), "text/csv"
    payload: dict[str, Any] = {
        "records": {"dataframe_records": rows},
        "split": {
            "dataframe_split": {"columns": list(row), "data": [list(r.values()) for r in rows]}
        },
        "inputs": {"inputs": {k: [r[k] for r in rows] for k in row}},
        "instances": {"instances": rows},
    }[form]
    if spec.get("params"):
        payload["params"] = spec["params"]
    return json.dumps(payload), "application/json"


def server_paths(served: Served) -> list[str]:
    import mlflow

    return [
        str(served.root),
        str(Path(mlflow.__file__).resolve().parents[1]),  # site-packages
        str(Path(tempfile.gettempdir()) / "dynpath-upload-"),
    ]


@pytest.mark.parametrize("spec", CORPUS["serve"], ids=[c["id"] for c in CORPUS["serve"]])
def test_served_model_case(spec: dict[str, Any], served: Served) -> None:
    status, text = invoke(served, *request_body(spec, served))
    assert status == spec["status"], text[-3000:]
    body = json.loads(text)
    if status == 200:
        assert re.search(spec["message"], json.dumps(body)), text[-2000:]
        return
    assert "stack_trace" not in body and "message" in body, sorted(body)
    message = body["message"]
    assert "Traceback" not in text and 'File "' not in text, text[-3000:]
    for path in server_paths(served):
        assert path not in text, f"{path} leaked: {text[-2000:]}"
    assert re.search(spec["message"], message), f"{spec['message']!r} not in {message!r}"
    if "dynpath: " in message:  # our part of MLflow's wrapped message is one short line
        ours = message.split("dynpath: ", 1)[1]
        assert "\n" not in ours and len(ours) <= 500, ours


def test_good_requests_answer_the_in_process_spans(served: Served) -> None:
    """Features, a base64 video and a media-root path: 200 and the Localizer's own answer."""
    from dynpath.inference.localizer import Localizer

    loc = Localizer.load(f"models:/{NAME}/1", device="cpu", tracking_uri=served.tracking_uri)
    feats = _features(1)
    expected = loc.predict(features=np.asarray(feats, np.float32), query=QUERY, duration=9.0)
    none = {"video": None, "video_b64": None, "features": None, "duration": None}
    rows = [  # one frame of three kinds of rows: absent cells are None (see pyfunc_model)
        {**none, "query": QUERY, "features": feats, "duration": 9.0},
        {**none, "query": QUERY, "video_b64": _value("$video_b64", served)},
        {**none, "query": QUERY, "video": "clip.mp4"},
    ]
    status, text = invoke(served, json.dumps({"dataframe_records": rows}))
    assert status == 200, text[-3000:]
    got = json.loads(text)["predictions"]

    def bounds(spans: list[dict[str, float]]) -> list[tuple[float, float]]:
        return [(s["start"], s["end"]) for s in spans]

    def scores(spans: list[dict[str, float]]) -> list[float]:
        return [s["score"] for s in spans]

    assert bounds(got[0]["spans"]) == bounds(expected["spans"])
    assert scores(got[0]["spans"]) == pytest.approx(scores(expected["spans"]), rel=1e-4)
    from_video = loc.predict(video=served.video, query=QUERY)
    assert bounds(got[1]["spans"]) == bounds(got[2]["spans"]) == bounds(from_video["spans"])
    assert scores(got[1]["spans"]) == pytest.approx(scores(from_video["spans"]), rel=1e-4)
    assert got[1]["duration"] == pytest.approx(5.0)


def test_paths_outside_the_media_root_get_one_answer(served: Served) -> None:
    """No existence oracle: an existing and a missing file outside the root, a traversal and a
    symlink out of it are refused with the very same answer."""
    answers = set()
    for video in ("/etc/hostname", "/etc/no-such-file", "../../etc/hostname", "escape.mp4"):
        status, text = invoke(
            served, json.dumps({"dataframe_records": [{"query": QUERY, "video": video}]})
        )
        assert status == 400
        answers.add(json.loads(text)["message"].split("Error: ", 1)[-1])
    assert len(answers) == 1, answers


def test_localize_from_the_registry_leaves_no_temp_directory(
    served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """``dynpath localize --model models:/...`` downloads the model into a temp directory and
    removes it: the temp directory holds the same entries before and after (twice in a row)."""
    from dynpath import cli

    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", served.tracking_uri)
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    store = make_feature_store(tmp_path / "f.h5", {"v1": 12}, dim=DIM)
    argv = [
        "localize", "--model", f"models:/{NAME}/1", "--query", QUERY, "--features", str(store),
        "--video-id", "v1", "--device", "cpu", "--json",
    ]  # fmt: skip
    before = sorted(p.name for p in temp.iterdir())
    for _ in range(2):
        assert cli.main(argv) == 0, capsys.readouterr().err[-2000:]
        assert json.loads(capsys.readouterr().out)["spans"]
    leftovers = sorted(p.name for p in temp.iterdir() if p.name not in before)
    assert leftovers == [] or all(n.startswith("dynpath-locks-") for n in leftovers), leftovers
