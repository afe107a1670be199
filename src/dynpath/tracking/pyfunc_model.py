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
(MLflow's schema check rejects the NaN that pandas puts in a missing list cell). Every request
form of the scoring server is read the same way: JSON ``dataframe_split``/``dataframe_records``,
``inputs`` and ``instances`` (which MLflow hands over as ONE row whose cells are the columns'
arrays: :func:`_rows` spreads it back into rows), and ``text/csv`` (``features`` a JSON list of
lists in its cell: :func:`parse_csv`). ``video_b64`` may be wrapped over lines, as the ``base64``
tool writes it.
Output: one dict per row ``{query, spans: [{start, end, score}], route, duration, ...}``.

Errors: a bad row raises :class:`ServingInputError`, an ``MlflowException`` (the scoring server
answers HTTP 400 with ``{"error_code", "message"}``, no stack trace) that is also a
DynpathError; its message names the column and never a server path (upload and media-root
paths are replaced by placeholders). Any other failure is logged on the server and answered 500
with a fixed message.

Served (``mlflow models serve``), :meth:`DynpathPyfunc.load_context` also adjusts the scoring
server it runs in (:func:`_guard_scoring_server`): MLflow's own CSV parser cannot read this
signature (it fails on the array column and answers with a traceback), and its parse errors carry
a ``stack_trace`` with server paths; and SIGTERM (or Ctrl-C) stops a busy server within seconds
(:class:`_Shutdown`) instead of after its last request. A ``DYNPATH_MEDIA_ROOT`` that is not a
directory is one error line in the server log (video paths are then refused with that reason),
not a crash of the server with MLflow's tracebacks.

:func:`build_pyfunc_kwargs` (used by the tracker) assembles the ``log_model`` arguments; it runs
only when logging, never when MLflow loads this file.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    INTERNAL_ERROR,
    INVALID_PARAMETER_VALUE,
    TEMPORARILY_UNAVAILABLE,
)
from mlflow.pyfunc import PythonModel, PythonModelContext

from dynpath.errors import DynpathError

if TYPE_CHECKING:
    from dynpath.config import Config

ROW_COLUMNS = ("query", "video", "video_b64", "features", "duration")
MEDIA_ROOT_ENV = "DYNPATH_MEDIA_ROOT"
MAX_VIDEO_BYTES_ENV = "DYNPATH_MAX_VIDEO_BYTES"
DEFAULT_MAX_VIDEO_BYTES = 256 * 2**20
#: seconds a served model may keep working on its requests after SIGTERM before it stops anyway
SHUTDOWN_GRACE_S = 5.0
_SCORING_SERVER = "mlflow.pyfunc.scoring_server"

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
        self.media_error = ""  # why DYNPATH_MEDIA_ROOT is unusable, when it is
        self.shutdown: _Shutdown | None = None  # set when served: SIGTERM received
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
            # One line in the server log, not a crash: raising here makes uvicorn and then
            # `mlflow models serve` print two tracebacks (85 lines). Video paths are refused
            # with this reason; video_b64 and features still work.
            what = "does not exist" if not self.media_root.exists() else "is not a directory"
            self.media_error = f"{MEDIA_ROOT_ENV}={root} {what}"
            print(f"dynpath: {self.media_error}: this server refuses video paths", file=sys.stderr)
            self.media_root = None
        for path in arts.values():
            self._hide[str(Path(path).resolve().parent)] = "<model>"
        if self.media_root is not None:
            self._hide[str(self.media_root)] = "<media>"
        if _SCORING_SERVER + ".app" in sys.modules:  # being loaded by `mlflow models serve`
            _guard_scoring_server(sys.modules[_SCORING_SERVER], self._hide)
            self.shutdown = _Shutdown.install()

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
            if self.shutdown is not None:
                self.shutdown.uploads.add(tmp)
            try:
                return self._predict(model_input, params or {}, Path(tmp))
            except ShuttingDown:
                raise
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
            finally:
                if self.shutdown is not None:
                    self.shutdown.uploads.discard(tmp)

    def _predict(
        self, model_input: pd.DataFrame, params: dict[str, Any], tmp: Path
    ) -> list[dict[str, Any]]:
        from dynpath.inference.inputs import check_topk

        topk = check_topk(params.get("topk", 5))
        out = []
        for n, row in enumerate(_rows(model_input)):
            if self.shutdown is not None and self.shutdown.event.is_set():
                raise ShuttingDown()
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
        if len(value) > 2 * ((limit * 4) // 3 + 4):  # before any copy: wrapping adds 1/38 at most
            raise ServingInputError(f"row {n}: video_b64 is larger than {limit} bytes")
        value = "".join(value.split())  # `base64` wraps at 76 columns; pasted text has CRLF
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
        if self.media_error:
            raise ServingInputError(
                f"row {n}: this server's media root ({MEDIA_ROOT_ENV}) is not a directory, so it "
                "accepts no video paths; send the file's bytes base64-encoded in video_b64"
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


class ShuttingDown(MlflowException, DynpathError):
    """A request reached (or was still running) after SIGTERM: HTTP 503, retry elsewhere."""

    def __init__(self) -> None:
        super().__init__(
            "dynpath: the server is shutting down; send the request again",
            error_code=TEMPORARILY_UNAVAILABLE,
        )


class _Shutdown:
    """SIGTERM/SIGINT seen by the served model, through uvicorn's own exit handler.

    Uvicorn's graceful shutdown waits for every running request, and a request runs in a worker
    thread that the interpreter joins at exit: measured, a server busy with 40 video rows took
    19 s to stop after SIGTERM (and a longer request, longer still). Here, the signal sets
    :attr:`event` (the rows loop stops at its next row with HTTP 503) and a watchdog ends the
    process :data:`SHUTDOWN_GRACE_S` seconds later if it is still alive, removing the upload
    directories of the requests it cuts short (exit status 128 + the signal, as a shell reports
    a process the signal ended).

    The hook is uvicorn's ``Server.handle_exit``: uvicorn sets its signal handlers after it has
    loaded the app (and this model), so a handler set here would be replaced.
    """

    def __init__(self) -> None:
        self.event = threading.Event()
        self.uploads: set[str] = set()

    @classmethod
    def install(cls) -> _Shutdown | None:
        server = getattr(sys.modules.get("uvicorn.server"), "Server", None)
        original = getattr(server, "handle_exit", None)
        if server is None or original is None:
            log.warning("dynpath: not served by uvicorn: no fast stop on SIGTERM")
            return None
        self = cls()

        @functools.wraps(original)
        def handle_exit(uvicorn_server: Any, sig: int, frame: Any) -> None:
            self.stop(sig)
            original(uvicorn_server, sig, frame)

        server.handle_exit = handle_exit
        return self

    def stop(self, sig: int) -> None:
        if not self.event.is_set():
            self.event.set()
            threading.Thread(target=self._watchdog, args=(sig,), daemon=True).start()

    def _watchdog(self, sig: int) -> None:
        threading.Event().wait(SHUTDOWN_GRACE_S)
        log.warning("dynpath: still busy %.0f s after signal %d: stopping", SHUTDOWN_GRACE_S, sig)
        for path in list(self.uploads):
            shutil.rmtree(path, ignore_errors=True)
        sys.stderr.flush()
        os._exit(128 + sig)


def _rows(model_input: Any) -> list[dict[str, Any]]:
    """The request's rows as dicts of cells.

    The columnar forms (``{"inputs": {"query": [...], ...}}`` and ``{"instances": [...]}``)
    reach the model as ONE row whose cells are whole columns (arrays); they are spread back into
    one row per element, so that every form means the same rows.
    """
    import numpy as np

    frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
    unknown = sorted(set(map(str, frame.columns)) - set(ROW_COLUMNS))
    if unknown:
        raise ServingInputError(f"unknown column(s) {unknown}; expected {list(ROW_COLUMNS)}")
    rows: list[dict[str, Any]] = []
    for record in frame.to_dict(orient="records"):
        if not isinstance(record.get("query"), np.ndarray | list | tuple):
            rows.append(record)
            continue
        columns = {k: v for k, v in record.items() if _present(v) is not None}
        lengths = {k: len(v) for k, v in columns.items() if isinstance(v, np.ndarray | list)}
        if len(set(lengths.values())) != 1 or len(lengths) != len(columns):
            raise ServingInputError(
                f"the columns of a columnar request must be lists of one length, got {lengths}"
            )
        for i in range(next(iter(lengths.values()))):
            rows.append({k: _cell(v[i]) for k, v in columns.items()})
    return rows


def _cell(value: Any) -> Any:
    """A numpy scalar or array cell of a columnar request as a plain Python value."""
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def parse_csv(csv_input: Any, schema: Any = None) -> pd.DataFrame:
    """A ``text/csv`` request as the frame the model reads (MLflow's parser cannot: it asks the
    signature for a pandas dtype per column, which an array column has not).

    Every cell is read as text (an empty cell is absent); ``features`` holds a JSON list of
    lists, ``duration`` a number. A malformed table or cell is a 400 naming the row and column.
    """
    try:
        frame = pd.read_csv(csv_input, dtype=str, keep_default_na=False)
    except Exception as err:  # pandas' ParserError, EmptyDataError, UnicodeDecodeError, ...
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ServingInputError(f"text/csv: not a CSV table with a header row ({first})") from None
    for column in frame.columns:
        frame[column] = [
            _csv_cell(str(column), n, text) for n, text in enumerate(frame[column].tolist())
        ]
    return frame


def _csv_cell(column: str, n: int, text: str) -> Any:
    if not text.strip():
        return None
    if column == "features":
        try:
            return json.loads(text)
        except ValueError:
            raise ServingInputError(
                f"text/csv: row {n}: features must be a JSON list of lists of numbers"
            ) from None
    if column == "duration":
        try:
            return float(text)
        except ValueError:
            raise ServingInputError(
                f"text/csv: row {n}: duration must be a number of seconds, got {text[:40]!r}"
            ) from None
    return text


def _guard_scoring_server(server: Any, hide: dict[str, str]) -> None:
    """Adjust MLflow's scoring server module this model is being served by (before its app is
    built: ``init`` decorates the route with ``_async_catch_mlflow_exception`` after the model
    is loaded).

    - ``text/csv`` is parsed by :func:`parse_csv` (MLflow's parser fails on this signature);
    - no error answer carries a ``stack_trace`` (MLflow adds one to its parse errors, with the
      server's paths): the trace goes to the server log, the answer keeps the message, with
      server paths replaced.
    """
    from fastapi.responses import Response

    if getattr(server, "_dynpath_guarded", False):
        return
    server.parse_csv_input = parse_csv

    def catch(func: Any) -> Any:
        @functools.wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await func(*args, **kwargs)
            except MlflowException as err:
                trace = err.json_kwargs.pop("stack_trace", None)
                if trace:
                    log.error("dynpath model: %s\n%s", err.message, trace)
                err.message = _scrub(str(err.message), hide, limit=2000)
                return Response(
                    content=err.serialize_as_json(),
                    status_code=err.get_http_status_code(),
                    media_type="application/json",
                )

        return wrapper

    server._async_catch_mlflow_exception = catch
    server._dynpath_guarded = True


def _scrub(message: str, hide: dict[str, str], limit: int = 500) -> str:
    """``message`` with server paths replaced (longest first) and on one short line."""
    for path in sorted(hide, key=len, reverse=True):
        message = message.replace(path, hide[path])
    return " ".join(message.split())[:limit]


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
