"""MLflow tracking for one training run that can never break the training it observes.

``start_tracking(cfg, variant, arch)`` opens one MLflow run per variant in the experiment
``dynpath-<cfg.data.name>`` and logs the resolved config (flattened params + YAML artifact), the git
commit, system metrics, the dataset as a run input, per-epoch metrics, artifacts and the pyfunc
model. When ``cfg.tracking.enabled`` is false it yields a :class:`NullTracker` with the same
methods (both satisfy :class:`RunTracker`), so the trainer has a single code path.

Why a wrapper instead of calling ``mlflow`` directly: a tracking server is a remote dependency and
a training run is hours of compute. Every MLflow call goes through the circuit breaker of
:mod:`dynpath.tracking.resilience` (failures classified, calls buffered while the server is down and
replayed in order when it answers again), which warns once; the outcome is recorded on the run
(tags ``tracking_status`` = ok | degraded, ``tracking_failed_calls``, ``tracking_dropped_calls``)
and in :meth:`Tracker.summary`.

Even run creation is a buffered call, so a server that is down when training starts is picked up
when it comes back. Ordering is preserved because every call queues behind the pending ones.

The other concerns live beside this module: the tracker protocol and the disabled tracker in
:mod:`~dynpath.tracking.protocol`, the experiment and the run's creation or resumption in
:mod:`~dynpath.tracking.mlflow_run`, code version, git state and data digests in
:mod:`~dynpath.tracking.provenance`, URIs and HTTP settings in
:mod:`~dynpath.tracking.mlflow_env`, param flattening and redaction in
:mod:`~dynpath.tracking.params`, the pyfunc model upload in :mod:`~dynpath.tracking.models` and
registration in :mod:`~dynpath.tracking.registry`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from dynpath.tracking.mlflow_env import (
    configure_mlflow_env,
    experiment_name,
    global_uris,
    registered_model_name,
    resolve_tracking_uri,
    restore_global_uris,
)
from dynpath.tracking.mlflow_run import (
    STATUS_DEGRADED,
    STATUS_OK,
    open_run,
    params_batch,
    tags_batch,
)
from dynpath.tracking.params import numeric_metrics, safe_params
from dynpath.tracking.protocol import NullTracker, RunTracker
from dynpath.tracking.provenance import code_version, digest_files
from dynpath.tracking.resilience import Resilient

if TYPE_CHECKING:
    from dynpath.config import Config

log = logging.getLogger(__name__)

PROBE_INTERVAL_ENV = "DYNPATH_TRACKING_PROBE_SECONDS"  # seconds between reconnection attempts
CLOSE_RETRIES_ENV = "DYNPATH_TRACKING_CLOSE_RETRIES"  # final flush attempts when the run ends
MAX_DIGEST_LENGTH = 36  # MLflow's dataset digest column


class Tracker:
    """One MLflow run (see module doc). Use through :func:`start_tracking`."""

    enabled = True

    def __init__(
        self,
        cfg: Config,
        variant: str,
        arch: str,
        resume_run_id: str | None = None,
        probe_interval: float | None = None,
        close_retries: int | None = None,
    ) -> None:
        configure_mlflow_env()
        import mlflow
        from mlflow.tracking import MlflowClient

        self.cfg = cfg
        self.variant = variant
        self.arch = arch
        self.tracking_uri: str | None = resolve_tracking_uri(cfg)
        # Model.log goes through MLflow's global ("fluent") URIs; close() puts back what was
        # there, so a process that trains in-process and then opens its own MlflowClient (a
        # notebook, the test suite) does not silently read another store's registry.
        self._previous_uris = global_uris()
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        self.client = MlflowClient(self.tracking_uri, registry_uri=self.tracking_uri)
        if probe_interval is None:
            probe_interval = float(os.environ.get(PROBE_INTERVAL_ENV, "15"))
        self.close_retries = (
            int(os.environ.get(CLOSE_RETRIES_ENV, "3")) if close_retries is None else close_retries
        )
        self._sink = Resilient(self.tracking_uri, probe_interval)
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.model_uri: str | None = None
        self.model_version: str | None = None
        self.data_digest: str | None = None  # set by log_dataset; tagged on the model version
        # the code that trains, read when training starts (not at registration, hours later)
        self.code_version = code_version()
        self._resume_run_id = resume_run_id
        self._known_params: dict[str, str] = {}  # already on the run: never re-sent
        self._previous: dict[str, int] | None = None  # a resumed run's earlier degraded outcome
        self._param_conflicts: set[str] = set()
        self._monitor: Any = None
        self._tmp = Path(tempfile.mkdtemp(prefix="dynpath-tracking-"))

    # ---------------------------------------------------------------- lifecycle

    @property
    def status(self) -> str:
        return STATUS_DEGRADED if self._sink.degraded or self._previous else STATUS_OK

    def open(self) -> None:
        """Create (or resume) the run and log what is known before training starts."""
        self._sink.submit("create run", self._create_run)
        cfg_dump = self.cfg.model_dump(mode="json")
        cfg_dump.pop("variants", None)  # the other variants' overrides are not this run's config
        self.log_params({"variant": self.variant, "arch": self.arch, **cfg_dump})
        self.log_dict(
            {"variant": self.variant, "arch": self.arch, "config": cfg_dump}, "config/resolved.yaml"
        )

    def _create_run(self) -> None:
        opened = open_run(
            self.client,
            self.cfg,
            self.variant,
            self.arch,
            self._artifact_location(),
            self._resume_run_id,
        )
        self.experiment_id = opened.experiment_id
        if opened.resumed:
            self._known_params = opened.known_params
            self._previous = opened.previous
        self.run_id = opened.run_id
        self._start_system_metrics(resume=opened.resumed)

    def _artifact_location(self) -> str | None:
        """Params' location, or ``./mlartifacts`` beside a local SQLite store (not ./mlruns)."""
        if self.cfg.tracking.artifact_location:
            return self.cfg.tracking.artifact_location
        if (self.tracking_uri or "").startswith("sqlite:"):
            return Path("mlartifacts").resolve().as_uri()
        return None

    def _start_system_metrics(self, resume: bool) -> None:
        if not self.cfg.tracking.log_system_metrics or self.run_id is None:
            return
        try:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            self._monitor = SystemMetricsMonitor(
                self.run_id, resume_logging=resume, tracking_uri=self.tracking_uri
            )
            self._monitor.start()
        except Exception as err:  # psutil missing, ...: never fatal
            log.warning("system metrics are not logged: %s", err)
            self._monitor = None

    def _restart_system_metrics_if_dead(self) -> None:
        """The monitor thread exits on its first failed request; restart it after an outage."""
        mon = self._monitor
        if mon is not None and mon._process is not None and not mon._process.is_alive():
            self._stop_system_metrics()
            self._start_system_metrics(resume=True)

    def _stop_system_metrics(self) -> None:
        mon, self._monitor = self._monitor, None
        if mon is not None:
            with contextlib.suppress(Exception):
                mon.finish()

    def close(self, status: str = "FINISHED") -> None:
        """Flush what is buffered (a few tries), tag the outcome, end the run with ``status``."""
        self._stop_system_metrics()
        for attempt in range(max(self.close_retries, 1)):
            if self._sink.flush():
                break
            if attempt + 1 < self.close_retries:
                time.sleep(min(self._sink.probe_interval, 5.0))
        if self._sink.pending:
            n = self._sink.drop_pending()
            log.warning(
                "MLflow tracking at %s still unreachable at the end of the run: %d buffered calls "
                "dropped (checkpoints and outputs on disk are complete)",
                self.tracking_uri,
                n,
            )
        summary = self.summary()
        if self.run_id is not None:
            # Final bookkeeping goes straight to the server (not through the buffer).
            with contextlib.suppress(Exception):
                self.client.log_batch(
                    self.run_id,
                    tags=tags_batch(
                        {
                            "tracking_status": summary["tracking_status"],
                            "tracking_failed_calls": summary["failed_calls"],
                            "tracking_dropped_calls": summary["dropped_calls"],
                        }
                    ),
                )
            try:
                # MLflow prints the run's URL to STDOUT here; the CLI's stdout is its JSON
                # result (read by scripts and pipelines), so the link goes to stderr instead.
                with contextlib.redirect_stdout(sys.stderr):
                    self.client.set_terminated(self.run_id, status)
            except Exception as err:
                log.warning("could not mark MLflow run %s as %s: %s", self.run_id, status, err)
        if summary["tracking_status"] == STATUS_DEGRADED:
            log.warning(
                "MLflow tracking degraded during this run: %d calls failed at least once, "
                "%d dropped, outage %.0f s",
                summary["failed_calls"],
                summary["dropped_calls"],
                summary["outage_seconds"],
            )
        shutil.rmtree(self._tmp, ignore_errors=True)
        restore_global_uris(self._previous_uris)

    def flush(self) -> bool:
        """Try to send buffered calls now (True when nothing is left buffered)."""
        ok = self._sink.flush()
        if ok:
            self._restart_system_metrics_if_dead()
        return ok

    def summary(self) -> dict[str, Any]:
        """What the trainer writes to train_summary.json (tracking outcome, never secrets)."""
        return {
            "tracking_status": self.status,
            "mlflow_run_id": self.run_id,
            "experiment": experiment_name(self.cfg),
            "failed_calls": self._sink.failed_calls + (self._previous or {}).get("failed_calls", 0),
            "dropped_calls": self._sink.dropped_calls
            + (self._previous or {}).get("dropped_calls", 0),
            "buffered_calls": len(self._sink.pending),
            "outage_seconds": round(self._sink.outage_seconds, 1),
            "model_uri": self.model_uri,
            "model_version": self.model_version,
        }

    # ---------------------------------------------------------------- logging

    def _submit(self, what: str, fn: Callable[[], Any], force_probe: bool = False) -> bool:
        was_down = self._sink.down
        ok = self._sink.submit(what, fn, force_probe=force_probe)
        if ok and was_down:
            self._restart_system_metrics_if_dead()
        return ok

    def _rid(self) -> str:
        # Run creation is always the first call in the queue, so this only fails when it was
        # rejected for good (ValueError = permanent: the call is dropped, not retried).
        if self.run_id is None:
            raise ValueError("no MLflow run: its creation was rejected by the server")
        return self.run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Flattened, stringified, secret-free params (in chunks of 100, MLflow's batch limit).

        Params already on the run (a resumed run, the evaluate step) are not re-sent; a key
        whose value changed since is reported once and kept as first logged (MLflow params are
        immutable) instead of failing the whole batch.
        """
        items = list(safe_params(params).items())
        for i in range(0, len(items), 100):
            chunk = dict(items[i : i + 100])
            self._submit("log_params", lambda chunk=chunk: self._send_params(chunk))  # type: ignore[misc]

    def _send_params(self, chunk: dict[str, str]) -> None:
        fresh = {}
        for key, value in chunk.items():
            old = self._known_params.get(key)
            if old is None:
                fresh[key] = value
            elif old != value and key not in self._param_conflicts:
                self._param_conflicts.add(key)
                log.warning(
                    "MLflow param %r is already %r on run %s; new value %r not logged",
                    key,
                    old[:80],
                    self.run_id,
                    value[:80],
                )
        if fresh:
            self.client.log_batch(self._rid(), params=params_batch(fresh))
            self._known_params.update(fresh)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Numeric metrics (nested dicts flattened); timestamps are taken now, not at replay."""
        from mlflow.entities import Metric

        values = numeric_metrics(metrics)
        if not values:
            return
        ts = int(time.time() * 1000)
        batch = [Metric(k, v, ts, step or 0) for k, v in values.items()]
        for i in range(0, len(batch), 1000):
            chunk = batch[i : i + 1000]
            self._submit(
                "log_metrics",
                lambda chunk=chunk: self.client.log_batch(  # type: ignore[misc]
                    self._rid(), metrics=chunk
                ),
            )

    def set_tag(self, key: str, value: Any) -> None:
        self._submit("set_tag", lambda: self.client.set_tag(self._rid(), key, str(value)))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """A file or a directory (its contents go under ``artifact_path``)."""
        p = Path(path)
        if not p.exists():
            log.warning("artifact %s does not exist; not logged", p)
            return
        if p.is_dir():
            self._submit(
                "log_artifacts",
                lambda: self.client.log_artifacts(self._rid(), str(p), artifact_path),
            )
        else:
            self._submit(
                "log_artifact", lambda: self.client.log_artifact(self._rid(), str(p), artifact_path)
            )

    def log_dict(self, obj: Any, artifact_file: str) -> None:
        """A JSON/YAML artifact written from memory (snapshotted now, uploaded when possible)."""
        local = self._tmp / f"{len(os.listdir(self._tmp))}" / Path(artifact_file).name
        local.parent.mkdir(parents=True)
        if artifact_file.endswith((".yaml", ".yml")):
            local.write_text(yaml.safe_dump(obj, sort_keys=False), encoding="utf-8")
        else:
            import json

            local.write_text(json.dumps(obj, indent=2, default=str), encoding="utf-8")
        parent = str(Path(artifact_file).parent)
        self.log_artifact(local, None if parent == "." else parent)

    def log_dataset(
        self,
        name: str,
        digest: str | None = None,
        source: str | None = None,
        paths: Iterable[str | Path] = (),
        context: str = "train",
        profile: Mapping[str, Any] | None = None,
    ) -> str | None:
        """Log the dataset as a run input; returns the full sha256 digest.

        ``digest`` defaults to :func:`digest_files` over ``paths`` (feature store + annotation
        files). MLflow stores at most 36 characters, so the input carries a prefix and the full
        digest goes into the profile and the tag ``dynpath.data_digest``.
        """
        import json

        from mlflow.data.sources import (  # type: ignore[attr-defined]  # generated class
            LocalArtifactDatasetSource,
        )
        from mlflow.entities import Dataset, DatasetInput, InputTag

        files = [Path(p) for p in paths]
        if digest is None:
            if not files:
                raise ValueError("log_dataset needs a digest or the paths to hash")
            digest = digest_files(files)
        src = LocalArtifactDatasetSource(
            source or (str(files[0].resolve()) if files else "unknown")
        )
        full_profile = {"sha256": digest, "files": [str(p) for p in files], **(profile or {})}
        entity = Dataset(
            name=name,
            digest=digest[:MAX_DIGEST_LENGTH],
            source_type=src._get_source_type(),
            source=src.to_json(),
            profile=json.dumps(full_profile, default=str),
        )
        inputs = [DatasetInput(entity, tags=[InputTag("mlflow.data.context", context)])]
        self._submit("log_inputs", lambda: self.client.log_inputs(self._rid(), datasets=inputs))
        self.set_tag("dynpath.data_digest", digest)
        self.data_digest = digest
        return digest

    # ---------------------------------------------------------------- model + registry

    def log_model(
        self,
        model_dir: str | Path,
        vocab_dir: str | Path | None = None,
        name: str = "model",
        weights: str = "best.pt",
    ) -> str | None:
        """Log ``model_dir/<weights>`` + vocabulary + resolved config as a pyfunc model.

        Returns the model URI (``models:/<model id>``), or None when the server is unreachable
        (the upload is then buffered and :meth:`register_model` with no argument registers it
        once it has gone through).
        """
        from dynpath.tracking.models import log_pyfunc_model
        from dynpath.tracking.pyfunc_model import build_pyfunc_kwargs

        model_dir = Path(model_dir)
        staging = self._tmp / f"model-{len(os.listdir(self._tmp))}"
        kwargs = build_pyfunc_kwargs(
            model_dir=model_dir,
            vocab_dir=Path(vocab_dir) if vocab_dir is not None else None,
            cfg=self.cfg,
            variant=self.variant,
            arch=self.arch,
            staging=staging,
            weights=weights,
        )

        def _log() -> None:
            self.model_uri = log_pyfunc_model(self.experiment_id, self._rid(), name, kwargs)
            self.client.set_tag(self._rid(), "dynpath.model_uri", self.model_uri)

        self._submit("log_model", _log, force_probe=True)
        return self.model_uri

    def register_model(self, model_uri: str | None = None) -> str | None:
        """Register ``model_uri`` (default: this run's model) as a new version of this variant's
        registered model (:func:`registered_model_name`) with alias ``challenger``, tagged with
        what it is: variant, arch, dataset, data digest, code version. Returns the version, or
        None."""
        from dynpath.tracking.registry import register_challenger

        tags = {
            "variant": self.variant,
            "arch": self.arch,
            "dataset": self.cfg.data.name,
            # the sha256 of the feature store + annotation files (log_dataset); "unknown" when
            # the run logged no dataset (a model registered by hand from a directory)
            "data_digest": self.data_digest or "unknown",
            "code_version": self.code_version,
        }

        def _register() -> None:
            uri = model_uri or self.model_uri
            if uri is None:
                raise ValueError("no model was logged in this run")
            self.model_version = register_challenger(
                self.client,
                registered_model_name(self.cfg, self.variant),
                uri,
                self._rid(),
                tags=tags,
            )

        self._submit("register_model", _register, force_probe=True)
        return self.model_version


@contextlib.contextmanager
def start_tracking(
    cfg: Config,
    variant: str,
    arch: str,
    resume_run_id: str | None = None,
    probe_interval: float | None = None,
    close_retries: int | None = None,
) -> Iterator[RunTracker]:
    """``with start_tracking(cfg, variant, arch) as tracker:`` around one training run.

    The run ends FINISHED when the block completes, FAILED when it raises, KILLED on Ctrl-C; the
    exception itself always propagates unchanged. Tracking failures never raise (module doc).
    ``resume_run_id`` continues an existing run (``dynpath train --resume``).
    """
    if not cfg.tracking.enabled:
        yield NullTracker()
        return
    try:
        tracker = Tracker(cfg, variant, arch, resume_run_id, probe_interval, close_retries)
    except Exception as err:  # e.g. an unknown URI scheme: the user must see it, training goes on
        log.warning("MLflow tracking disabled for this run: %s", err)
        yield NullTracker()
        return
    tracker.open()
    status = "FINISHED"
    try:
        yield tracker
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except BaseException:
        status = "FAILED"
        raise
    finally:
        try:
            tracker.close(status)
        except Exception as err:
            log.warning("MLflow run could not be closed cleanly: %s", err)
