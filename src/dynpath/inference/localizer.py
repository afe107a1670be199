"""Localize a sentence in a video with a trained model: the one inference path users touch.

``Localizer.load(uri)`` accepts

- a registry URI ``models:/dynpath-charades_sta@champion`` (or ``models:/NAME/3``), a run URI
  ``runs:/<run id>/model`` or any other MLflow artifact URI: the pyfunc model is downloaded;
- a downloaded pyfunc directory (it has an ``MLmodel`` file);
- a training output directory ``outputs/models/<variant>`` (``best.pt``; the vocabulary is found in
  ``<dir>/vocab`` or ``<dir>/../../vocab``, i.e. ``outputs/vocab``), or the ``best.pt`` itself.

``predict(video=..., query=...)`` extracts clip features from the video file with the model's own
backbone (its config's ``extract`` section), or takes ``features`` (an array [T, D] or an HDF5
store + ``video_id``), and returns ``{query, spans: [{start, end, score}], route, duration}``.

The MLflow pyfunc model (:mod:`dynpath.tracking.pyfunc_model`) wraps this same class, so the CLI,
Python callers and model serving share one code path. ``predict`` is thread-safe: the model is in
eval mode, inference runs under ``torch.inference_mode`` and nothing on ``self`` is mutated.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from dynpath.config import MAX_TOPK, Config
from dynpath.data.spans import indices_to_seconds
from dynpath.device import resolve_device
from dynpath.errors import CheckpointError, DataError, DynpathError, InputTypeError, UsageError
from dynpath.model.output import NO_ROUTE, ROUTE_NAMES

log = logging.getLogger(__name__)

WEIGHTS_FILE = "best.pt"
VOCAB_FILES = ("vocab.json", "embeddings.npy", "vocab_report.json")
# Longest video duration accepted (seconds, 31 days): beyond it a span in seconds is meaningless
# and products with it may overflow to inf; 1e308 or inf is a typo, not a video.
MAX_DURATION = 31 * 24 * 3600.0


def check_duration(duration: Any, where: str = "duration") -> float:
    """A duration in seconds: a real number (not a bool, not text), finite, > 0 and at most
    :data:`MAX_DURATION`; anything else is a :class:`UsageError`/:class:`InputTypeError`."""
    if isinstance(duration, bool) or not isinstance(
        duration, int | float | np.integer | np.floating
    ):
        raise InputTypeError(f"{where} must be a number of seconds, got {duration!r}")
    value = float(duration)
    if not math.isfinite(value) or not 0 < value <= MAX_DURATION:
        raise UsageError(
            f"{where} must be a finite number of seconds in (0, {MAX_DURATION:.0f}], got {value}"
        )
    return value


def check_topk(topk: Any) -> int:
    """``topk``: an int in 1..:data:`~dynpath.config.MAX_TOPK` (a bool, a float or text such as
    ``"5"`` is refused; so is 1e9, which would run for hours without an answer)."""
    if isinstance(topk, bool) or not isinstance(topk, int | np.integer):
        raise InputTypeError(f"topk must be an integer >= 1, got {topk!r}")
    if topk < 1:
        raise UsageError(f"topk must be >= 1, got {topk}")
    if topk > MAX_TOPK:
        raise UsageError(f"topk must be at most {MAX_TOPK}, got {topk}")
    return int(topk)


def check_query(query: Any) -> str:
    """``query``: text (``bytes`` must be decoded by the caller, which knows the encoding)."""
    if isinstance(query, bytes | bytearray):
        raise InputTypeError("query must be text (str), got bytes; decode it first")
    if not isinstance(query, str):
        raise InputTypeError(f"query must be text (str), got {type(query).__name__}")
    return query


def find_vocab_dir(model_dir: Path) -> Path | None:
    """The vocabulary of a training output directory: ``<dir>/vocab`` or ``outputs/vocab``."""
    for base in (model_dir, model_dir.parent.parent, model_dir.parent):
        cand = base / "vocab"
        if (cand / "vocab.json").is_file():
            return cand
    return None


def _strip_compiled(state: dict[str, Any]) -> dict[str, Any]:
    """State dicts saved from ``torch.compile`` modules carry an ``_orig_mod.`` prefix."""
    prefix = "_orig_mod."
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix) :]: v for k, v in state.items()}
    return state


class Localizer:
    """A trained model + its vocabulary + its config, ready to localize queries."""

    def __init__(
        self,
        model: torch.nn.Module,
        vocab: Any,
        cfg: Config,
        variant: str,
        arch: str,
        feature_dim: int,
        device: torch.device,
        source: str = "",
        backbone_weights: str | None = None,
    ) -> None:
        self.model = model.eval()
        self.vocab = vocab
        self.cfg = cfg
        self.variant = variant
        self.arch = arch
        self.feature_dim = feature_dim
        self.device = device
        self.source = source
        # The extraction backbone weights travel with a pyfunc model (artifact) when training
        # used a checkpoint; None means the seeded random init the features were made with.
        self.backbone_weights = backbone_weights if backbone_weights else cfg.extract.weights

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_files(
        cls,
        weights: str | Path,
        vocab_dir: str | Path,
        device: str = "auto",
        source: str = "",
        backbone_weights: str | None = None,
    ) -> Localizer:
        """Build from a checkpoint (its ``meta`` has variant, arch, resolved config, feature dim)
        and a vocabulary directory (``vocab.json`` + ``embeddings.npy``)."""
        from dynpath.config import check_device
        from dynpath.data.vocab import Vocabulary
        from dynpath.engine.checkpoint import check_vocab, load_checkpoint
        from dynpath.model.registry import build_model

        if not isinstance(device, str):
            raise InputTypeError(f"device must be a string (auto, cpu, cuda), got {device!r}")
        dev = resolve_device(check_device(device, "device"), setting="device")
        ckpt = load_checkpoint(weights, map_location="cpu")
        meta = ckpt["meta"]
        missing = [k for k in ("config", "arch", "feature_dim") if k not in meta]
        if missing:
            raise CheckpointError(f"{weights}: checkpoint metadata lacks {', '.join(missing)}")
        try:
            cfg = Config.model_validate(meta["config"])
        except Exception as err:
            first = " ".join(str(err).split())[:300]
            raise CheckpointError(f"{weights}: config stored in the checkpoint: {first}") from None
        vocab = Vocabulary.load(vocab_dir)
        check_vocab(meta, len(vocab), vocab.fingerprint(), Path(vocab_dir), Path(weights))
        emb = vocab.embeddings
        if emb is None:  # the frozen vectors are a buffer of the state dict: shape is enough
            emb = np.zeros((len(vocab), cfg.vocab.dim), dtype=np.float32)
        feature_dim = int(meta["feature_dim"])
        model = build_model(str(meta["arch"]), cfg, emb, feature_dim)
        try:
            model.load_state_dict(_strip_compiled(ckpt["model"]))
        except (RuntimeError, KeyError, TypeError, AttributeError) as err:
            first = str(err).splitlines()[0][:300]
            raise CheckpointError(f"{weights}: weights do not fit the model: {first}") from None
        model.to(dev).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        return cls(
            model,
            vocab,
            cfg,
            variant=str(meta.get("variant", meta["arch"])),
            arch=str(meta["arch"]),
            feature_dim=feature_dim,
            device=dev,
            source=source or str(weights),
            backbone_weights=backbone_weights,
        )

    @classmethod
    def from_pyfunc_dir(cls, path: str | Path, device: str = "auto") -> Localizer:
        """A (downloaded) MLflow pyfunc model directory written by :meth:`Tracker.log_model`."""
        path = Path(path)
        mlmodel = yaml.safe_load((path / "MLmodel").read_text(encoding="utf-8"))
        arts = (mlmodel.get("flavors", {}).get("python_function", {}) or {}).get("artifacts", {})

        def art(name: str) -> Path | None:
            entry = arts.get(name)
            return path / entry["path"] if entry else None

        weights, vocab = art("weights"), art("vocab")
        if weights is None or vocab is None:
            raise DynpathError(f"{path}: not a dynpath pyfunc model (no weights/vocab artifacts)")
        backbone = art("backbone")
        return cls.from_files(
            weights,
            vocab,
            device,
            source=str(path),
            backbone_weights=str(backbone) if backbone else None,
        )

    @classmethod
    def load(
        cls, uri: str | Path, device: str = "auto", tracking_uri: str | None = None
    ) -> Localizer:
        """From a registry/run/artifact URI, a pyfunc directory or a training output directory."""
        if not isinstance(uri, str | os.PathLike):
            raise InputTypeError(f"model must be a URI or a path, got {uri!r}")
        text = str(uri)
        local = Path(text)
        if local.is_file() and local.name != "MLmodel":
            # an explicit checkpoint file (best.pt, last.pt, ...) is the one loaded
            vocab = find_vocab_dir(local.parent)
            if vocab is None:
                raise DataError(
                    f"{local}: no vocabulary found beside it ({local.parent / 'vocab'}) or in "
                    f"{local.parent.parent.parent / 'vocab'} (run `dynpath vocab` first)"
                )
            return cls.from_files(local, vocab, device, source=str(local))
        if local.exists():
            if local.is_file():
                local = local.parent
            if (local / "MLmodel").is_file():
                return cls.from_pyfunc_dir(local, device)
            if (local / WEIGHTS_FILE).is_file():
                vocab = find_vocab_dir(local)
                if vocab is None:
                    raise DataError(
                        f"{local}: no vocabulary found in {local / 'vocab'} or "
                        f"{local.parent.parent / 'vocab'} (run `dynpath vocab` first)"
                    )
                return cls.from_files(local / WEIGHTS_FILE, vocab, device, source=str(local))
            raise DynpathError(f"{local}: neither an MLflow model (MLmodel) nor {WEIGHTS_FILE}")
        if "://" not in text and not text.startswith(("models:", "runs:")):
            raise DynpathError(f"{text}: no such file or directory, and not an MLflow URI")
        cached = cached_registry_model(text, tracking_uri)
        if cached is not None:
            return cls.from_pyfunc_dir(cached, device)
        downloaded = download_model(text, tracking_uri)
        try:
            loc = cls.from_pyfunc_dir(downloaded, device)
        except BaseException:
            shutil.rmtree(downloaded, ignore_errors=True)
            raise
        # The download is read by predict() (the backbone weights, for videos), so it lives as
        # long as the Localizer: removed when it is collected, or at interpreter exit.
        weakref.finalize(loc, shutil.rmtree, downloaded, ignore_errors=True)
        return loc

    # ------------------------------------------------------------------ inference

    def _features_from_video(self, video: str | Path) -> tuple[np.ndarray, float]:
        from dynpath import extract

        path = Path(video)
        if path.is_dir():
            raise DataError(f"{path}: is a directory; give a video file")
        if not path.is_file():
            raise DataError(f"{path}: video file not found")
        out = extract.extract_video_features(
            path,
            self.cfg.extract.backbone,
            self.cfg.extract,
            self.backbone_weights,
            str(self.device),
            seed=self.cfg.seed,  # a random-init backbone must be the one training features used
        )
        if isinstance(out, tuple):
            feats, duration = out[0], out[1]
        else:
            feats, duration = out, getattr(out, "duration", None)
        feats = np.asarray(getattr(feats, "features", feats), dtype=np.float32)
        if duration is None:
            duration = video_duration(path)
        return feats, float(duration)

    def _features_from_store(
        self, store: str | Path, video_id: str | None, duration: float | None
    ) -> tuple[np.ndarray, float]:
        from dynpath.data.features import FeatureStore

        if not video_id:
            raise DataError(f"{store}: --video-id is required with an HDF5 feature store")
        import h5py

        with FeatureStore(store) as fs:
            feats = fs.read(video_id)
            attrs = fs.attrs
        if duration is None:
            with h5py.File(store, "r") as f:
                video_attrs = dict(f[video_id].attrs)
            attrs = {**attrs, "video": video_attrs}
            duration = store_duration(attrs, feats.shape[0], str(store), video_id)
        return feats, duration

    def predict(
        self,
        video: str | Path | None = None,
        query: str = "",
        features: Any = None,
        video_id: str | None = None,
        topk: int = 5,
        duration: float | None = None,
    ) -> dict[str, Any]:
        """Top-``topk`` spans (seconds, best first) of ``query`` in one video.

        Give ``video`` (a file; features are extracted with the model's backbone), or
        ``features``: an array [T, D] (then ``duration`` in seconds is required) or the path of
        an HDF5 feature store with ``video_id`` (duration from the store's metadata when not
        given).
        """
        query = check_query(query)
        return self.predict_queries(
            [query],
            video=video,
            features=features,
            video_id=video_id,
            topk=topk,
            duration=duration,
        )[0]

    def predict_queries(
        self,
        queries: Sequence[str],
        video: str | Path | None = None,
        features: Any = None,
        video_id: str | None = None,
        topk: int = 5,
        duration: float | None = None,
    ) -> list[dict[str, Any]]:
        """One answer per query (in order) for one video, as :meth:`predict` gives it: the
        video is decoded and its clip features extracted once, whatever the number of queries
        (the 3D-CNN is the costly part of a call; the model itself runs once per query)."""
        if isinstance(queries, str | bytes | bytearray) or not isinstance(queries, Sequence):
            raise InputTypeError("queries must be a list of texts")
        if not queries:
            raise UsageError("no query given")
        queries = [check_query(q) for q in queries]
        for n, q in enumerate(queries):
            if not q.strip():
                which = "query" if len(queries) == 1 else f"query {n + 1}"
                raise DataError(f"{which} is empty")
        topk = check_topk(topk)
        if duration is not None:
            duration = check_duration(duration)
        if video is not None and not isinstance(video, str | os.PathLike):
            raise InputTypeError(f"video must be a file path, got {type(video).__name__}")
        if video is not None and features is not None:
            raise UsageError("give video or features, not both")
        if video is not None and duration is not None:
            raise UsageError("duration is read from the video file; give it only with features")
        if video_id is not None and not isinstance(video_id, str):
            raise InputTypeError(f"video_id must be a string, got {video_id!r}")
        for q in queries:  # every query checked before the (slow) video decode
            self._encode(q)
        if video is not None:
            feats, dur = self._features_from_video(video)
        elif isinstance(features, str | os.PathLike):
            feats, dur = self._features_from_store(Path(features), video_id, duration)
        elif features is not None:
            feats = _as_matrix(features)
            if duration is None:
                raise DataError("features given as an array need `duration` (seconds, > 0)")
            dur = duration
        else:
            raise DataError("give a video file or features (array or HDF5 store + video id)")
        n = len(queries)
        return self.predict_batch([feats] * n, queries, [dur] * n, topk)

    def predict_features(
        self, feats: np.ndarray, query: str, duration: float, topk: int = 5
    ) -> dict[str, Any]:
        """The core shared by every entry point: features [T, D] + query -> spans in seconds."""
        return self.predict_batch([feats], [query], [duration], topk)[0]

    def _encode(self, query: str) -> list[int]:
        """Word ids of a user's query; refuses text the model cannot condition on.

        Training data goes through the readers' checks, but a query typed by a user reaches
        the model directly: undecodable bytes (the shell's argv with a non-UTF-8 locale arrives
        as lone surrogates) and a query none of whose words the model knows (every token UNK:
        the spans would not depend on the query at all) are errors, not silent guesses.
        """
        from dynpath.data.vocab import UNK_ID

        try:
            query.encode("utf-8")
        except UnicodeEncodeError:
            raise DataError(f"query {query!r} is not valid UTF-8 text") from None
        ids = self.vocab.encode(query, self.cfg.vocab.max_query_len)
        if all(i == UNK_ID for i in ids):
            raise DataError(
                f"query {query[:80]!r}: none of its words is in the model's vocabulary "
                f"({len(self.vocab)} words); rephrase it with common words"
            )
        return list(ids)

    def predict_batch(
        self,
        feats: Sequence[np.ndarray],
        queries: Sequence[str],
        durations: Sequence[float],
        topk: int = 5,
    ) -> list[dict[str, Any]]:
        """Several (features, query, duration) triples, decoded by the evaluator's
        :func:`~dynpath.engine.evaluator.decode_batch` (what was scored is served).

        Videos of at most ``data.max_len`` clips share one forward pass; a longer video runs on
        overlapping windows of ``max_len`` clips whose spans are merged
        (:mod:`dynpath.inference.windows`; its result has ``"windows"`` > 1), instead of being
        squeezed into ``max_len`` bins.
        """
        from dynpath.data.dataset import collate
        from dynpath.engine.evaluator import decode_batch
        from dynpath.inference.windows import decode_windows

        topk = check_topk(topk)
        if not len(feats) == len(queries) == len(durations):
            raise UsageError(
                f"{len(feats)} feature matrices, {len(queries)} queries and {len(durations)} "
                "durations: give one of each per item"
            )
        max_len = self.cfg.data.max_len
        items: list[dict[str, Any]] = []
        for f, q, d in zip(feats, queries, durations, strict=True):
            q = check_query(q)
            d = check_duration(d)
            f = _as_matrix(f)
            if f.shape[1] != self.feature_dim:
                raise DataError(
                    f"features have dimension {f.shape[1]}, the model expects {self.feature_dim} "
                    f"({self.cfg.extract.backbone} features)"
                )
            if not d > 0:
                raise DataError(f"duration must be > 0 seconds, got {d}")
            words = np.asarray(self._encode(q), np.int64)
            items.append(
                {
                    "video": f,
                    "words": words,
                    "start": 0.0,
                    "end": float(d),
                    "duration": float(d),
                    "qid": "query",
                    "vid": "video",
                    "query": q,
                }
            )
        results: list[dict[str, Any] | None] = [None] * len(items)
        short = [n for n, it in enumerate(items) if it["video"].shape[0] <= max_len]
        if short:
            batch = collate([items[n] for n in short]).to(self.device)
            with torch.inference_mode():
                out, preds = decode_batch(self.model, batch, k=topk, nms_iou=self.cfg.eval.nms_iou)
                if not (
                    torch.isfinite(out.start_logits).all() and torch.isfinite(out.end_logits).all()
                ):
                    raise DataError(
                        "the model's scores are not finite for these features: their values are "
                        "out of the range the model was trained on (e.g. 1e38); check the features"
                    )
            for b, (n, pred) in enumerate(zip(short, preds, strict=True)):
                probs = None if out.route_probs is None else out.route_probs[b].float().cpu()
                results[n] = self._result(
                    items[n],
                    [(s, e, score) for s, e, score in pred.spans],
                    pred.route,
                    None if probs is None else probs.tolist(),
                    windows=1,
                )
        for n, item in enumerate(items):
            if results[n] is not None:
                continue
            video, duration = item["video"], item["duration"]
            answer = decode_windows(
                self.model,
                video,
                item["words"],
                topk,
                self.cfg.eval.nms_iou,
                max_len,
                self.device,
            )
            t = video.shape[0]
            spans = []
            for c in answer.spans:
                start, end = indices_to_seconds(c.start, c.end, duration, t)
                spans.append((start, end, c.score))
            results[n] = self._result(
                item, spans, answer.route, answer.route_probs, windows=len(answer.starts)
            )
        return [r for r in results if r is not None]

    def _result(
        self,
        item: dict[str, Any],
        spans: Sequence[tuple[float, float, float]],
        route: int,
        route_probs: Sequence[float] | None,
        windows: int,
    ) -> dict[str, Any]:
        """One answer: spans in seconds (best first), the route and its probabilities."""
        result: dict[str, Any] = {
            "query": item["query"],
            "spans": [
                {"start": round(start, 3), "end": round(end, 3), "score": score}
                for start, end, score in spans
            ],
            "route": None if route == NO_ROUTE else ROUTE_NAMES[route],
            "duration": round(float(item["duration"]), 3),
            "variant": self.variant,
            "windows": windows,
        }
        if route_probs is not None:
            result["route_probs"] = {
                n: round(p, 4) for n, p in zip(ROUTE_NAMES, route_probs, strict=True)
            }
        return result


# --------------------------------------------------------------------------- helpers


def _as_matrix(features: Any) -> np.ndarray:
    """Array-likes (nested lists, object arrays of rows) to a float32 [T, D] matrix."""
    if isinstance(features, str | bytes):
        raise InputTypeError("features must be a [T, D] array of numbers, got text")
    try:
        arr = np.asarray(features)
        if arr.dtype == object:
            arr = np.stack([np.asarray(row, dtype=np.float32) for row in arr])
        if arr.dtype == bool or arr.dtype.kind not in "biuf":
            raise TypeError(arr.dtype)
        with np.errstate(over="ignore"):
            arr = arr.astype(np.float32, copy=False)
    except (TypeError, ValueError):
        raise InputTypeError("features must be a [T, D] array of numbers") from None
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise DataError(f"features must be a non-empty [T, D] matrix, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise DataError("features contain NaN/Inf")
    return arr


def video_duration(path: Path) -> float:
    """Duration in seconds from the container (stream duration, else container duration)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        if container.duration is not None:
            return float(container.duration) / 1_000_000
    raise DataError(f"{path}: the container declares no duration")


def store_duration(attrs: dict[str, Any], positions: int, store: str, video_id: str) -> float:
    """Duration of a video in a feature store, from the best metadata available.

    ``attrs["video"]`` (the video's dataset attributes written by ``dynpath extract``):
    ``n_frames / fps`` (frames fed to the backbone at their rate); else a file-level
    ``durations`` mapping; else ``T * stride / fps`` from the file attributes (``fps`` 0 means
    "each video's own rate" and cannot be used). The annotation's duration, when the caller has
    it, is better than all of these: pass ``duration``.
    """
    video = attrs.get("video") or {}
    where = f"{store}: video {video_id!r}"
    n_frames = _store_number(video.get("n_frames"), f"{where} attribute n_frames")
    video_fps = _store_number(video.get("fps"), f"{where} attribute fps")
    if n_frames and video_fps:
        return _store_seconds(
            n_frames / video_fps, f"{where}: n_frames {n_frames:g} / fps {video_fps:g}"
        )
    durations = attrs.get("durations")
    if isinstance(durations, dict) and video_id in durations:
        value = _store_number(durations[video_id], f"{store}: durations[{video_id!r}]")
        return _store_seconds(value or 0.0, f"{store}: durations[{video_id!r}]")
    fps = _store_number(attrs.get("fps"), f"{store}: file attribute fps")
    stride = _store_number(attrs.get("stride"), f"{store}: file attribute stride")
    if fps and stride:
        return _store_seconds(
            positions * stride / fps,
            f"{where}: {positions} positions x stride {stride:g} / fps {fps:g}",
        )
    raise DataError(f"{store}: no duration for {video_id!r}; pass the duration in seconds")


def _store_number(value: Any, where: str) -> float | None:
    """A frame count or rate read from a feature store: None when absent or 0 ("not known");
    else a finite number > 0, or a :class:`DataError` naming the store, the video and the
    attribute (a bool, a text, NaN, inf or a negative value is a damaged store, not a rate)."""
    if value is None or (isinstance(value, str | bytes) and not value):
        return None
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value.item()
    if isinstance(value, bool | np.bool_) or not isinstance(
        value, int | float | np.integer | np.floating
    ):
        raise DataError(f"{where} must be a number > 0, got {value!r}; re-extract the features")
    number = float(value)
    if number == 0:
        return None
    if not math.isfinite(number) or number < 0:
        raise DataError(
            f"{where} must be a finite number > 0, got {number}; re-extract the features"
        )
    return number


def _store_seconds(seconds: float, where: str) -> float:
    """A duration computed from store attributes, in (0, MAX_DURATION], or a DataError naming
    the attributes it came from (1e308 frames at 1e-308 fps is not a video length)."""
    if not math.isfinite(seconds) or not 0 < seconds <= MAX_DURATION:
        raise DataError(
            f"{where} give a duration of {seconds:g} seconds, not in (0, {MAX_DURATION:.0f}]; "
            "fix the store's attributes or pass the duration in seconds"
        )
    return seconds


def download_model(uri: str, tracking_uri: str | None = None) -> Path:
    """Download an MLflow model URI into a temporary directory (short HTTP timeouts)."""
    import mlflow

    from dynpath.tracking.mlflow_env import configure_mlflow_env, existing_store, mlflow_uris

    configure_mlflow_env()
    uri_store = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or _params_tracking_uri()
    if uri.startswith(("models:/", "runs:/")):  # read through a store: it must exist
        uri_store = existing_store(uri_store, f"cannot download model {uri}")
    dst = Path(tempfile.mkdtemp(prefix="dynpath-model-"))
    try:
        # models:/ URIs resolve through MLflow's global registry URI: set it for this download
        # only (mlflow_uris puts the previous globals and their variables back)
        with mlflow_uris(uri_store):
            local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst))
    except BaseException as err:
        shutil.rmtree(dst, ignore_errors=True)  # a failed download leaves no temp directory
        if not isinstance(err, Exception):
            raise
        raise DynpathError(f"cannot download model {uri}: {str(err).splitlines()[0]}") from None
    return Path(local)


CACHE_ENV = "DYNPATH_CACHE"


def cache_dir() -> Path:
    """Where downloaded registry models are kept: ``$DYNPATH_CACHE``, else
    ``$XDG_CACHE_HOME/dynpath``, else ``~/.cache/dynpath``."""
    explicit = os.environ.get(CACHE_ENV, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg) if xdg else Path.home() / ".cache") / "dynpath"


def _registry_ref(uri: str) -> tuple[str, str | None, str | None] | None:
    """``models:/NAME@ALIAS`` -> (NAME, ALIAS, None); ``models:/NAME/3`` -> (NAME, None, "3");
    anything else (a stage such as ``models:/NAME/Production``, ``latest``, a sub-path): None."""
    rest = uri.removeprefix("models:/").strip("/")
    if not uri.startswith("models:/") or not rest:
        return None
    if "@" in rest and "/" not in rest:
        name, alias = rest.rsplit("@", 1)
        return (name, alias, None) if name and alias else None
    parts = rest.split("/")
    if len(parts) == 2 and parts[1].isdigit():
        return parts[0], None, parts[1]
    return None


def cached_registry_model(uri: str, tracking_uri: str | None = None) -> Path | None:
    """The pyfunc directory of a registry model version, downloaded once into
    :func:`cache_dir` and reused by later calls; None when ``uri`` does not name a version or
    an alias (stages, runs, artifact URIs: downloaded each time) or when the cache cannot be
    written (then the caller downloads to a temporary directory, as before).

    The alias is resolved on every call (a promotion moves it), the download is not: a version
    of a registered model never changes. The cache entry is keyed by the registry, the name,
    the version, its run and its creation time, so a registry that was wiped and refilled (a
    new ``version 1``) never reuses an old download. The download lands in a hidden temporary
    directory beside the entry and is renamed into place: a crash leaves no half entry, and two
    processes downloading at once both end with a complete one.
    """
    import hashlib
    import json

    ref = _registry_ref(uri)
    if ref is None:
        return None
    name, alias, version = ref
    import mlflow

    from dynpath.tracking.mlflow_env import configure_mlflow_env, existing_store, mlflow_uris

    configure_mlflow_env()
    uri_store = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or _params_tracking_uri()
    uri_store = existing_store(uri_store, f"cannot download model {uri}")
    try:
        with mlflow_uris(uri_store):
            registry = mlflow.get_registry_uri()
            client = mlflow.MlflowClient()
            if alias is not None:
                mv = client.get_model_version_by_alias(name, alias)
            else:
                mv = client.get_model_version(name, str(version))
    except Exception as err:
        raise DynpathError(f"cannot download model {uri}: {str(err).splitlines()[0]}") from None
    ident = json.dumps([registry, name, str(mv.version), mv.run_id, mv.creation_timestamp])
    key = hashlib.sha256(ident.encode("utf-8")).hexdigest()[:16]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    entry = cache_dir() / "models" / safe / f"v{mv.version}-{key}"
    if (entry / "MLmodel").is_file():
        log.debug("model %s: cached in %s", uri, entry)
        return entry
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    except OSError as err:
        log.warning("model cache %s not writable (%s): downloading without it", entry, err)
        return None
    try:
        with mlflow_uris(uri_store):
            local = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=f"models:/{name}/{mv.version}", dst_path=str(tmp / "model")
                )
            )
        if not (local / "MLmodel").is_file():
            raise DynpathError(f"{uri}: the download has no MLmodel file")
        try:
            local.rename(entry)
        except OSError:
            if not (entry / "MLmodel").is_file():  # not another process's complete entry
                raise
    except DynpathError:
        raise
    except Exception as err:
        raise DynpathError(f"cannot download model {uri}: {str(err).splitlines()[0]}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("model %s (version %s) cached in %s", uri, mv.version, entry)
    return entry


def _params_tracking_uri() -> str | None:
    """``tracking.uri`` of ./params.yaml when present (the project's default store)."""
    from dynpath.config import DEFAULT_PARAMS, ConfigError, load_config

    if not DEFAULT_PARAMS.is_file():
        return None
    try:
        return load_config(DEFAULT_PARAMS).tracking.uri
    except ConfigError:
        return None


def format_spans(result: dict[str, Any]) -> str:
    """Human-readable table of a :meth:`Localizer.predict` result."""
    route = result.get("route") or "n/a (no selector)"
    lines = [
        f"query:    {result['query']}",
        f"duration: {result['duration']:.2f} s   route: {route}   "
        f"model: {result.get('variant', '?')}",
        f"{'#':>3}  {'start (s)':>10}  {'end (s)':>10}  {'score':>8}",
    ]
    for i, span in enumerate(result["spans"], 1):
        lines.append(f"{i:>3}  {span['start']:>10.2f}  {span['end']:>10.2f}  {span['score']:>8.4f}")
    if not result["spans"]:
        lines.append("  (no span)")
    return "\n".join(lines)
