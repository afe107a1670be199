"""``dynpath promote``: move the registry alias ``champion`` to a challenger that beats it.

The decision rule lives in :func:`dynpath.tracking.registry.promote`; this step only resolves the
store (``MLFLOW_TRACKING_URI`` wins over ``tracking.uri``), the registered model of the variant
(``dynpath-<data.name>`` for the paper's model ``dynamic``, the default;
``dynpath-<data.name>-<variant>`` for an ablation variant), the metric
(``tracking.promote_metric``, a validation metric) and turns MLflow errors into one-line
:class:`~dynpath.errors.TrackingError` messages for the CLI.
"""

from __future__ import annotations

from typing import Any

from dynpath.config import Config
from dynpath.errors import TrackingError


def run(cfg: Config, version: str | None = None, variant: str | None = None) -> dict[str, Any]:
    """Promote ``version`` (default: the current ``challenger``) of ``variant``'s registered
    model (default: the paper's model) if it beats that model's champion."""
    from mlflow.exceptions import MlflowException

    from dynpath.tracking.mlflow_env import (
        existing_store,
        registered_model_name,
        resolve_tracking_uri,
    )
    from dynpath.tracking.registry import client_for, higher_is_better, promote
    from dynpath.variants import PAPER_VARIANT

    if not cfg.tracking.enabled:
        raise TrackingError("tracking.enabled is false in params.yaml: there is no registry")
    if variant is not None and variant not in cfg.variants:
        raise TrackingError(
            f"--variant {variant!r} is not in params.yaml `variants` "
            f"({', '.join(sorted(cfg.variants))})"
        )
    variant = variant or PAPER_VARIANT
    name = registered_model_name(cfg, variant)
    metric = cfg.tracking.promote_metric
    existing_store(resolve_tracking_uri(cfg), "promote")  # a mistyped sqlite URI: no new file
    try:
        client = client_for(cfg)
        result = promote(
            client,
            name,
            version,
            metric,
            higher_is_better(metric),
            variant=variant,
            dataset=cfg.data.name,
        )
    except MlflowException as err:
        uri = resolve_tracking_uri(cfg)
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise TrackingError(
            f"promotion of {name} failed at {uri}: {first}; the champion alias was not changed"
        ) from None
    result["variant"] = variant
    result["tracking_uri"] = resolve_tracking_uri(cfg)
    return result
