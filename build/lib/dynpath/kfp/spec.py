"""What the Kubeflow DAG is made of, as data: the sections each data step's cache key covers,
the Kubernetes objects the pods read their environment from, the paths a real dataset needs.

Read by the DAG (:mod:`dynpath.kfp.dag`) at compile time and by tests; it
imports neither kfp nor the DAG, so the components and the DAG can both depend on it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dynpath.config import Config
from dynpath.stages import KFP_DATA_STEPS, kfp_sections

#: File name of the HDF5 store inside the ``features`` artifact directory.
FEATURES_FILE = "features.h5"

#: Config keys (sections or dotted keys) each data step depends on, from the stage table
#: (:func:`dynpath.stages.kfp_sections`: the DVC stage's keys, data paths as one section). Passing
#: only these to the step keeps its cache key stable when an unrelated key changes: editing
#: ``train.epochs`` must not re-extract features. The rest of the Config takes its defaults, which
#: these steps do not read.
STEP_SECTIONS: dict[str, tuple[str, ...]] = {
    step: kfp_sections(stage) for step, stage in KFP_DATA_STEPS.items()
}

#: Environment variables the pods read from Kubernetes objects (never from pipeline literals).
#: Secrets hold credentials; the config map holds endpoints, which are not secret.
MLFLOW_SECRET_KEYS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
S3_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
CONFIG_MAP_KEYS = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_S3_ENDPOINT_URL",
    "AWS_ENDPOINT_URL",
    "AWS_DEFAULT_REGION",
)


def pipeline_env_names(cfg: Config) -> dict[str, str]:
    """Names of the Kubernetes objects the pods read their environment from."""
    return {
        "mlflow_secret": cfg.pipeline.mlflow_secret,
        "s3_secret": cfg.pipeline.s3_secret,
        "config_map": f"{cfg.pipeline.name}-config",
    }


def step_params(cfg: Config, step: str) -> str:
    """The params JSON a component receives: only the sections ``step`` depends on (see
    :data:`STEP_SECTIONS`), the whole config for the variant steps."""
    raw = cfg.model_dump(mode="json")
    keys = STEP_SECTIONS.get(step)
    if keys is not None:
        raw = subset_config(raw, keys)
    return json.dumps(raw, sort_keys=True, separators=(",", ":"))


def subset_config(raw: dict[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    """The part of ``raw`` named by sections / dotted keys, nested as in ``raw``."""
    out: dict[str, Any] = {}
    for dotted in keys:
        *parents, last = dotted.split(".")
        src, dst = raw, out
        for key in parents:
            src = src[key]
            dst = dst.setdefault(key, {})
        dst[last] = src[last]
    return out


def data_paths(cfg: Config) -> list[str]:
    """The project-relative inputs a real (non-synthetic) dataset needs inside the pods."""
    candidates = [cfg.data.root, cfg.data.videos, cfg.vocab.embeddings, cfg.extract.weights]
    out: list[str] = []
    for path in candidates:
        if path and not Path(path).is_absolute() and path not in out:
            if any(Path(path).is_relative_to(Path(p)) for p in out):
                continue  # already inside a fetched directory
            out.append(path)
    return out
