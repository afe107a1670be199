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

Input (signature): a DataFrame with ``query`` (str) and one source of features per row:

- ``video_b64``: the video file's bytes, base64-encoded (what a remote client sends; at most
  ``DYNPATH_MAX_VIDEO_BYTES``, default 256 MiB, decoded into a private temp file and removed);
- ``video``: a path relative to (or under) the media root the server was started with
  (``DYNPATH_MEDIA_ROOT``). Without a media root, paths are refused; a path outside it is refused
  with the same message whether or not it exists (a client learns nothing about the server's
  files);
- ``features`` (a [T, D] list of lists) plus ``duration`` (seconds).

Param ``topk`` (default 5). Rows of several kinds may share a frame if the absent cells are None
(MLflow's schema check rejects the NaN that pandas puts in a missing list cell).
Output: one dict per row ``{query, spans: [{start, end, score}], route, duration, ...}``.

Errors: a bad row raises :class:`ServingInputError`, an ``MlflowException`` (the scoring server
answers HTTP 400 with ``{"error_code", "message"}``, no stack trace) that is also a
DynpathError; its message names the column and never a server path (upload and media-root
paths are replaced by placeholders). Any other failure is logged on the server and answered 500
with a fixed message.

:func:`build_pyfunc_kwargs` (used by the tracker) assembles the ``log_model`` arguments; it runs
only when logging, never when MLflow loads this file.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel, PythonModelContext

from dynpath.errors import DynpathError

if TYPE_CHECKING:
    from dynpath.config import Config

ROW_COLUMNS = ("query", "video", "video_b64", "features", "duration")
MEDIA_ROOT_ENV = "DYNPATH_MEDIA_ROOT"
MAX_VIDEO_BYTES_ENV = "DYNPATH_MAX_VIDEO_BYTES"
DEFAULT_MAX_VIDEO_BYTES = 256 * 2**20

log = logging.getLogger(__name__)


class ServingInputError(MlflowException, DynpathError):
    """A request the served model cannot answer: HTTP 400 with this short message only."""

    def __init__(self, message: str) -> None:
        super().__init__(f"dynpath: {message}", error_code=INVALID_PARAMETER_VALUE)


def _max_video_bytes() -> int:
    text = os.environ.get(MAX_VIDEO_BYTES_ENV, "")
    try:
        value = int(text) if text else DEFAULT_MAX_VIDEO_BYTES
    except ValueError:
        value = DEFAULT_MAX_VIDEO_BYTES
    return value if value > 0 else DEFAULT_MAX_VIDEO_BYTES


class DynpathPyfunc(PythonModel):
    """Thin adapter: DataFrame rows -> :meth:`Localizer.predict` calls."""

    def __init__(self) -> None:
        self.localizer: Any = None
        self.media_root: Path | None = None
        self._hide: dict[str, str] = {}  # server paths -> what error messages say instead

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
        root = os.environ.get(MEDIA_ROOT_ENV, "").strip()
        self.media_root = Path(os.path.realpath(root)) if root else None
        if self.media_root is not None and not self.media_root.is_dir():
            raise DynpathError(f"{MEDIA_ROOT_ENV}={root}: not a directory")
        for path in arts.values():
            self._hide[str(Path(path).resolve().parent)] = "<model>"
        if self.media_root is not None:
            self._hide[str(self.media_root)] = "<media>"

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
        with tempfile.TemporaryDirectory(prefix="dynpath-upload-") as tmp:
            hide = {**self._hide, str(Path(tmp).resolve()): "<upload>", tmp: "<upload>"}
            try:
                return self._predict(model_input, params or {}, Path(tmp))
            except ServingInputError as err:
                raise ServingInputError(
                    _scrub(err.message.removeprefix("dynpath: "), hide)
                ) from None
            except DynpathError as err:
                raise ServingInputError(_scrub(str(err), hide)) from None
            except Exception:
                log.exception("dynpath model: unexpected error while predicting")
                raise MlflowException(
                    "dynpath: internal error while localizing (see the server log)",
                    error_code=INTERNAL_ERROR,
                ) from None

    def _predict(
        self, model_input: pd.DataFrame, params: dict[str, Any], tmp: Path
    ) -> list[dict[str, Any]]:
        from dynpath.inference.inputs import check_topk

        topk = check_topk(params.get("topk", 5))
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        unknown = sorted(set(map(str, frame.columns)) - set(ROW_COLUMNS))
        if unknown:
            raise ServingInputError(f"unknown column(s) {unknown}; expected {list(ROW_COLUMNS)}")
        out = []
        for n, row in enumerate(frame.to_dict(orient="records")):
            video, b64 = _present(row.get("video")), _present(row.get("video_b64"))
            features = _present(row.get("features"))
            duration = _present(row.get("duration"))
            query = row.get("query")
            if query is None or (isinstance(query, float) and query != query):
                query = ""
            if video is not None and b64 is not None:
                raise ServingInputError(f"row {n}: give video or video_b64, not both")
            if b64 is not None:
                video = self._upload(b64, tmp / f"video-{n}", n)
            elif video is not None:
                video = self._media_path(video, n)
            out.append(
                self.localizer.predict(
                    video=video,
                    query=query,
                    features=features,
                    duration=duration,
                    topk=topk,
                )
            )
        return out

    def _upload(self, value: Any, dst: Path, n: int) -> Path:
        """The base64 bytes of ``video_b64`` written to a private temp file."""
        if not isinstance(value, str):
            raise ServingInputError(f"row {n}: video_b64 must be a base64 string")
        limit = _max_video_bytes()
        if len(value) > (limit * 4) // 3 + 4:
            raise ServingInputError(f"row {n}: video_b64 is larger than {limit} bytes")
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ServingInputError(f"row {n}: video_b64 is not valid base64") from None
        if not raw:
            raise ServingInputError(f"row {n}: video_b64 is empty")
        dst.write_bytes(raw)
        return dst

    def _media_path(self, value: Any, n: int) -> Path:
        """A ``video`` path resolved under the media root; anything else refused without
        looking at it (same message for a file that exists and one that does not)."""
        refused = (
            f"row {n}: video paths are accepted only under the server's media root; send the "
            "file's bytes base64-encoded in video_b64 instead"
        )
        if self.media_root is None:
            raise ServingInputError(
                f"row {n}: this server accepts no video paths (no {MEDIA_ROOT_ENV}); send the "
                "file's bytes base64-encoded in video_b64"
            )
        if not isinstance(value, str) or "\x00" in value:
            raise ServingInputError(refused)
        candidate = Path(value)
        full = candidate if candidate.is_absolute() else self.media_root / candidate
        real = Path(os.path.realpath(full))
        if real == self.media_root or self.media_root not in real.parents:
            raise ServingInputError(refused)
        if not real.is_file():
            raise ServingInputError(f"row {n}: video {value!r} not found under the media root")
        return real


def _scrub(message: str, hide: dict[str, str]) -> str:
    """``message`` with server paths replaced (longest first) and on one short line."""
    for path in sorted(hide, key=len, reverse=True):
        message = message.replace(path, hide[path])
    return " ".join(message.split())[:500]


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
            ColSpec("string", "video_b64", required=False),
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
