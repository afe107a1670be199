"""Where MLflow points and how it talks: tracking/registry URIs, names and HTTP timeouts.

Every module that opens an MLflow client (the tracker, the registry, the report, the Localizer's
model download) goes through these, so the rules are the same everywhere: ``MLFLOW_TRACKING_URI``
wins over params.yaml, HTTP retries are seconds not minutes, and MLflow's process-global URIs are
put back exactly as they were after use. No mlflow import at module level (the CLI stays fast).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from dynpath.errors import TrackingError
from dynpath.variants import PAPER_VARIANT

if TYPE_CHECKING:
    from dynpath.config import Config

# Short HTTP retries/timeouts for MLflow's REST client: a dead server must cost seconds, not the
# default ~4 minutes of exponential backoff per call. setdefault: the user's environment wins.
HTTP_ENV_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.2",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}


def experiment_name(cfg: Config) -> str:
    """One experiment per dataset."""
    return f"dynpath-{cfg.data.name}"


def registered_model_name(cfg: Config, variant: str = PAPER_VARIANT) -> str:
    """The registered model a variant's versions go to (docs/design.md, "Model registry").

    ``dynpath-<data.name>`` holds the paper's model (``dynamic``) only, so its ``champion`` can
    only ever be a ``dynamic`` model; each ablation variant has its own registered model
    ``dynpath-<data.name>-<variant>``. One registered model = one variant on one dataset, which
    is what makes "the champion" a like-with-like comparison.
    """
    base = f"dynpath-{cfg.data.name}"
    return base if variant == PAPER_VARIANT else f"{base}-{variant}"


def resolve_tracking_uri(cfg: Config) -> str:
    """``MLFLOW_TRACKING_URI`` wins over params (servers are configured by the environment)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or cfg.tracking.uri


#: The default store of params.yaml (``tracking.uri: sqlite:///mlflow.db``), relative to the
#: project directory: a reader run there with no URI opens it, never creates it.
DEFAULT_STORE_FILE = "mlflow.db"


def existing_store(uri: str | None, what: str) -> str:
    """The tracking URI a reader (``promote``, a ``models:/`` or ``runs:/`` download) may open.

    Never None: MLflow would fall back to its default store and create ``./mlflow.db`` wherever
    the command runs (an existing ``./mlflow.db``, the project's default store, is used). Never
    a SQLite file that does not exist: opening one creates an empty store, so a mistyped URI
    would leave a new database behind and report "no such model". Writers (the trainer's
    tracker) create their store as before.
    """
    if not uri and Path(DEFAULT_STORE_FILE).is_file():
        uri = f"sqlite:///{DEFAULT_STORE_FILE}"  # the project's default store, where it exists
    if not uri:
        raise TrackingError(
            f"{what}: no tracking store; set MLFLOW_TRACKING_URI or run from the project "
            "directory (params.yaml tracking.uri)"
        )
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///").split("?", 1)[0])
        if not path.is_file():
            raise TrackingError(
                f"{what}: tracking store {uri}: no such SQLite file {path} (check the URI; it "
                "is not created)"
            )
    return uri


def configure_mlflow_env() -> None:
    """Apply :data:`HTTP_ENV_DEFAULTS` without overriding what the user set.

    MLflow's own artifact upload/download bars are turned off when stderr is not a terminal
    (``dvc repro``, a pod, CI), as dynpath's bars are: in a log file every redraw is a line.
    """
    for key, value in HTTP_ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    if not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty()):
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


_URI_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


def global_uris() -> tuple[str | None, str | None, dict[str, str | None]]:
    """MLflow's explicitly set global tracking and registry URIs (None = not set), and the two
    environment variables ``set_tracking_uri`` / ``set_registry_uri`` also write.

    They write the environment so that subprocesses inherit the URI; left behind, a later
    tracker in the same process would take that variable over its own ``tracking.uri``
    (the environment wins, :func:`resolve_tracking_uri`). MLflow has no public getter that tells
    "unset" from "defaulted", so this reads the module variables the setters write.
    """
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    return (
        getattr(tracking_utils, "_tracking_uri", None),
        getattr(registry_utils, "_registry_uri", None),
        {k: os.environ.get(k) for k in _URI_ENV},
    )


@contextlib.contextmanager
def mlflow_uris(uri: str | None) -> Iterator[None]:
    """MLflow's global tracking and registry URIs set to ``uri`` inside the block (unchanged
    when ``uri`` is None), and exactly what they were afterwards."""
    import mlflow

    saved = global_uris()
    try:
        if uri:
            mlflow.set_tracking_uri(uri)
            mlflow.set_registry_uri(uri)
        yield
    finally:
        restore_global_uris(saved)


def restore_global_uris(saved: tuple[str | None, str | None, dict[str, str | None]]) -> None:
    import mlflow

    tracking, registry, env = saved
    # None means "not set" to both setters at run time; their annotations omit it
    mlflow.set_tracking_uri(tracking)  # type: ignore[arg-type]
    mlflow.set_registry_uri(registry)  # type: ignore[arg-type]
    for key, value in env.items():  # exactly as before (the setters above write or unset them)
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
