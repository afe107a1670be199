"""A `models:/` model is downloaded once per version into the cache, then reused; an alias is
resolved on every call (a promotion moves it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlflow_server import FEATURE_DIM, make_model_dir, tiny_config

from dynpath.inference.download import cache_dir
from dynpath.inference.localizer import Localizer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:.*An input example was not provided"),
]
NAME = "dynpath-cachetest"


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A sqlite registry with versions 1 and 2 of NAME (different weights); alias champion
    on version 1."""
    import mlflow

    from dynpath.tracking.mlflow_env import mlflow_uris
    from dynpath.tracking.pyfunc_model import build_pyfunc_kwargs

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    arch, resolved = tiny_config().variant("dynamic")
    with mlflow_uris(store):  # the globals (and their variables) put back afterwards
        client = mlflow.MlflowClient()
        # an experiment of this store: the fluent API may still hold another test's active id
        # its artifacts under tmp_path too (the default is ./mlruns of the working directory)
        experiment = client.create_experiment(
            "model-cache", artifact_location=(tmp_path / "artifacts").as_uri()
        )
        for seed in (0, 1):
            model_dir = make_model_dir(tmp_path / f"m{seed}", seed=seed)
            kwargs = build_pyfunc_kwargs(
                model_dir, None, resolved, "dynamic", arch, tmp_path / f"stage{seed}"
            )
            with mlflow.start_run(experiment_id=experiment):
                info = mlflow.pyfunc.log_model(name="model", **kwargs)
            mlflow.register_model(info.model_uri, NAME)
        client.set_registered_model_alias(NAME, "champion", "1")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("DYNPATH_CACHE", str(tmp_path / "cache"))
    return store


def _answer(loc: Localizer) -> dict[str, Any]:
    feats = np.random.default_rng(0).normal(size=(12, FEATURE_DIM)).astype(np.float32)
    return loc.predict(features=feats, query="a person opens the door", duration=12.0)


def test_second_load_does_not_download_again(
    registry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    calls: list[str] = []
    real = mlflow.artifacts.download_artifacts

    def counting(*args: Any, **kwargs: Any) -> str:
        calls.append(str(kwargs.get("artifact_uri")))
        return real(*args, **kwargs)

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", counting)
    first = Localizer.load(f"models:/{NAME}@champion", device="cpu")
    second = Localizer.load(f"models:/{NAME}@champion", device="cpu")
    by_version = Localizer.load(f"models:/{NAME}/1", device="cpu")
    assert calls == [f"models:/{NAME}/1"]  # one download for the three loads of version 1
    assert _answer(first) == _answer(second) == _answer(by_version)
    entries = sorted(p.name for p in (cache_dir() / "models" / NAME).iterdir())
    assert len(entries) == 1 and entries[0].startswith("v1-")  # no temp left beside it

    # the alias moves (a promotion): resolved again, version 2 downloaded once
    mlflow.MlflowClient(registry, registry).set_registered_model_alias(NAME, "champion", "2")
    promoted = Localizer.load(f"models:/{NAME}@champion", device="cpu")
    assert calls == [f"models:/{NAME}/1", f"models:/{NAME}/2"]
    assert _answer(promoted) != _answer(first)
    Localizer.load(f"models:/{NAME}@champion", device="cpu")
    assert len(calls) == 2


def test_unknown_alias_is_one_clear_error(registry: str) -> None:
    from dynpath.errors import DynpathError

    with pytest.raises(DynpathError, match=f"cannot download model models:/{NAME}@nope"):
        Localizer.load(f"models:/{NAME}@nope", device="cpu")


def test_an_unchanged_registry_is_not_opened_again(
    registry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once resolved, a models:/ load from an unwritten SQLite registry opens no MLflow client;
    any write to the registry (a promotion) makes the next load resolve again."""
    import mlflow

    first = Localizer.load(f"models:/{NAME}@champion", device="cpu")
    opened: list[str] = []
    real_client = mlflow.MlflowClient

    def spying(*args: Any, **kwargs: Any) -> Any:
        opened.append("client")
        return real_client(*args, **kwargs)

    monkeypatch.setattr(mlflow, "MlflowClient", spying)
    again = Localizer.load(f"models:/{NAME}@champion", device="cpu")
    assert opened == [] and _answer(again) == _answer(first)

    real_client(registry, registry).set_registered_model_alias(NAME, "champion", "2")
    promoted = Localizer.load(f"models:/{NAME}@champion", device="cpu")
    assert opened and _answer(promoted) != _answer(first)  # resolved (and downloaded) again
    after = len(opened)
    Localizer.load(f"models:/{NAME}@champion", device="cpu")
    assert len(opened) == after  # remembered again, against the promoted registry


def test_a_cached_load_in_a_fresh_interpreter_imports_no_mlflow(registry: str) -> None:
    import subprocess
    import sys

    Localizer.load(f"models:/{NAME}@champion", device="cpu")
    code = (
        "import sys; from dynpath.inference.localizer import Localizer; "
        f"Localizer.load('models:/{NAME}@champion', device='cpu'); "
        "print('mlflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_damaged_resolution_index_is_resolved_again(registry: str) -> None:
    first = Localizer.load(f"models:/{NAME}@champion", device="cpu")
    (cache_dir() / "resolved.json").write_text("{not json", encoding="utf-8")
    again = Localizer.load(f"models:/{NAME}@champion", device="cpu")
    assert _answer(again) == _answer(first)
    assert (cache_dir() / "resolved.json").read_text(encoding="utf-8").startswith("{\n")


def test_a_promotion_is_seen_even_with_the_files_size_and_mtime_put_back(
    registry: str,
) -> None:
    """A write within the file system's mtime granularity that keeps the size (coarse-mtime
    file systems) still changes SQLite's header: the alias is resolved again."""
    import os

    import mlflow

    first = Localizer.load(f"models:/{NAME}@champion", device="cpu")
    db = Path(registry.removeprefix("sqlite:///"))
    before = db.stat()
    mlflow.MlflowClient(registry, registry).set_registered_model_alias(NAME, "champion", "2")
    os.utime(db, ns=(before.st_atime_ns, before.st_mtime_ns))
    promoted = Localizer.load(f"models:/{NAME}@champion", device="cpu")
    assert _answer(promoted) != _answer(first)


def test_the_fingerprint_sees_a_same_size_write_with_its_mtime_put_back(tmp_path: Path) -> None:
    """The header alone tells an in-place write apart (no MLflow: a bare SQLite file)."""
    import os
    import sqlite3

    from dynpath.inference.download import _store_fingerprint

    db = tmp_path / "r.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE t (v INTEGER)")
        con.execute("INSERT INTO t VALUES (1)")
    store = f"sqlite:///{db}"
    before, st = _store_fingerprint(store), db.stat()
    with sqlite3.connect(db) as con:
        con.execute("UPDATE t SET v = 2")
    os.utime(db, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert db.stat().st_size == st.st_size and db.stat().st_mtime_ns == st.st_mtime_ns
    assert _store_fingerprint(store) != before
