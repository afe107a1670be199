"""Helpers the components call inside their pods (components hold no logic).

- :func:`task_config`: the Config a step gets, with data paths moved into its input artifacts;
- :func:`merge_variant_dirs`: the fan-in of the per-variant artifacts for the report;
- :func:`log_metrics`: a metrics.json into a KFP ``Metrics`` artifact;
- :func:`component_errors`: the CLI's error path around a component's body, so that a pod
  with bad input ends on one line and exit code 2 (docs/cluster.md, "Exit codes").

Imports neither kfp nor the DAG: a pod imports only what its component needs.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from dynpath.config import Config, validate_config
from dynpath.errors import EXIT_INTERNAL, DataError, DynpathError, error_message
from dynpath.kfp.spec import FEATURES_FILE
from dynpath.tracking.params import numeric_metrics


def _rebase(path: str | None, root: str | Path) -> str | None:
    if path is None or Path(path).is_absolute():
        return path
    return str(Path(root) / path)


def task_config(
    params: str, data: str | Path | None = None, features: str | Path | None = None
) -> Config:
    """The Config a component hands its step: ``params`` with the data paths moved into the
    task's input artifacts.

    ``data`` is the directory of the raw-data artifact, laid out like the project (the synthetic
    generator or the DVC fetch writes ``data/<name>/...`` inside it), so every project-relative
    data path is rebased onto it. ``features`` is the directory of the features artifact.
    """
    try:
        raw: dict[str, Any] = json.loads(params)
    except json.JSONDecodeError as err:
        raise DynpathError(f"component input 'params' is not JSON: {err}") from None
    if data is not None:
        d = raw.setdefault("data", {})
        for key in ("root", "videos"):
            if key in d:
                d[key] = _rebase(d[key], data)
        if "vocab" in raw:
            raw["vocab"]["embeddings"] = _rebase(raw["vocab"].get("embeddings"), data)
        if "extract" in raw:
            raw["extract"]["weights"] = _rebase(raw["extract"].get("weights"), data)
    if features is not None:
        raw.setdefault("data", {})["features"] = str(Path(features) / FEATURES_FILE)
    return validate_config(raw, source="component input 'params'")


def merge_variant_dirs(artifact_dirs: Iterable[str | Path], dest: Path) -> list[str]:
    """Gather the ``<variant>/`` sub-directories of fanned-in artifacts under ``dest``.

    Each train/evaluate artifact holds exactly the directory the step wrote for its variant, so
    the report step sees the same ``models/<variant>`` and ``eval/<variant>`` layout as under
    DVC. Symlinks, not copies: the inputs are read-only and can be large.
    """
    dest.mkdir(parents=True, exist_ok=True)
    variants: list[str] = []
    for art in artifact_dirs:
        subdirs = [p for p in Path(art).iterdir() if p.is_dir()] if Path(art).is_dir() else []
        if len(subdirs) != 1:
            raise DataError(f"{art}: expected one <variant>/ directory, found {len(subdirs)}")
        name = subdirs[0].name
        if (dest / name).exists():
            raise DataError(f"variant {name!r} arrives twice in the fan-in ({art})")
        (dest / name).symlink_to(subdirs[0].resolve(), target_is_directory=True)
        variants.append(name)
    return sorted(variants)


def log_metrics(metrics: Mapping[str, Any], sink: Any, prefix: str = "") -> int:
    """Log the numeric leaves of a metrics.json to a KFP ``Metrics`` artifact (flattened keys,
    as MLflow gets them: :func:`dynpath.tracking.params.numeric_metrics`)."""
    values = numeric_metrics(metrics)
    for name, value in values.items():
        sink.log_metric(f"{prefix}{name}", value)
    return len(values)


#: Set to 1 in a pod's environment to print the traceback above the one error line.
VERBOSE_ENV = "DYNPATH_VERBOSE"


@contextlib.contextmanager
def component_errors(component: str) -> Iterator[None]:
    """Run a component's body on the CLI's error path (:func:`dynpath.errors.error_message`).

    The KFP executor calls the component function in-process, so without this a bad params value
    or a missing input ended the pod in a traceback with exit code 1, the same as a crash. Now a
    failure the user must fix (bad input, full disk, out of memory) prints one line ``dynpath
    <component>: error: ...`` on stderr (the traceback above it only with ``DYNPATH_VERBOSE=1``)
    and raises ``SystemExit(2)``, which leaves the executor and ends the pod with code 2; Ctrl-C
    exits 130. Any other exception is a bug: it propagates untouched, so the pod logs the full
    traceback and exits 1.
    """
    try:
        yield
    except (Exception, KeyboardInterrupt) as err:
        code, message = error_message(err)
        if code == EXIT_INTERNAL:
            raise
        if os.environ.get(VERBOSE_ENV, "").strip() not in ("", "0"):
            traceback.print_exc(file=sys.stderr)
        print(f"dynpath {component}: error: {message}", file=sys.stderr, flush=True)
        raise SystemExit(code) from None
