"""`make mlflow-ui` opens the training runs, not MLflow 3's GenAI overview.

MLflow 3.17's UI picks an experiment's view by its own GenAI / Model-training switch (GenAI in a
fresh browser), not by the experiment's ``mlflow.experimentKind`` tag, so ``#/experiments/<id>``
(what MLflow prints after a run, and the experiment list's link) lands on traces and token usage.
``python -m dynpath.tracking.ui`` (run by ``make mlflow-ui``) prints each training experiment's
``#/experiments/<id>/runs?workflowType=machine_learning``; the browser test opens it in headless
Chromium against a real ``mlflow server`` holding a run logged by dynpath's tracker, and opens the
bare address as the control (it does land on the overview). Screenshots in the test's tmp dir.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import mlflow_server as fixtures
import pytest
from mlflow_server import MlflowServer, tiny_config
from system_chromium import chromium  # noqa: F401  (fixture)

from dynpath.errors import TrackingError
from dynpath.tracking import ui
from dynpath.tracking.mlflow_run import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG
from dynpath.tracking.tracker import start_tracking

mlflow_server = fixtures.mlflow_server
mlflow_env = fixtures.mlflow_env

BASE = "http://127.0.0.1:5000"


def _store(path: Path, experiments: list[tuple[int, str, str, str | None]]) -> Path:
    """A SQLite file with MLflow's two experiment tables (the columns the UI helper reads):
    (id, name, lifecycle stage, kind tag or None)."""
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE experiments (experiment_id INTEGER PRIMARY KEY, name TEXT, "
            "lifecycle_stage TEXT)"
        )
        db.execute("CREATE TABLE experiment_tags (key TEXT, value TEXT, experiment_id INTEGER)")
        for eid, name, stage, kind in experiments:
            db.execute("INSERT INTO experiments VALUES (?, ?, ?)", (eid, name, stage))
            if kind is not None:
                db.execute(
                    "INSERT INTO experiment_tags VALUES (?, ?, ?)", (EXPERIMENT_KIND_TAG, kind, eid)
                )
    return path


def test_printed_addresses_are_the_training_experiments_runs(tmp_path: Path) -> None:
    store = _store(
        tmp_path / "mlflow.db",
        [
            (0, "Default", "active", None),
            (3, "dynpath-tacos", "active", EXPERIMENT_KIND),
            (1, "dynpath-synthetic", "active", EXPERIMENT_KIND),
            (2, "dynpath-old", "deleted", EXPERIMENT_KIND),
            (4, "chatbot", "active", "genai_development"),
        ],
    )
    lines = ui.lines(store, BASE + "/")
    assert lines[1:] == [
        f"  dynpath-synthetic: {BASE}/#/experiments/1/runs?workflowType=machine_learning",
        f"  dynpath-tacos: {BASE}/#/experiments/3/runs?workflowType=machine_learning",
    ]


def test_no_store_yet_is_the_experiment_list_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "mlflow.db"
    assert ui.main(["--store", str(store), "--url", BASE]) == 0
    out = capsys.readouterr().out
    assert f"{BASE}/#/experiments?workflowType=machine_learning" in out
    assert "make run" in out and not store.exists()
    empty = _store(tmp_path / "empty.db", [(0, "Default", "active", None)])
    assert "no training experiment" in ui.lines(empty, BASE)[0]


def test_a_file_that_is_not_a_store_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "mlflow.db"
    bad.write_text("not a database\n")
    with pytest.raises(TrackingError, match="not an MLflow SQLite store"):
        ui.training_experiments(bad)
    assert ui.main(["--store", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(bad) in err
    assert bad.read_text() == "not a database\n"


@pytest.mark.slow
def test_the_printed_address_opens_the_runs_table_in_chromium(
    mlflow_env: MlflowServer,
    chromium: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlflow import MlflowClient
    from playwright.sync_api import sync_playwright

    # the run must get there (not an outage test): room for a server on a loaded machine
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    arch, cfg = tiny_config("ui-runs").variant("dynamic")
    with start_tracking(cfg, "dynamic", arch) as tracker:
        tracker.log_metrics({"loss": 1.0}, 0)
    client = MlflowClient(mlflow_env.url)
    exp = client.get_experiment_by_name("dynpath-ui-runs")
    assert exp.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.run_name == "dynamic"
    printed = dict(
        line.strip().split(": ", 1)
        for line in ui.lines(mlflow_env.root / "mlflow.db", mlflow_env.url)[1:]
    )
    url = printed["dynpath-ui-runs"]
    assert url == f"{mlflow_env.url}/#/experiments/{exp.experiment_id}/runs?{ui.RUNS_VIEW_QUERY}"

    def open_page(browser: Any, address: str) -> Any:
        page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
        page.set_default_timeout(90_000)  # the UI's bundle on a busy 2-core machine
        page.goto(address)
        return page

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = open_page(browser, url)
            page.get_by_role("link", name="dynamic", exact=True).wait_for()  # the run's name
            page.screenshot(path=str(tmp_path / "runs.png"))
            assert page.get_by_role("heading", name="Runs", exact=True).is_visible()
            assert page.get_by_role("heading", name="Overview", exact=True).count() == 0
            assert "/overview" not in page.url
            # the control, in a fresh browser context: the experiment's bare address is the
            # GenAI overview, without the run (what the printed address is for)
            bare = open_page(browser, f"{mlflow_env.url}/#/experiments/{exp.experiment_id}")
            bare.get_by_role("heading", name="Overview", exact=True).wait_for()
            bare.screenshot(path=str(tmp_path / "bare.png"))
            assert "/overview" in bare.url
            assert bare.get_by_role("link", name="dynamic", exact=True).count() == 0
        finally:
            browser.close()
    assert (tmp_path / "runs.png").stat().st_size > 10_000
