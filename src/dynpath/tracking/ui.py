"""`python -m dynpath.tracking.ui` (run by `make mlflow-ui`): the MLflow UI's address of the
training runs, one line per training experiment of the store.

MLflow 3's UI (3.17) has two workflows, "GenAI" and "Model training", switched in its sidebar. The
workflow, not the experiment's ``mlflow.experimentKind`` tag, picks an experiment's view, and it
defaults to GenAI: ``#/experiments/<id>`` (the address MLflow prints at the end of a run, and the
experiment list's link) opens the GenAI overview (traces, token usage). The UI reads the workflow
from the ``workflowType`` query parameter (what its own switch writes into the address) before the
browser's remembered choice, so ``#/experiments/<id>/runs?workflowType=machine_learning`` opens on
the runs table whatever the browser last chose. There is no server option for it. The experiment
still carries the kind tag (``mlflow_run.EXPERIMENT_KIND``): older 3.x UIs go by the tag.

It reads the SQLite store itself, read-only (``make mlflow-ui`` serves ``mlflow.db``): opening
it through MLflow's client costs an mlflow import (half a minute on a busy 2-core machine) and
would migrate or create the store. With no ``mlflow.db`` yet it prints the experiment list's
address and says that training logs the runs.
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path

from dynpath.errors import TrackingError, error_message
from dynpath.tracking.mlflow_run import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG

#: The query parameter that opens the UI's "Model training" workflow (its runs table).
RUNS_VIEW_QUERY = "workflowType=machine_learning"
DEFAULT_URL = "http://127.0.0.1:5000"
DEFAULT_STORE = "mlflow.db"  # the store `make mlflow-ui` serves (params.yaml tracking.uri)


def runs_url(base_url: str, experiment_id: str | None = None) -> str:
    """The UI address of an experiment's runs table (the experiment list without an id), in the
    model-training workflow."""
    base = base_url.rstrip("/")
    if experiment_id is None:
        return f"{base}/#/experiments?{RUNS_VIEW_QUERY}"
    return f"{base}/#/experiments/{experiment_id}/runs?{RUNS_VIEW_QUERY}"


def training_experiments(store: Path) -> list[tuple[str, str]]:
    """(name, id) of the store's active experiments tagged as model training (dynpath's,
    :func:`dynpath.tracking.mlflow_run.experiment_id`), oldest first."""
    query = (
        "SELECT e.name, e.experiment_id FROM experiments e JOIN experiment_tags t"
        " ON t.experiment_id = e.experiment_id"
        " WHERE e.lifecycle_stage = 'active' AND t.key = ? AND t.value = ?"
        " ORDER BY e.experiment_id"
    )
    try:
        with contextlib.closing(
            sqlite3.connect(f"{store.resolve().as_uri()}?mode=ro", uri=True)
        ) as db:
            rows = db.execute(query, (EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)).fetchall()
    except sqlite3.Error as err:
        raise TrackingError(f"{store}: not an MLflow SQLite store ({err})") from err
    return [(str(name), str(eid)) for name, eid in rows]


def lines(store: Path, base_url: str) -> list[str]:
    """What ``make mlflow-ui`` prints before the server starts."""
    if not store.is_file():
        return [
            f"MLflow UI: {runs_url(base_url)}",
            f"  no {store} yet: `make run` (dvc repro) logs the training runs there",
        ]
    found = training_experiments(store)
    if not found:
        return [f"MLflow UI: {runs_url(base_url)}  (no training experiment in {store})"]
    out = ["MLflow UI, the training runs (#/experiments/<id> alone opens the GenAI overview):"]
    out += [f"  {name}: {runs_url(base_url, eid)}" for name, eid in found]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dynpath.tracking.ui",
        description="print the MLflow UI's address of the training runs (make mlflow-ui)",
    )
    parser.add_argument("--store", type=Path, default=Path(DEFAULT_STORE), help="the SQLite store")
    parser.add_argument("--url", default=DEFAULT_URL, help="where the UI listens")
    args = parser.parse_args(argv)
    try:
        text = lines(args.store, args.url)
    except Exception as err:
        code, message = error_message(err)
        print(f"dynpath mlflow-ui: error: {message}", file=sys.stderr)
        return code
    print("\n".join(text), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
