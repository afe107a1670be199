"""What a tracker is (:class:`RunTracker`), and the tracker that logs nothing
(:class:`NullTracker`, when ``tracking.enabled`` is false), so the trainer and the evaluate step
have a single code path. The MLflow one is :class:`dynpath.tracking.tracker.Tracker`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol


class RunTracker(Protocol):
    """What the trainer and the evaluate step may call on a tracker, enabled or not."""

    enabled: bool
    run_id: str | None
    tracking_uri: str | None

    @property
    def status(self) -> str: ...

    def log_params(self, params: Mapping[str, Any]) -> None: ...

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None: ...

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None: ...

    def log_dict(self, obj: Any, artifact_file: str) -> None: ...

    def log_dataset(
        self,
        name: str,
        digest: str | None = None,
        source: str | None = None,
        paths: Iterable[str | Path] = (),
        context: str = "train",
        profile: Mapping[str, Any] | None = None,
    ) -> str | None: ...

    def log_model(
        self,
        model_dir: str | Path,
        vocab_dir: str | Path | None = None,
        name: str = "model",
        weights: str = "best.pt",
    ) -> str | None: ...

    def register_model(self, model_uri: str | None = None) -> str | None: ...

    def set_tag(self, key: str, value: Any) -> None: ...

    def flush(self) -> bool: ...

    def summary(self) -> dict[str, Any]: ...


class NullTracker:
    """The tracker when ``cfg.tracking.enabled`` is false: same methods, nothing logged."""

    enabled = False

    def __init__(self) -> None:
        self.run_id: str | None = None
        self.tracking_uri: str | None = None

    @property
    def status(self) -> str:
        return "disabled"

    def log_params(self, params: Mapping[str, Any]) -> None:
        """No-op."""

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """No-op."""

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """No-op."""

    def log_dict(self, obj: Any, artifact_file: str) -> None:
        """No-op."""

    def log_dataset(
        self,
        name: str,
        digest: str | None = None,
        source: str | None = None,
        paths: Iterable[str | Path] = (),
        context: str = "train",
        profile: Mapping[str, Any] | None = None,
    ) -> str | None:
        """No-op."""
        return None

    def log_model(
        self,
        model_dir: str | Path,
        vocab_dir: str | Path | None = None,
        name: str = "model",
        weights: str = "best.pt",
    ) -> str | None:
        """No-op."""
        return None

    def register_model(self, model_uri: str | None = None) -> str | None:
        """No-op."""
        return None

    def set_tag(self, key: str, value: Any) -> None:
        """No-op."""

    def flush(self) -> bool:
        return True

    def summary(self) -> dict[str, Any]:
        return {"tracking_status": self.status, "mlflow_run_id": None}
