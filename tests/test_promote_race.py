"""Two promotions at once end on the better version (issue 26): ``promote`` reads the champion,
decides and moves the alias under a lock held in the tracking store itself, so the second one
compares with what the first crowned. A real SQLite store, two threads with their own clients;
the decision of the worse candidate is slowed so that, without the lock, both read the old
champion and the worse one writes the alias last."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from dynpath.tracking import registry

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

NAME, METRIC = "dynpath-race", "val_r1_iou0.5"


def _store(tmp_path: Path) -> str:
    """A store with champion v1 (0.5) and two candidates, v2 (0.7) and v3 (0.6)."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri, registry_uri=uri)
    exp = client.create_experiment("race", artifact_location=(tmp_path / "art").as_uri())
    client.create_registered_model(NAME)
    for value in (0.5, 0.7, 0.6):
        run = client.create_run(exp)
        client.log_metric(run.info.run_id, METRIC, value)
        client.set_terminated(run.info.run_id)
        client.create_model_version(
            NAME,
            source=(tmp_path / "art" / "model").as_uri(),
            run_id=run.info.run_id,
            tags={"variant": "dynamic", "dataset": "race"},
        )
    client.set_registered_model_alias(NAME, registry.CHAMPION, "1")
    return uri


@pytest.mark.slow  # real promote processes racing
def test_concurrent_promotions_end_on_the_better_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    uri = _store(tmp_path)
    decide = registry._decide

    def slow_decide(candidate: str, *args: Any) -> tuple[str, str]:
        time.sleep({"2": 0.2, "3": 1.5}[candidate])  # the worse one writes last without a lock
        return decide(candidate, *args)

    monkeypatch.setattr(registry, "_decide", slow_decide)
    results: dict[str, dict[str, Any]] = {}
    errors: list[BaseException] = []

    def promote(version: str) -> None:
        try:
            client = MlflowClient(uri, registry_uri=uri)
            results[version] = registry.promote(
                client, NAME, version, METRIC, variant="dynamic", dataset="race"
            )
        except BaseException as err:  # reported below, with the thread's name
            errors.append(err)

    threads = [threading.Thread(target=promote, args=(v,)) for v in ("3", "2")]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join(60)
    assert not errors, errors
    client = MlflowClient(uri, registry_uri=uri)
    assert str(client.get_model_version_by_alias(NAME, registry.CHAMPION).version) == "2"
    # v3 went first and was crowned over v1, then v2 beat it (compared with v3, not v1)
    assert results["2"]["previous_champion"] == "3" and results["2"]["decision"] == "promoted"
    names = {m.name for m in client.search_registered_models()}
    assert names == {NAME}  # the lock is gone


@pytest.mark.slow  # real promote processes racing
def test_a_lock_left_by_a_dead_promote_is_broken(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    uri = _store(tmp_path)
    client = MlflowClient(uri, registry_uri=uri)
    client.create_registered_model(NAME + registry.LOCK_SUFFIX)  # a promote killed mid-way
    lock = registry.promotion_lock(client, NAME, timeout=0.5)
    with pytest.raises(registry.TrackingError, match="holds the registry lock"), lock:
        pass
    time.sleep(0.3)
    with registry.promotion_lock(client, NAME, timeout=5.0, stale=0.2):
        assert NAME + registry.LOCK_SUFFIX in {m.name for m in client.search_registered_models()}
    assert {m.name for m in client.search_registered_models()} == {NAME}


def test_a_failed_download_leaves_no_temp_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``download_model`` of a URI that fails (here a missing file:// model; models:/, runs:/
    and s3:// go through the same code) removes its temporary directory."""
    import tempfile

    from dynpath.errors import DynpathError
    from dynpath.inference.download import download_model

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    with pytest.raises(DynpathError, match="cannot download model"):
        download_model((tmp_path / "missing" / "model").as_uri())
    assert list(tmp.iterdir()) == []
