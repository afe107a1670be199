"""Config and metrics as MLflow wants them: flat ``a.b.c`` keys, strings, no secrets.

MLflow params are visible to everyone with access to the experiment, so redaction happens here,
once, for every caller (the tracker logs the resolved config through :func:`safe_params`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MAX_PARAM_LENGTH = 6000  # MLflow 3 limit on a param value
_SECRET_KEY = re.compile(
    r"secret|password|passwd|token|credential|api[_-]?key|access[_-]?key", re.IGNORECASE
)
_URL_CREDENTIALS = re.compile(r"(//)[^/@\s:]+:[^/@\s]+@")


def flatten(obj: Mapping[str, Any], prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """Nested mappings to ``{"a.b.c": value}``; lists/tuples stay leaves."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flatten(value, name, sep))
        else:
            out[name] = value
    return out


def safe_params(params: Mapping[str, Any]) -> dict[str, str]:
    """Flattened params as strings, without anything that could be a secret.

    Keys that name a secret (password, token, secret, ...) are skipped and credentials embedded
    in URLs (``scheme://user:pass@host``) are masked: MLflow params are visible to everyone with
    access to the experiment.
    """
    out: dict[str, str] = {}
    for key, value in flatten(params).items():
        if _SECRET_KEY.search(key.rsplit(".", 1)[-1]):
            continue
        text = "" if value is None else str(list(value) if isinstance(value, tuple) else value)
        text = _URL_CREDENTIALS.sub(r"\1***@", text)
        out[key] = text[:MAX_PARAM_LENGTH]
    return out


def numeric_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Flatten nested metric dicts (``routes.exploration.share``) and keep numbers only."""
    out: dict[str, float] = {}
    for key, value in flatten(metrics).items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        out[key] = float(value)
    return out
