"""Fast tests of tracking helpers, the resilience core and the Localizer (no server, no network)."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from mlflow_server import (
    FEATURE_DIM,
    make_feature_store,
    make_model_dir,
    make_video,
    tiny_config,
)
from waiting import FakeClock

from dynpath.errors import DataError, DynpathError
from dynpath.inference.inputs import store_duration
from dynpath.inference.localizer import Localizer, format_spans
from dynpath.tracking.mlflow_env import resolve_tracking_uri
from dynpath.tracking.params import numeric_metrics, safe_params
from dynpath.tracking.protocol import NullTracker
from dynpath.tracking.provenance import digest_files
from dynpath.tracking.registry import higher_is_better
from dynpath.tracking.resilience import Resilient
from dynpath.tracking.tracker import start_tracking

QUERY = "A person opens the door."

# --------------------------------------------------------------------------- helpers


def test_safe_params_flattens_and_never_logs_secrets() -> None:
    params = safe_params(
        {
            "model": {"dim": 16, "kernels": (3, 5)},
            "pipeline": {"mlflow_secret": "k8s-secret-name", "s3_token": "abc"},
            "db_password": "hunter2",
            "uri": "postgresql://user:pa55@db:5432/mlflow",
            "long": "x" * 10_000,
            "none": None,
        }
    )
    assert params["model.dim"] == "16"
    assert params["model.kernels"] == "[3, 5]"
    assert "pipeline.mlflow_secret" not in params and "pipeline.s3_token" not in params
    assert "db_password" not in params
    assert "pa55" not in params["uri"] and params["uri"] == "postgresql://***@db:5432/mlflow"
    assert len(params["long"]) == 6000
    assert params["none"] == ""


def test_numeric_metrics_flatten_nested_and_skip_non_numbers() -> None:
    out = numeric_metrics(
        {"miou": 41.5, "routes": {"exploration": {"share": 0.25}}, "split": "val", "ok": True}
    )
    assert out == {"miou": 41.5, "routes.exploration.share": 0.25}


def test_digest_files_is_sha256_of_content_and_sensitive_to_one_byte(tmp_path: Path) -> None:
    a, b = tmp_path / "feats.h5", tmp_path / "ann.txt"
    a.write_bytes(b"\x00\x01" * 3_000_000)  # > several chunks
    b.write_text("v1 0.0 2.0##a person opens the door\n")
    d1 = digest_files([a, b], chunk=1 << 16)
    expected = hashlib.sha256(b"feats.h5\0" + a.read_bytes() + b"ann.txt\0" + b.read_bytes())
    assert d1 == expected.hexdigest()
    assert digest_files([a, b]) == d1  # chunk size does not matter
    b.write_text("v1 0.0 2.1##a person opens the door\n")
    assert digest_files([a, b]) != d1
    assert digest_files([tmp_path]) == digest_files([b, a])  # a directory: sorted file names


def test_env_tracking_uri_wins_over_params(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tiny_config()
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(cfg) == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert resolve_tracking_uri(cfg) == "http://tracking.example:5000"


def test_disabled_tracking_yields_a_null_tracker(tmp_path: Path) -> None:
    cfg = tiny_config().model_copy(
        update={"tracking": tiny_config().tracking.model_copy(update={"enabled": False})}
    )
    with start_tracking(cfg, "dynamic", "dynamic") as tracker:
        assert isinstance(tracker, NullTracker) and tracker.run_id is None
        tracker.log_params({"a": 1})
        tracker.log_metrics({"loss": 1.0}, step=0)
        tracker.log_artifact(tmp_path)
        assert tracker.log_model(tmp_path) is None
        assert tracker.register_model(None) is None
    assert not (tmp_path / "mlflow.db").exists()


def test_tracker_puts_mlflows_global_uris_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run in-process must not leave MLflow's global URIs (module state AND the environment
    variables MLflow's setters write) pointing at its store: a later ``MlflowClient(url)`` read
    that store's registry (a test-order failure seen in CI), and a later tracker took the
    leaked ``MLFLOW_TRACKING_URI`` over its own ``tracking.uri``."""
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_utils

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    cfg = tiny_config()
    uri = f"sqlite:///{tmp_path / 'mine.db'}"
    cfg = cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"uri": uri})})
    mlflow.set_registry_uri(None)
    try:
        with start_tracking(cfg, "dynamic", "dynamic", close_retries=1) as tracker:
            assert tracker.run_id and mlflow.get_tracking_uri() == uri
            assert mlflow.get_registry_uri() == uri
        assert registry_utils._registry_uri is None  # unset again, as it was
        assert "MLFLOW_TRACKING_URI" not in os.environ
        assert "MLFLOW_REGISTRY_URI" not in os.environ
        # a user's own environment survives a run
        theirs = f"sqlite:///{tmp_path / 'theirs.db'}"
        monkeypatch.setenv("MLFLOW_REGISTRY_URI", theirs)
        with start_tracking(cfg, "dynamic", "dynamic", close_retries=1):
            assert mlflow.get_registry_uri() == uri
        assert os.environ["MLFLOW_REGISTRY_URI"] == theirs
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)


def test_higher_is_better_by_metric_name() -> None:
    assert higher_is_better("val_r1_iou0.5") and higher_is_better("val_miou")
    assert not higher_is_better("val_loss") and not higher_is_better("latency_ms")


# --------------------------------------------------------------------------- resilience core


class FakeServer:
    """Records calls; raises ConnectionError while down (a transient failure)."""

    def __init__(self) -> None:
        self.up = True
        self.received: list[int] = []
        self.attempts = 0

    def call(self, value: int) -> None:
        self.attempts += 1
        if not self.up:
            raise ConnectionError("connection refused")
        self.received.append(value)


def test_resilient_buffers_in_order_and_probes_sparingly(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock().patch(monkeypatch, "dynpath.tracking.resilience")
    server = FakeServer()
    sink = Resilient("http://fake", probe_interval=15.0)
    assert sink.submit("m", lambda: server.call(0))
    server.up = False
    with caplog.at_level(logging.WARNING):
        for i in range(1, 6):
            assert not sink.submit("m", lambda i=i: server.call(i))
    # one attempt opened the circuit; the next four were buffered without touching the server
    assert server.attempts == 2
    assert len(sink.pending) == 5 and sink.down and sink.degraded
    assert sum("unreachable" in r.message for r in caplog.records) == 1  # warned once
    server.up = True
    clock.advance(14.9)
    assert not sink.submit("m", lambda: server.call(6))  # probe not due yet: buffered
    assert server.attempts == 2  # ... without touching the server
    clock.advance(0.1)
    assert sink.submit("m", lambda: server.call(7))  # probe due: flush, then send
    assert server.received == list(range(8))  # nothing lost, original order
    assert not sink.down and sink.recoveries == 1 and sink.dropped_calls == 0
    assert abs(sink.outage_seconds - 15.0) < 1e-6  # the outage as the (fake) clock saw it
    assert sink.failed_calls == 6


def test_resilient_drops_permanent_errors_and_counts_what_never_arrived() -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    def rejected() -> None:
        raise MlflowException("param changed", error_code=INVALID_PARAMETER_VALUE)

    server = FakeServer()
    sink = Resilient("http://fake", probe_interval=0.0)
    assert not sink.submit("log_params", rejected)
    assert not sink.down and sink.dropped_calls == 1 and not sink.pending  # not retried
    server.up = False
    sink.submit("m", lambda: server.call(1))
    sink.submit("m", lambda: server.call(2))
    assert len(sink.pending) == 2
    assert sink.drop_pending() == 2 and sink.dropped_calls == 3


# --------------------------------------------------------------------------- Localizer


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("loc"))


@pytest.fixture(scope="module")
def localizer(model_dir: Path) -> Localizer:
    return Localizer.load(model_dir, device="cpu")


def _feats(t: int = 40, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(t, FEATURE_DIM)).astype(np.float32)


def test_localizer_from_training_dir_returns_ranked_spans_in_seconds(localizer: Localizer) -> None:
    out = localizer.predict(features=_feats(), query=QUERY, duration=30.0, topk=5)
    assert out["query"] == QUERY and out["duration"] == 30.0
    assert out["route"] in ("exploitation", "exploration")
    assert abs(sum(out["route_probs"].values()) - 1.0) < 1e-3
    spans = out["spans"]
    assert len(spans) == 5
    scores = [s["score"] for s in spans]
    assert scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)
    for s in spans:
        assert 0.0 <= s["start"] < s["end"] <= 30.0
        # on the docs/design.md grid of the video's own 40 clips over 30 s (longer than
        # max_len = 16: windows at the clip rate, not 16 averaged bins)
        assert s["start"] / (30.0 / 40) == pytest.approx(round(s["start"] / (30.0 / 40)), abs=1e-3)
    assert out["windows"] == 4  # windows of 16 clips starting at 0, 8, 16, 24
    assert len({(s["start"], s["end"]) for s in spans}) == 5  # distinct moments
    text = format_spans(out)
    assert QUERY in text and f"{spans[0]['start']:.2f}" in text


def test_localizer_without_selector_reports_no_route(tmp_path: Path) -> None:
    loc = Localizer.load(make_model_dir(tmp_path, "sum_fusion"), device="cpu")
    out = loc.predict(features=_feats(), query=QUERY, duration=12.0, topk=1)
    assert out["route"] is None and "route_probs" not in out and len(out["spans"]) == 1


def test_localizer_is_deterministic_and_thread_safe(localizer: Localizer) -> None:
    inputs = [(_feats(20 + 3 * i, seed=i), 10.0 + i) for i in range(3)]
    expected = [localizer.predict(features=f, query=QUERY, duration=d, topk=3) for f, d in inputs]
    results: dict[int, list[dict[str, object]]] = {}
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            results[k] = [
                localizer.predict(features=f, query=QUERY, duration=d, topk=3)
                for f, d in inputs[k % 3 :] + inputs[: k % 3]
            ]
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 4
    for k, got in results.items():
        rotated = expected[k % 3 :] + expected[: k % 3]
        assert got == rotated


def test_localizer_reads_an_hdf5_store_and_estimates_duration(
    localizer: Localizer, tmp_path: Path
) -> None:
    store = make_feature_store(tmp_path / "f.h5", {"vidA": 15, "vidB": 40})
    out = localizer.predict(features=str(store), video_id="vidA", query=QUERY, topk=2)
    assert out["duration"] == pytest.approx(30.0)  # 15 positions x 16 frames / 8 fps
    assert all(s["end"] <= 30.0 for s in out["spans"])
    explicit = localizer.predict(features=store, video_id="vidA", query=QUERY, duration=60.0)
    assert explicit["duration"] == 60.0
    with pytest.raises(DataError, match="no features for video 'nope'"):
        localizer.predict(features=str(store), video_id="nope", query=QUERY)
    assert store_duration({"durations": {"x": 7.5}}, 3, "s", "x") == 7.5


def test_localizer_errors_are_actionable(localizer: Localizer, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="query is empty"):
        localizer.predict(features=_feats(), query="  ", duration=3.0)
    with pytest.raises(DataError, match="no word tokens"):
        localizer.predict(features=_feats(), query="?!", duration=3.0)
    with pytest.raises(DataError, match="need `duration`"):
        localizer.predict(features=_feats(), query=QUERY)
    with pytest.raises(DataError, match="dimension 5, the model expects 12"):
        localizer.predict(features=np.zeros((4, 5)), query=QUERY, duration=3.0)
    with pytest.raises(DataError, match="video file not found"):
        localizer.predict(video=tmp_path / "missing.mp4", query=QUERY)
    with pytest.raises(DynpathError, match="not an MLflow URI"):
        Localizer.load(tmp_path / "nothing-here")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DynpathError, match="neither an MLflow model"):
        Localizer.load(tmp_path / "empty")


@pytest.mark.filterwarnings("ignore:.*An input example was not provided")
def test_pyfunc_directory_wraps_the_same_localizer(
    model_dir: Path, localizer: Localizer, tmp_path: Path
) -> None:
    """save_model locally (no tracking server) -> load both ways -> identical spans."""
    import mlflow
    import pandas as pd

    from dynpath.tracking.pyfunc_model import build_pyfunc_kwargs

    cfg = tiny_config()
    arch, resolved = cfg.variant("dynamic")
    kwargs = build_pyfunc_kwargs(model_dir, None, resolved, "dynamic", arch, tmp_path / "stage")
    assert not (tmp_path / "stage" / "code" / "dynpath" / "__pycache__").exists()
    mlflow.pyfunc.save_model(tmp_path / "pyfunc", **kwargs)
    feats = _feats(33)
    expected = localizer.predict(features=feats, query=QUERY, duration=21.0, topk=3)

    as_dir = Localizer.load(tmp_path / "pyfunc", device="cpu")
    assert as_dir.predict(features=feats, query=QUERY, duration=21.0, topk=3) == expected

    model = mlflow.pyfunc.load_model(str(tmp_path / "pyfunc"))
    frame = pd.DataFrame([{"query": QUERY, "features": feats.tolist(), "duration": 21.0}])
    got = model.predict(frame, params={"topk": 3})
    assert got[0]["spans"] == expected["spans"]  # float32 features survive the JSON-able lists
    assert got[0]["route"] == expected["route"]
    assert [c.name for c in model.metadata.signature.inputs.inputs] == [
        "query",
        "video",
        "video_b64",
        "features",
        "duration",
    ]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*An input example was not provided")
def test_video_file_is_localized_with_the_models_own_backbone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A video in -> I3D features (random init from the config's seed) -> spans in seconds;
    the pyfunc model's ``video`` column takes the same path (under its media root)."""
    import mlflow
    import pandas as pd

    from dynpath.extract import extract_video_features, num_clips
    from dynpath.inference.inputs import video_duration
    from dynpath.tracking.pyfunc_model import build_pyfunc_kwargs

    model_dir = make_model_dir(tmp_path, feature_dim=1024)
    video = make_video(tmp_path / "clip.mp4", frames=40, fps=8)
    loc = Localizer.load(model_dir, device="cpu")
    out = loc.predict(video=video, query=QUERY, topk=3)
    assert out["duration"] == pytest.approx(5.0) and video_duration(video) == pytest.approx(5.0)
    assert all(0.0 <= s["start"] < s["end"] <= 5.0 for s in out["spans"])
    feats = extract_video_features(video, "i3d", loc.cfg.extract, None, "cpu", seed=loc.cfg.seed)
    assert feats.shape == (num_clips(40, 16, 16), 1024)  # 40 frames, window = stride = 16
    assert loc.predict(features=feats, query=QUERY, duration=5.0, topk=3) == out

    arch, resolved = tiny_config().variant("dynamic")
    kwargs = build_pyfunc_kwargs(model_dir, None, resolved, "dynamic", arch, tmp_path / "stage")
    mlflow.pyfunc.save_model(tmp_path / "pyfunc", **kwargs)
    monkeypatch.setenv("DYNPATH_MEDIA_ROOT", str(tmp_path))
    model = mlflow.pyfunc.load_model(str(tmp_path / "pyfunc"))
    got = model.predict(pd.DataFrame([{"query": QUERY, "video": str(video)}]), params={"topk": 3})
    assert got == [out]


@pytest.mark.parametrize("tty", [False, True])
def test_mlflow_artifact_bars_only_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, tty: bool
) -> None:
    """MLflow's artifact upload/download bars are off when stderr is a log, not a terminal;
    a value the user set is kept."""
    import io
    import sys

    from dynpath.tracking.mlflow_env import configure_mlflow_env

    class Stream(io.StringIO):
        def isatty(self) -> bool:
            return tty

    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    monkeypatch.setattr(sys, "stderr", Stream())
    monkeypatch.delenv(key, raising=False)
    configure_mlflow_env()
    assert os.environ.get(key) == (None if tty else "false")
    monkeypatch.setenv(key, "true")
    configure_mlflow_env()
    assert os.environ[key] == "true"
