"""Clip-feature extraction (paper Eq. 2): videos -> 16-frame clips -> 3D-CNN -> [T, D] per video.

Clips. Frames (see :mod:`dynpath.extract.video`) are cut into windows of ``window`` frames whose
starts are ``stride`` apart. A tail shorter than a window is padded by repeating the last frame so
every frame belongs to a clip (for ``stride <= window``). With ``n`` frames, ``w`` window, ``s``
stride the number of clips is (:func:`num_clips`)::

    n == 0          -> 0 (an empty video is a failure, never a zero-length feature)
    0 < n < w       -> 1 (one padded clip)
    n >= w          -> ceil((n - w) / s) + 1, capped at ceil(n / s) so that no clip starts past
                       the last frame when s > w

e.g. w = s = 16: 16 frames -> 1, 17 -> 2, 40 -> 3, 48 -> 3; w = 16, s = 8: 40 frames -> 4.

Store. One float32 dataset [T, D] per video id (the file stem) in an HDF5 file whose attrs record
backbone, dim, fps (0.0: each video's own rate), window, stride, size, pretrained, weights
(checkpoint path or ``random-init(seed=N)``), weights_id (sha256 of the checkpoint) and failures
(JSON) -- the layout :mod:`dynpath.data.features` reads. Each dataset's attrs give its fps,
source_fps, n_frames and precision (fp32 / bfloat16 / fp16-autocast). Writing is atomic and
resumable:

- extraction writes ``<output>.partial`` and flushes after each video; a video's dataset counts
  as done only once its ``complete`` attr is set, so a half-written one is redone;
- ``<output>`` appears only by ``os.replace`` of the closed, finished partial file, so a killed run
  never leaves an unreadable or incomplete final file;
- a re-run skips videos already in ``<output>`` or in a ``.partial`` whose attrs match (same
  backbone, weights, geometry); a partial file h5py cannot open is discarded and restarted;
- an unreadable, corrupt, truncated or empty video is reported by name (log warning, the summary,
  the ``failures`` attr and ``<output>.failures.json``) and skipped; the run fails with a
  DataError only when failures exceed ``extract.max_failures`` (a fraction of the videos if < 1,
  else a count), leaving the partial file so that the next run resumes.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import shutil
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from tqdm import tqdm

from dynpath.config import ExtractConfig
from dynpath.device import resolve_device
from dynpath.errors import DataError, OutputError
from dynpath.extract.backbones import LoadedBackbone, build_backbone
from dynpath.extract.i3d import InceptionI3d
from dynpath.extract.video import VideoReader, list_videos
from dynpath.io import ensure_room, space_errno, write_json

log = logging.getLogger(__name__)

# File attrs that must match for a previous (partial) output to be reused.
MATCH_ATTRS = ("backbone", "dim", "fps", "window", "stride", "size", "weights_id")


def num_clips(n_frames: int, window: int, stride: int) -> int:
    """Number of clips for ``n_frames`` frames (module docstring: the tail is padded)."""
    if n_frames <= 0:
        return 0
    if n_frames < window:
        return 1
    return min(math.ceil((n_frames - window) / stride) + 1, math.ceil(n_frames / stride))


def iter_clips(frames: Iterable[np.ndarray], window: int, stride: int) -> Iterator[np.ndarray]:
    """Stream [window, H, W, 3] clips out of a frame stream, holding at most ``window`` frames.

    Full windows are emitted as soon as they are complete; when the stream ends, one last clip
    padded with copies of the final frame covers any frames not yet in a clip.
    """
    buf: deque[np.ndarray] = deque()
    next_start = 0
    n = 0
    emitted = 0
    for frame in frames:
        if n >= next_start:  # frames between clips (stride > window) are never buffered
            buf.append(frame)
        n += 1
        if len(buf) == window:
            yield np.stack(buf)
            emitted += 1
            next_start += stride
            for _ in range(min(stride, window)):
                buf.popleft()
    missing = num_clips(n, window, stride) - emitted
    if missing == 1 and buf:
        tail = list(buf)
        tail.extend([tail[-1]] * (window - len(tail)))
        yield np.stack(tail)
    elif missing != 0:  # impossible by construction; guards the count formula
        raise RuntimeError(f"clip count mismatch: {n} frames, {emitted} clips, {missing} missing")


@dataclass
class VideoFeatures:
    """Features of one video and where they came from."""

    features: np.ndarray  # [T, D] float32
    n_frames: int  # frames fed to the backbone (after resampling)
    fps: float  # their rate
    source_fps: float


def cpu_bf16_supported() -> bool:
    """Whether oneDNN runs bfloat16 natively here (AVX512-BF16 / AMX), i.e. bf16 is a speed-up."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class ClipFeatureExtractor:
    """Runs one backbone over the clips of videos, batched, on CPU or GPU.

    Precision (``extract.amp``): on CUDA, fp16 autocast; on a CPU with native bfloat16 (AMX or
    AVX512-BF16, as oneDNN reports) the network runs in bfloat16, measured 2x (I3D) to 4x (C3D)
    faster than fp32 on 2 cores, with features within ~0.6% (relative L2) of fp32; elsewhere,
    or with ``amp: false``, fp32. The precision is recorded with the features.

    For inference the BatchNorms of I3D are folded into the convolutions and the network uses
    the channels-last-3d memory format: both measured faster on CPU.
    """

    def __init__(
        self, backbone: LoadedBackbone, cfg: ExtractConfig, device: torch.device | None = None
    ) -> None:
        self.backbone = backbone
        self.cfg = cfg
        self.device = device or resolve_device(cfg.device, setting="extract.device")
        model = backbone.model
        if isinstance(model, InceptionI3d):
            model = _folded_copy(model)
        self.amp = bool(cfg.amp and self.device.type == "cuda")
        self.dtype = torch.float32
        has_weights = any(True for _ in model.parameters())  # not for parameter-free descriptors
        if cfg.amp and has_weights and self.device.type == "cpu" and cpu_bf16_supported():
            self.dtype = torch.bfloat16
        self.precision = "fp16-autocast" if self.amp else str(self.dtype).removeprefix("torch.")
        if isinstance(model, InceptionI3d) and self.dtype == torch.bfloat16:
            model.space_to_depth_stem_()  # ~3x faster stem in bf16 (see SpaceToDepthStem)
        model = model.to(self.device, self.dtype)
        model = model.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
        self.model = model.eval()

    def _autocast(self) -> AbstractContextManager[Any]:
        if self.amp:
            return torch.autocast("cuda", dtype=torch.float16)
        return nullcontext()

    @torch.inference_mode()
    def run_clips(self, clips: list[np.ndarray]) -> np.ndarray:
        """[B] clips of [window, H, W, 3] uint8 -> [B, D] float32 features."""
        x = torch.from_numpy(np.stack(clips)).to(self.device, non_blocking=True)
        x = self.backbone.spec.normalize(x).to(self.dtype)
        x = x.contiguous(memory_format=torch.channels_last_3d)
        with self._autocast():
            y = self.model(x)
        return y.float().cpu().numpy()

    def video(self, path: Path) -> VideoFeatures:
        """Features of one video; DataError when it cannot be decoded or has no frames."""
        cfg = self.cfg
        out: list[np.ndarray] = []
        batch: list[np.ndarray] = []
        with VideoReader(path, cfg.size, cfg.frame_rate) as reader:
            for clip in iter_clips(reader, cfg.window, cfg.stride):
                batch.append(clip)
                if len(batch) == cfg.batch_size:
                    out.append(self.run_clips(batch))
                    batch = []
            if batch:
                out.append(self.run_clips(batch))
            feats = np.concatenate(out).astype(np.float32, copy=False)
            expected = num_clips(reader.frames, cfg.window, cfg.stride)
            if feats.shape[0] != expected:
                raise RuntimeError(f"{path}: {feats.shape[0]} clips, expected {expected}")
            return VideoFeatures(feats, reader.frames, reader.fps, reader.source_fps)


def _folded_copy(model: InceptionI3d) -> InceptionI3d:
    """An inference copy with BatchNorm folded (the loaded model keeps the port's layout)."""
    import copy

    return copy.deepcopy(model).fold_bn_()


# ---------------------------------------------------------------- the HDF5 store, resumable


@dataclass
class StoreAttrs:
    """File-level attrs of a feature store (``fps`` 0.0 = each video's own rate)."""

    backbone: str
    dim: int
    fps: float
    window: int
    stride: int
    size: int
    pretrained: bool
    weights: str
    weights_id: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def matches(self, attrs: Mapping[str, Any]) -> bool:
        mine = self.as_dict()
        try:
            return all(_same(attrs[k], mine[k]) for k in MATCH_ATTRS)
        except KeyError:
            return False


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bytes):
        a = a.decode()
    if isinstance(b, float) or isinstance(a, np.floating | float):
        return math.isclose(float(a), float(b), rel_tol=0, abs_tol=1e-9)
    return bool(a == b)


def _open_existing(path: Path, attrs: StoreAttrs, what: str) -> set[str] | None:
    """Ids of the complete datasets of an existing store with matching attrs, else None.

    In the final output every dataset is complete; in a partial file only those with the
    ``complete`` attr (set after the data) are. Unreadable or mismatching files return None.
    """
    if not path.exists():
        return None
    try:
        with h5py.File(path, "r") as f:
            if not attrs.matches(f.attrs):
                log.warning("%s: %s has different extraction settings; not reused", path, what)
                return None
            done = set()
            for key, ds in f.items():
                if not isinstance(ds, h5py.Dataset) or ds.ndim != 2 or ds.shape[1] != attrs.dim:
                    continue
                if what == "output" or bool(ds.attrs.get("complete", False)):
                    done.add(key)
            return done
    except (OSError, KeyError, ValueError) as err:
        log.warning("%s: %s cannot be opened (%s); discarding it", path, what, err)
        return None


def _partial_path(output: Path) -> Path:
    return output.with_name(output.name + ".partial")


def _failures_path(output: Path) -> Path:
    return output.with_name(output.name + ".failures.json")


def _failure_limit(max_failures: float, n_videos: int) -> float:
    return max_failures * n_videos if max_failures < 1 else max_failures


@dataclass
class ExtractionSummary:
    """What one extraction run did (the step's return value, JSON-able)."""

    output: str
    backbone: str
    dim: int
    pretrained: bool
    weights: str
    device: str
    precision: str = ""
    videos: int = 0
    extracted: int = 0
    skipped: int = 0
    failed: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    clips: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["clips_per_s"] = round(self.clips / self.seconds, 2) if self.seconds > 0 else 0.0
        d["seconds"] = round(self.seconds, 2)
        return d


def extract_directory(
    videos: Path,
    output: Path,
    backbone: str,
    cfg: ExtractConfig,
    weights: str | None,
    seed: int,
    progress: bool = True,
) -> dict[str, Any]:
    """Extract features of every video in ``videos`` into ``output`` (atomic, resumable).

    A full disk (or file-size/quota limit) while writing is an :class:`OutputError` naming the
    partial store: h5py's own message names neither the output nor what to do.
    """
    try:
        return _extract_directory(videos, output, backbone, cfg, weights, seed, progress)
    except (OSError, RuntimeError) as err:
        partial = _partial_path(output)
        if isinstance(err, OutputError):  # ensure_room, or a sidecar written by atomic_path
            code, reason, name = err.errno, str(err.strerror), str(err.filename)
        else:
            code = space_errno(err)
            if code is None:
                raise
            reason, name = os.strerror(code), str(partial)
        raise OutputError(
            code,
            reason,
            name,
            note=f"{output} is unchanged; free some space and re-run: the complete videos in "
            f"{partial.name} are kept",
        ) from err


def _load_backbone(
    backbone: str, cfg: ExtractConfig, weights: str | None, seed: int
) -> tuple[LoadedBackbone, StoreAttrs]:
    """The backbone (warning when its weights are not pretrained) and the store attributes that
    say how the features were made."""
    loaded = build_backbone(backbone, weights, seed)
    if not loaded.pretrained:
        log.warning(
            "extract: no checkpoint for %s; using %s, the features are NOT pretrained",
            backbone,
            loaded.weights,
        )
    attrs = StoreAttrs(
        backbone=backbone,
        dim=loaded.spec.dim,
        fps=float(cfg.frame_rate or 0.0),
        window=cfg.window,
        stride=cfg.stride,
        size=cfg.size,
        pretrained=loaded.pretrained,
        weights=loaded.weights,
        weights_id=loaded.weights_id,
    )
    return loaded, attrs


def _start_partial(
    output: Path, partial: Path, attrs: StoreAttrs, final_done: set[str] | None
) -> set[str]:
    """The videos already complete in the partial store, which a killed run left or which is
    started here: empty, or from the finished store when new videos are to be added to it."""
    partial_done = _open_existing(partial, attrs, "partial file")
    if partial_done is not None:
        return partial_done
    partial.unlink(missing_ok=True)
    if final_done is not None:  # new videos to add to a finished store: continue from it
        shutil.copyfile(output, partial)
        with h5py.File(partial, "a") as f:
            for key in final_done:
                f[key].attrs["complete"] = True
        return final_done
    with h5py.File(partial, "w") as f:
        f.attrs.update(attrs.as_dict())
    return set()


def _write_video(f: Any, partial: Path, vid: str, vf: VideoFeatures, precision: str) -> None:
    """One video's features into the open store, marked complete only once written."""
    if vid in f:  # an incomplete dataset from a killed run
        del f[vid]
    ensure_room(partial, vf.features.nbytes)  # a failed HDF5 write cannot be undone
    ds = f.create_dataset(vid, data=vf.features)
    ds.attrs.update(
        {
            "fps": vf.fps,
            "source_fps": vf.source_fps,
            "n_frames": vf.n_frames,
            "precision": precision,
        }
    )
    ds.attrs["complete"] = True
    f.flush()


def _extract_into(
    partial: Path,
    todo: list[Path],
    extractor: ClipFeatureExtractor,
    summary: ExtractionSummary,
    backbone: str,
    progress: bool,
) -> None:
    """Extract ``todo`` into the partial store; a video that cannot be decoded is skipped and
    recorded in ``summary.failures`` (and in the store's ``failures`` attribute)."""
    t0 = time.perf_counter()
    with h5py.File(partial, "a") as f:
        # disable=None: drawn on a terminal only (a log file would get one line per redraw)
        bar = tqdm(
            todo, desc=f"extract {backbone}", unit="video", disable=None if progress else True
        )
        for path in bar:
            try:
                vf = extractor.video(path)
            except DataError as err:
                log.warning("extract: skipping %s: %s", path.name, err)
                summary.failures.append({"video": path.name, "error": str(err)})
                continue
            _write_video(f, partial, path.stem, vf, extractor.precision)
            summary.extracted += 1
            summary.clips += int(vf.features.shape[0])
            elapsed = time.perf_counter() - t0
            bar.set_postfix(clips_per_s=f"{summary.clips / max(elapsed, 1e-9):.1f}")
        summary.seconds = time.perf_counter() - t0
        summary.failed = len(summary.failures)
        f.attrs["failures"] = json.dumps(summary.failures)


def _extract_directory(
    videos: Path,
    output: Path,
    backbone: str,
    cfg: ExtractConfig,
    weights: str | None,
    seed: int,
    progress: bool,
) -> dict[str, Any]:
    paths = list_videos(videos)
    if not paths:
        raise DataError(f"{videos}: no video files (looked for common video suffixes)")
    loaded, attrs = _load_backbone(backbone, cfg, weights, seed)
    summary = ExtractionSummary(
        output=str(output),
        backbone=backbone,
        dim=attrs.dim,
        pretrained=loaded.pretrained,
        weights=loaded.weights,
        device="",
        videos=len(paths),
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = _partial_path(output)
    ids = [p.stem for p in paths]
    final_done = _open_existing(output, attrs, "output")
    if final_done is not None and set(ids) <= final_done:
        partial.unlink(missing_ok=True)
        summary.skipped = len(ids)
        summary.device = "none (all videos already extracted)"
        summary.precision = "n/a"
        log.info("extract: all %d videos already in %s", len(ids), output)
        return summary.as_dict()

    partial_done = _start_partial(output, partial, attrs, final_done)
    extractor = ClipFeatureExtractor(loaded, cfg)
    summary.device = str(extractor.device)
    summary.precision = extractor.precision
    todo = [p for p in paths if p.stem not in partial_done]
    summary.skipped = len(paths) - len(todo)
    _extract_into(partial, todo, extractor, summary, backbone, progress)
    _write_failures(output, summary.failures)

    limit = _failure_limit(cfg.max_failures, len(paths))
    if summary.failed > limit:
        names = ", ".join(x["video"] for x in summary.failures[:20])
        raise DataError(
            f"{videos}: {summary.failed} of {len(paths)} videos could not be decoded "
            f"(extract.max_failures={cfg.max_failures}): {names}; details in "
            f"{_failures_path(output)}; the partial store {partial} resumes on the next run"
        )
    _fsync(partial)
    os.replace(partial, output)
    log.info(
        "extract: %d extracted, %d skipped, %d failed, %d clips (%.1f clips/s) -> %s",
        summary.extracted,
        summary.skipped,
        summary.failed,
        summary.clips,
        summary.clips / max(summary.seconds, 1e-9),
        output,
    )
    return summary.as_dict()


def _write_failures(output: Path, failures: list[dict[str, str]]) -> None:
    path = _failures_path(output)
    if failures:
        write_json(path, failures)
    else:
        path.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


# ---------------------------------------------------------------- on-the-fly (Localizer)


@functools.lru_cache(maxsize=2)
def _cached_extractor(
    backbone: str, weights: str | None, seed: int, cfg: ExtractConfig, device: str
) -> ClipFeatureExtractor:
    loaded = build_backbone(backbone, weights, seed)
    return ClipFeatureExtractor(loaded, cfg, resolve_device(device, setting="extract.device"))


def extract_video_features(
    path: str | Path,
    backbone_name: str,
    cfg_extract: ExtractConfig,
    weights: str | None,
    device: str | torch.device | None = None,
    seed: int = 12345,
) -> np.ndarray:
    """[T, D] float32 features of one video, extracted exactly as ``dynpath extract`` would.

    ``seed`` must be the config's seed when ``weights`` is None, so the random-init backbone is
    the one the model was trained on. The built backbone is cached across calls.
    """
    dev = str(device) if device is not None else cfg_extract.device
    extractor = _cached_extractor(backbone_name, weights, seed, cfg_extract, dev)
    return extractor.video(Path(path)).features
