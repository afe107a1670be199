"""The MLflow client side of one training run: its experiment (created with the kind the UI needs)
and the run itself, created or resumed, with the tags that say what trained it.

:class:`~dynpath.tracking.tracker.Tracker` calls :func:`open_run` as the first buffered call of a
run (so a server that is down when training starts is picked up when it comes back) and logs
through the same client afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dynpath.tracking.mlflow_env import experiment_name
from dynpath.tracking.provenance import git_commit, user_name
from dynpath.tracking.resilience import is_permanent

if TYPE_CHECKING:
    from dynpath.config import Config

log = logging.getLogger(__name__)

#: ``tracking_status`` tag of a run: every call went through, or some failed or were dropped.
STATUS_OK = "ok"
STATUS_DEGRADED = "degraded"

# The kind of experiment dynpath's are: MLflow 3 UIs before the GenAI/Model-training switch open
# an experiment in the view its kind names. The 3.17 UI goes by its own workflow switch instead
# (GenAI by default, whatever the tag): `make mlflow-ui` prints the address that opens the runs
# (dynpath.tracking.ui). dynpath.tracking.ui also finds dynpath's experiments by this tag.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


@dataclass
class OpenedRun:
    """The run :func:`open_run` created or resumed."""

    experiment_id: str
    run_id: str
    resumed: bool  # an existing run continued (``resume_run_id`` found on the server)
    known_params: dict[str, str] = field(default_factory=dict)  # already on a resumed run
    #: a resumed run's earlier degraded outcome (failed_calls, dropped_calls), kept so that
    #: resuming never hides an outage
    previous: dict[str, int] | None = None


def params_batch(d: Mapping[str, str]) -> list[Any]:
    """MLflow ``Param`` entities of ``d`` (for ``log_batch``)."""
    from mlflow.entities import Param

    return [Param(k, v) for k, v in d.items()]


def tags_batch(d: Mapping[str, Any]) -> list[Any]:
    """MLflow ``RunTag`` entities of ``d``, values as text (for ``log_batch``)."""
    from mlflow.entities import RunTag

    return [RunTag(k, str(v)) for k, v in d.items()]


def experiment_id(client: Any, cfg: Config, artifact_location: str | None) -> str:
    """The id of ``cfg``'s experiment, created with its kind tag when missing (another variant's
    run may create it concurrently); an existing experiment without a kind gets one."""
    from mlflow.exceptions import MlflowException

    name = experiment_name(cfg)
    exp = client.get_experiment_by_name(name)
    if exp is None:
        try:
            return str(
                client.create_experiment(
                    name,
                    artifact_location=artifact_location,
                    tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND},
                )
            )
        except MlflowException:  # created concurrently by another variant's run
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
    if EXPERIMENT_KIND_TAG not in exp.tags:
        # an experiment made by an older dynpath (or by hand): mark it, never overriding a
        # kind someone chose on purpose
        client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return str(exp.experiment_id)


def run_tags(cfg: Config, variant: str, arch: str) -> dict[str, str]:
    """What trained the run: the variant, its architecture, the dataset, the user and the git
    commit (with whether the checkout had uncommitted changes)."""
    commit, dirty = git_commit()
    tags = {
        "mlflow.runName": variant,
        "mlflow.source.type": "LOCAL",
        "mlflow.source.name": "dynpath train",
        "mlflow.user": user_name(),
        "dynpath.variant": variant,
        "dynpath.arch": arch,
        "dynpath.dataset": cfg.data.name,
    }
    if commit:
        tags["mlflow.source.git.commit"] = commit
        tags["dynpath.git_dirty"] = str(dirty).lower()
    return tags


def _resumable(client: Any, resume_run_id: str | None) -> Any:
    """The run to resume, or None (none asked for, or gone for good: a new run starts)."""
    from mlflow.exceptions import MlflowException

    if not resume_run_id:
        return None
    try:
        return client.get_run(resume_run_id)
    except MlflowException as err:
        if not is_permanent(err):
            raise
        log.warning(
            "MLflow run %s cannot be resumed (%s); starting a new run",
            resume_run_id,
            str(err).splitlines()[0],
        )
        return None


def open_run(
    client: Any,
    cfg: Config,
    variant: str,
    arch: str,
    artifact_location: str | None,
    resume_run_id: str | None,
) -> OpenedRun:
    """Create the run of ``variant`` in ``cfg``'s experiment, or resume ``resume_run_id`` (set
    RUNNING again, tagged anew, its params and an earlier degraded outcome kept)."""
    from mlflow.entities import RunStatus

    exp_id = experiment_id(client, cfg, artifact_location)
    tags = run_tags(cfg, variant, arch)
    run = _resumable(client, resume_run_id)
    if run is None:
        run = client.create_run(exp_id, tags=tags, run_name=variant)
        return OpenedRun(exp_id, run.info.run_id, resumed=run.info.run_id == resume_run_id)
    client.update_run(run.info.run_id, status=RunStatus.to_string(RunStatus.RUNNING))
    client.log_batch(run.info.run_id, tags=tags_batch(tags))
    opened = OpenedRun(exp_id, run.info.run_id, resumed=True, known_params=dict(run.data.params))
    previous = run.data.tags
    if previous.get("tracking_status") == STATUS_DEGRADED:
        opened.previous = {
            "failed_calls": int(previous.get("tracking_failed_calls", "0") or 0),
            "dropped_calls": int(previous.get("tracking_dropped_calls", "0") or 0),
        }
    return opened
