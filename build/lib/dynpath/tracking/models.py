"""Uploading a trained model to MLflow as the dynpath pyfunc model.

The model's arguments (code file, artifacts, signature, requirements) are assembled by
:func:`dynpath.tracking.pyfunc_model.build_pyfunc_kwargs`; registration as a version of
``dynpath-<dataset>`` is :func:`dynpath.tracking.registry.register_challenger`. This module is
the one MLflow call between them, kept apart so the tracker holds no MLflow flavour details.
"""

from __future__ import annotations

import warnings
from typing import Any


def log_pyfunc_model(
    experiment_id: str | None, run_id: str, name: str, kwargs: dict[str, Any]
) -> str:
    """Log the pyfunc model to run ``run_id``; returns its URI (``models:/<model id>``).

    ``Model.log`` (what ``mlflow.pyfunc.log_model`` calls) takes the run explicitly, so no global
    "active run" is started or ended behind the trainer's back. The logged model entity goes to
    the *active experiment*, hence ``set_experiment`` first.
    """
    import mlflow

    mlflow.set_experiment(experiment_id=experiment_id)
    with warnings.catch_warnings():  # "no input example": the signature is explicit
        warnings.simplefilter("ignore", UserWarning)
        info = mlflow.models.Model.log(
            None, name=name, flavor=mlflow.pyfunc, run_id=run_id, **kwargs
        )
    return str(info.model_uri)
