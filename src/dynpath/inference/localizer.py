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
import os
import shutil
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from dynpath.config import Config
from dynpath.data.spans import indices_to_seconds
from dynpath.device import resolve_device
from dynpath.errors import CheckpointError, DataError, DynpathError, InputTypeError, UsageError
from dynpath.inference.download import cached_registry_model, download_model
from dynpath.inference.inputs import (
    as_matrix,
    check_duration,
    check_query,
    check_topk,
    store_duration,
    video_duration,
)
from dynpath.model.output import NO_ROUTE, ROUTE_NAMES

log = logging.getLogger(__name__)

WEIGHTS_FILE = "best.pt"
VOCAB_FILES = ("vocab.json", "embeddings.npy", "vocab_report.json")


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
            feats = as_matrix(features)
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
        topk = check_topk(topk)
        if not len(feats) == len(queries) == len(durations):
            raise UsageError(
                f"{len(feats)} feature matrices, {len(queries)} queries and {len(durations)} "
                "durations: give one of each per item"
            )
        items = [self._item(f, q, d) for f, q, d in zip(feats, queries, durations, strict=True)]
        max_len = self.cfg.data.max_len
        short = [n for n, it in enumerate(items) if it["video"].shape[0] <= max_len]
        together = self._decode_together([items[n] for n in short], topk)
        answers = dict(zip(short, together, strict=True))
        return [
            answers[n] if n in answers else self._decode_in_windows(item, topk)
            for n, item in enumerate(items)
        ]

    def _item(self, feats: Any, query: Any, duration: Any) -> dict[str, Any]:
        """One checked (features, query, duration) triple as a dataset item (what ``collate``
        batches); the errors name what the model cannot take."""
        query = check_query(query)
        duration = check_duration(duration)
        feats = as_matrix(feats)
        if feats.shape[1] != self.feature_dim:
            raise DataError(
                f"features have dimension {feats.shape[1]}, the model expects "
                f"{self.feature_dim} ({self.cfg.extract.backbone} features)"
            )
        if not duration > 0:
            raise DataError(f"duration must be > 0 seconds, got {duration}")
        return {
            "video": feats,
            "words": np.asarray(self._encode(query), np.int64),
            "start": 0.0,
            "end": float(duration),
            "duration": float(duration),
            "qid": "query",
            "vid": "video",
            "query": query,
        }

    def _decode_together(self, items: list[dict[str, Any]], topk: int) -> list[dict[str, Any]]:
        """The answers of items of at most ``data.max_len`` clips, in one forward pass."""
        from dynpath.data.dataset import collate
        from dynpath.engine.evaluator import decode_batch

        if not items:
            return []
        batch = collate(items).to(self.device)
        with torch.inference_mode():
            out, preds = decode_batch(self.model, batch, k=topk, nms_iou=self.cfg.eval.nms_iou)
            if not (
                torch.isfinite(out.start_logits).all() and torch.isfinite(out.end_logits).all()
            ):
                raise DataError(
                    "the model's scores are not finite for these features: their values are "
                    "out of the range the model was trained on (e.g. 1e38); check the features"
                )
        answers = []
        for b, (item, pred) in enumerate(zip(items, preds, strict=True)):
            probs = None if out.route_probs is None else out.route_probs[b].float().cpu()
            answers.append(
                self._result(
                    item,
                    [(s, e, score) for s, e, score in pred.spans],
                    pred.route,
                    None if probs is None else probs.tolist(),
                    windows=1,
                )
            )
        return answers

    def _decode_in_windows(self, item: dict[str, Any], topk: int) -> dict[str, Any]:
        """The answer for a video longer than ``data.max_len`` clips: overlapping windows of
        ``max_len`` clips, their spans merged (:mod:`dynpath.inference.windows`)."""
        from dynpath.inference.windows import decode_windows

        video, duration = item["video"], item["duration"]
        answer = decode_windows(
            self.model,
            video,
            item["words"],
            topk,
            self.cfg.eval.nms_iou,
            self.cfg.data.max_len,
            self.device,
        )
        t = video.shape[0]
        spans = []
        for c in answer.spans:
            start, end = indices_to_seconds(c.start, c.end, duration, t)
            spans.append((start, end, c.score))
        return self._result(
            item, spans, answer.route, answer.route_probs, windows=len(answer.starts)
        )

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
