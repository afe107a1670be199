"""MLflow tracking, the pyfunc model, the model registry and localization for users.

``start_tracking`` is imported lazily by the trainer; importing this package does not import
mlflow or torch (the CLI stays fast).
"""

from __future__ import annotations

from dynpath.tracking.tracker import (
    NullTracker,
    Tracker,
    digest_files,
    experiment_name,
    registered_model_name,
    resolve_tracking_uri,
    start_tracking,
)

__all__ = [
    "NullTracker",
    "Tracker",
    "digest_files",
    "experiment_name",
    "registered_model_name",
    "resolve_tracking_uri",
    "start_tracking",
]
