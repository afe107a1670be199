"""Model registry: new versions become ``challenger``; ``champion`` moves only on merit.

The scheme (docs/design.md, "Model registry"): one registered model per (dataset, variant).
``dynpath-<dataset>`` holds the paper's model ``dynamic`` only; each ablation variant registers as
``dynpath-<dataset>-<variant>`` (:func:`dynpath.tracking.mlflow_env.registered_model_name`). Every
version carries the tags ``variant``, ``arch``, ``dataset``, ``data_digest`` and
``code_version``.

:func:`promote` compares like with like: it refuses a candidate whose variant or dataset is not
the registered model's (so an ablation variant can never become the paper model's champion, even
one registered there by hand or by an older dynpath), and compares it with the current champion
on the *validation* metric named by ``cfg.tracking.promote_metric`` (default ``val_r1_iou0.5``,
R@1 at IoU 0.5 of the selected checkpoint on the validation split, read from each version's
source run, where the trainer logged it; test metrics never choose a model). A champion of
another variant (a registry from before this scheme) is not a comparable baseline and is
replaced. The decision is recorded in the candidate's version tags *before* touching any alias.
The ``champion`` alias is written last, in a single call: a promotion that fails half-way
(server gone, metric missing) leaves the previous champion exactly where it was.

Two promotions at once are serialized by :func:`promotion_lock`, a lock held in the tracking store
itself (a registered model ``<name>--promotion-lock`` that only one client can create): reading
the champion, deciding and moving the alias is one compare-and-set, so the last promotion compares
with what the first one crowned and the champion never ends on the worse version.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from dynpath.errors import TrackingError
from dynpath.variants import PAPER_VARIANT

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from dynpath.config import Config

log = logging.getLogger(__name__)

CHALLENGER = "challenger"
CHAMPION = "champion"
_LOGGED_MODEL = re.compile(r"^models:/m-[0-9a-f]{32}$")


def register_challenger(
    client: MlflowClient,
    name: str,
    model_uri: str,
    run_id: str | None,
    tags: Mapping[str, str] | None = None,
) -> str:
    """Create a version of ``name`` from ``model_uri`` with ``tags`` and point ``challenger``
    at it (the tags are on the version before any alias can name it)."""
    from mlflow.exceptions import MlflowException

    variant = (tags or {}).get("variant", "")
    dataset = (tags or {}).get("dataset", "")
    what = "the paper's model" if variant == PAPER_VARIANT else f"ablation variant {variant}"
    try:
        client.create_registered_model(
            name,
            tags={"variant": variant, "dataset": dataset} if variant else None,
            description=f"dynpath: language-driven action localization, {what} on {dataset}",
        )
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    # A logged model (``models:/m-<id>``, what MLflow 3's log_model returns) must be named by
    # id too: servers reject a models:/ source without the model_id that owns it.
    model_id = model_uri.removeprefix("models:/") if _LOGGED_MODEL.match(model_uri) else None
    mv = client.create_model_version(
        name, source=model_uri, run_id=run_id, tags=dict(tags or {}), model_id=model_id
    )
    _await_ready(client, name, mv.version)
    client.set_registered_model_alias(name, CHALLENGER, mv.version)
    log.info("registered %s version %s (alias %s)", name, mv.version, CHALLENGER)
    return str(mv.version)


def _await_ready(client: MlflowClient, name: str, version: str, timeout: float = 60.0) -> None:
    from mlflow.entities.model_registry.model_version_status import ModelVersionStatus

    deadline = time.monotonic() + timeout
    while True:
        mv = client.get_model_version(name, version)
        status = ModelVersionStatus.from_string(mv.status)
        if status == ModelVersionStatus.READY:
            return
        if status == ModelVersionStatus.FAILED_REGISTRATION or time.monotonic() > deadline:
            raise TrackingError(f"model version {name}/{version} is {mv.status}")
        time.sleep(0.5)


def version_metric(client: MlflowClient, name: str, version: str, metric: str) -> float | None:
    """The value of ``metric`` on the run that produced version ``version`` (None if absent)."""
    mv = client.get_model_version(name, version)
    if not mv.run_id:
        return None
    value = client.get_run(mv.run_id).data.metrics.get(metric)
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def version_identity(client: MlflowClient, name: str, version: str) -> dict[str, str]:
    """``{variant, dataset}`` of a version: its tags, else its source run's ``dynpath.*`` tags
    (a version registered before versions were tagged); "" where neither says."""
    mv = client.get_model_version(name, version)
    tags = dict(mv.tags or {})
    variant, dataset = tags.get("variant", ""), tags.get("dataset", "")
    if (not variant or not dataset) and mv.run_id:
        run_tags = client.get_run(mv.run_id).data.tags
        variant = variant or run_tags.get("dynpath.variant", "")
        dataset = dataset or run_tags.get("dynpath.dataset", "")
    return {"variant": variant, "dataset": dataset}


#: The registered model that :func:`promotion_lock` creates next to ``name`` while it decides.
LOCK_SUFFIX = "--promotion-lock"
#: A lock older than this (seconds) is taken as left by a promote that died, and broken.
LOCK_STALE_S = 120.0


@contextlib.contextmanager
def promotion_lock(
    client: MlflowClient, name: str, timeout: float = 60.0, stale: float = LOCK_STALE_S
) -> Iterator[None]:
    """Hold the promotion lock of ``name`` in the tracking store, so that every client of that
    store (other processes, other machines) sees it, whatever the backend: creating a registered
    model is atomic (its name is unique in the store), so exactly one creator succeeds. Waits up
    to ``timeout`` seconds for a holder, breaks a lock older than ``stale`` seconds (a promote
    killed while holding it) and deletes the lock on the way out, error or not."""
    from mlflow.exceptions import MlflowException

    lock = f"{name}{LOCK_SUFFIX}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.create_registered_model(
                lock, description=f"held by `dynpath promote` while it decides on {name}"
            )
            break
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        with contextlib.suppress(MlflowException):
            held_ms = time.time() * 1000 - client.get_registered_model(lock).creation_timestamp
            if held_ms > stale * 1000:
                log.warning("%s: breaking a promotion lock held %.0f s", lock, held_ms / 1000)
                client.delete_registered_model(lock)
                continue
        if time.monotonic() > deadline:
            raise TrackingError(
                f"{name}: another `dynpath promote` holds the registry lock {lock!r} for over "
                f"{timeout:.0f} s; retry later (champion unchanged)"
            )
        time.sleep(0.2)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            client.delete_registered_model(lock)


def _alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as err:
        if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def _candidate(
    client: MlflowClient, name: str, version: str | None, expected: dict[str, str | None]
) -> str:
    """The version to promote (default: the ``challenger``), refused when it holds another
    variant or dataset than ``name`` does."""
    candidate = version or _alias_version(client, name, CHALLENGER)
    if candidate is None:
        raise TrackingError(
            f"registered model {name!r} has no {CHALLENGER!r} version; "
            "train that variant first or pass --version"
        )
    candidate = str(candidate)
    cand_id = version_identity(client, name, candidate)
    for key, want in expected.items():
        if want is not None and cand_id[key] != want:
            raise TrackingError(
                f"{name} version {candidate} is {key} {cand_id[key] or 'unknown'!r}, but "
                f"{name} holds {key} {want!r} only: not promoted, champion unchanged"
            )
    return candidate


def _decide(
    candidate: str,
    cand_value: float,
    champion: str | None,
    champ_value: float | None,
    foreign: str,
    metric: str,
    higher_is_better: bool,
) -> tuple[str, str]:
    """(decision, reason) by the rules of :func:`promote`."""
    if champion == candidate:
        return "already_champion", "candidate is already the champion"
    if champion is None:
        return "promoted", "no champion yet"
    if foreign:
        return "promoted", f"champion v{champion} is {foreign}: not comparable"
    if champ_value is None:
        return "promoted", f"champion v{champion} has no {metric}"
    better = cand_value > champ_value if higher_is_better else cand_value < champ_value
    ops = {(True, True): ">", (True, False): "<=", (False, True): "<", (False, False): ">="}
    op = ops[(higher_is_better, better)]
    decision = "promoted" if better else "rejected"
    return decision, f"{metric}: {cand_value:.4f} {op} champion v{champion} {champ_value:.4f}"


def _record(
    client: MlflowClient, name: str, candidate: str, decision: str, tags: dict[str, str]
) -> None:
    """Tag the candidate with the decision, then move the alias. Tags first, alias last: if
    anything fails before the alias call, champion is untouched."""
    try:
        for key, value in tags.items():
            client.set_model_version_tag(name, candidate, key, value)
        if decision == "promoted":
            client.set_registered_model_alias(name, CHAMPION, candidate)
    except Exception as err:
        # Best effort: the tags must not claim a promotion that did not happen.
        with contextlib.suppress(Exception):
            client.set_model_version_tag(name, candidate, "promotion_decision", "failed")
            client.set_model_version_tag(name, candidate, "promotion_error", str(err)[:500])
        raise


def promote(
    client: MlflowClient,
    name: str,
    version: str | None,
    metric: str,
    higher_is_better: bool = True,
    variant: str | None = None,
    dataset: str | None = None,
) -> dict[str, Any]:
    """Move ``champion`` to ``version`` (default: the ``challenger``) if it beats the champion.

    ``variant`` and ``dataset`` are what the registered model ``name`` holds (the scheme of
    :func:`~dynpath.tracking.mlflow_env.registered_model_name`): a candidate of another variant or
    dataset is refused with nothing changed, and a champion of another one is no baseline.
    Rules: no champion yet -> promoted; candidate metric missing -> error (nothing changed);
    champion metric missing or champion of another variant/dataset -> promoted (anything
    comparable and measured beats nothing); otherwise promoted only when strictly better. Tags
    written on the candidate version: ``promotion_decision`` (promoted | rejected |
    already_champion), ``promotion_reason``, ``compared_to``, ``promotion_metric``,
    ``candidate_value``, ``champion_value``.
    """
    with promotion_lock(client, name):
        return _promote_locked(client, name, version, metric, higher_is_better, variant, dataset)


def _promote_locked(
    client: MlflowClient,
    name: str,
    version: str | None,
    metric: str,
    higher_is_better: bool,
    variant: str | None,
    dataset: str | None,
) -> dict[str, Any]:
    """:func:`promote` once its lock is held: read, decide and set as one step."""
    expected = {"variant": variant, "dataset": dataset}
    candidate = _candidate(client, name, version, expected)
    cand_value = version_metric(client, name, candidate, metric)
    if cand_value is None:
        raise TrackingError(
            f"{name} version {candidate}: its run has no metric {metric!r} "
            "(tracking.promote_metric in params.yaml); champion unchanged"
        )
    champion = _alias_version(client, name, CHAMPION)
    champ_value = version_metric(client, name, champion, metric) if champion else None
    foreign = ""
    if champion is not None and champion != candidate:
        champ_id = version_identity(client, name, champion)
        foreign = ", ".join(
            f"{key} {champ_id[key] or 'unknown'!r}"
            for key, want in expected.items()
            if want is not None and champ_id[key] != want
        )
    decision, reason = _decide(
        candidate, cand_value, champion, champ_value, foreign, metric, higher_is_better
    )
    tags = {
        "promotion_decision": decision,
        "promotion_reason": reason,
        "promotion_metric": metric,
        "compared_to": f"v{champion}" if champion else "none",
        "candidate_value": f"{cand_value:.6g}",
        "champion_value": "none" if champ_value is None else f"{champ_value:.6g}",
        "promotion_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _record(client, name, candidate, decision, tags)
    if decision == "promoted":
        log.info("%s: champion is now version %s (%s)", name, candidate, reason)
    else:
        log.info("%s: version %s not promoted (%s)", name, candidate, reason)
    return {
        "model": name,
        "version": candidate,
        "decision": decision,
        "reason": reason,
        "metric": metric,
        "candidate_value": cand_value,
        "champion_value": champ_value,
        "previous_champion": champion,
        "champion": candidate if decision == "promoted" else champion,
    }


def higher_is_better(metric: str) -> bool:
    """Losses and errors go down; recalls and IoUs go up."""
    return not any(word in metric.lower() for word in ("loss", "error", "latency"))


def client_for(cfg: Config) -> MlflowClient:
    """A client on the configured store (``MLFLOW_TRACKING_URI`` wins), short HTTP timeouts."""
    from mlflow import MlflowClient

    from dynpath.tracking.mlflow_env import configure_mlflow_env, resolve_tracking_uri

    configure_mlflow_env()
    uri = resolve_tracking_uri(cfg)
    # explicit URIs, no global MLflow state: a client must not redirect later clients
    return MlflowClient(uri, registry_uri=uri)
