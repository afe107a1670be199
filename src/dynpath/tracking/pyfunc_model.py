"""The MLflow pyfunc "model from code" of dynpath (this file is logged as the model's code).

MLflow executes this file when loading the model and takes the object passed to
``mlflow.models.set_model``; nothing is pickled. ``load_context`` builds the same
:class:`~dynpath.inference.localizer.Localizer` the CLI uses from the model's artifacts:

- ``weights``: the training checkpoint ``best.pt`` (meta: variant, arch, resolved config);
- ``vocab``: ``vocab.json`` + ``embeddings.npy`` (+ ``vocab_report.json``);
- ``config``: the resolved variant config as YAML (for people and the UI; the checkpoint's copy
  is the one the code trusts, so the two cannot disagree silently);
- ``backbone`` (optional): the extraction backbone checkpoint, when training used one.

The dynpath package itself is bundled as ``code_paths`` so that the model loads where dynpath is
not installed (with the pinned pip requirements).

Input (signature): a DataFrame with ``query`` (str) and either ``video`` (a video file path) or
``features`` (a [T, D] list of lists) plus ``duration`` (seconds). Param ``topk`` (default 5).
Rows of both kinds may share a frame if the absent cells are None (MLflow's schema check rejects
the NaN that pandas puts in a missing list cell).
Output: one dict per row ``{query, spans: [{start, end, score}], route, duration, ...}``.

:func:`build_pyfunc_kwargs` (used by the tracker) assembles the ``log_model`` arguments; it runs
only when logging, never when MLflow loads this file.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext

if TYPE_CHECKING:
    from dynpath.config import Config


class DynpathPyfunc(PythonModel):
    """Thin adapter: DataFrame rows -> :meth:`Localizer.predict` calls."""

    def __init__(self) -> None:
        self.localizer: Any = None

    def load_context(self, context: PythonModelContext) -> None:
        from dynpath.inference.localizer import Localizer

        arts = context.artifacts
        self.localizer = Localizer.from_files(
            arts["weights"],
            arts["vocab"],
            device="auto",
            source="mlflow pyfunc",
            backbone_weights=arts.get("backbone"),
        )

    def predict(
        self,
        context: PythonModelContext | None,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        # pd.DataFrame as the input hint keeps MLflow's signature-based validation (a list[...]
        # hint would switch MLflow to type-hint schemas).
        if self.localizer is None:
            raise RuntimeError("model context not loaded (use mlflow.pyfunc.load_model)")
        topk = int((params or {}).get("topk", 5))
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        out = []
        for row in frame.to_dict(orient="records"):
            video = _present(row.get("video"))
            features = _present(row.get("features"))
            duration = _present(row.get("duration"))
            out.append(
                self.localizer.predict(
                    video=video,
                    query=str(row.get("query") or ""),
                    features=features,
                    duration=float(duration) if duration is not None else None,
                    topk=topk,
                )
            )
        return out


def _present(value: Any) -> Any:
    """None for missing cells (None, NaN, empty string), the value otherwise."""
    if value is None:
        return None
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, str) and not value.strip():
        return None
    return value


def signature() -> Any:
    """Input: query + (video | features + duration); output: spans; param: topk."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import (
        Array,
        ColSpec,
        Object,
        ParamSchema,
        ParamSpec,
        Property,
        Schema,
    )

    inputs = Schema(
        [
            ColSpec("string", "query"),
            ColSpec("string", "video", required=False),
            ColSpec(Array(Array("double")), "features", required=False),
            ColSpec("double", "duration", required=False),
        ]
    )
    span = Object(
        [Property("start", "double"), Property("end", "double"), Property("score", "double")]
    )
    outputs = Schema(
        [
            ColSpec("string", "query"),
            ColSpec(Array(span), "spans"),
            ColSpec("string", "route", required=False),
            ColSpec("double", "duration"),
        ]
    )
    params = ParamSchema([ParamSpec("topk", "long", 5)])
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def pip_requirements() -> list[str]:
    """Pinned runtime requirements (no inference: inferring would load the model in a
    subprocess at logging time)."""
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    for dist in ("mlflow", "torch", "numpy", "pandas", "h5py", "av", "pyyaml", "pydantic"):
        try:
            reqs.append(f"{dist}=={version(dist).split('+')[0]}")
        except PackageNotFoundError:
            reqs.append(dist)
    return reqs


def _copy_package(dst: Path) -> Path:
    """A copy of the installed dynpath package without caches (bundled as code_paths)."""
    import dynpath

    src = Path(dynpath.__file__).resolve().parent
    target = dst / "dynpath"
    shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


def build_pyfunc_kwargs(
    model_dir: Path,
    vocab_dir: Path | None,
    cfg: Config,
    variant: str,
    arch: str,
    staging: Path,
    weights: str = "best.pt",
) -> dict[str, Any]:
    """Everything ``mlflow.pyfunc.log_model`` needs for a trained model directory.

    Only the files the model needs are staged (not last.pt, whose optimizer state doubles the
    size); the vocabulary directory is found beside the model when not given.
    """
    import yaml

    from dynpath.errors import DataError
    from dynpath.inference.localizer import VOCAB_FILES, find_vocab_dir

    weights_path = model_dir / weights
    if not weights_path.is_file():
        raise DataError(f"{weights_path}: model weights not found")
    vocab_src = vocab_dir or find_vocab_dir(model_dir)
    if vocab_src is None or not (vocab_src / "vocab.json").is_file():
        raise DataError(f"{vocab_src or model_dir}: vocabulary (vocab.json) not found")
    staging.mkdir(parents=True, exist_ok=True)
    vocab_dst = staging / "vocab"
    vocab_dst.mkdir()
    for name in VOCAB_FILES:
        if (vocab_src / name).is_file():
            shutil.copy2(vocab_src / name, vocab_dst / name)
    config_path = staging / "config.yaml"
    dump = cfg.model_dump(mode="json")
    dump.pop("variants", None)
    config_path.write_text(
        yaml.safe_dump({"variant": variant, "arch": arch, "config": dump}, sort_keys=False),
        encoding="utf-8",
    )
    artifacts = {
        "weights": str(weights_path),
        "vocab": str(vocab_dst),
        "config": str(config_path),
    }
    if cfg.extract.weights and Path(cfg.extract.weights).is_file():
        artifacts["backbone"] = str(Path(cfg.extract.weights).resolve())
    code = staging / "code"
    code.mkdir()
    return {
        "python_model": str(Path(__file__).resolve()),
        "artifacts": artifacts,
        "code_paths": [str(_copy_package(code))],
        "signature": signature(),
        "pip_requirements": pip_requirements(),
        "metadata": {
            "dynpath_variant": variant,
            "dynpath_arch": arch,
            "dataset": cfg.data.name,
            "backbone": cfg.extract.backbone,
        },
    }


# MLflow executes this file under a generated module name when it logs or loads the model; a
# plain ``import dynpath.tracking.pyfunc_model`` (for build_pyfunc_kwargs) must not register a
# global model as a side effect.
if __name__ != "dynpath.tracking.pyfunc_model":
    mlflow.models.set_model(DynpathPyfunc())
