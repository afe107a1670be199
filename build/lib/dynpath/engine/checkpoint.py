"""Checkpoints that load with ``torch.load(weights_only=True)`` and resume bit-exactly.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts only, so the safe
unpickler accepts it: every random-number-generator state is converted to tensors (Python's
Mersenne Twister tuple and NumPy's legacy state included), and metadata is JSON-like. It holds:

- ``meta``: dynpath version, variant, arch, the resolved config (JSON dump), feature_dim,
  vocab size and the vocabulary's fingerprint (``vocab_sha256``, :func:`check_vocab`); checked
  on load so a checkpoint of another variant/arch or major version fails
  with a :class:`CheckpointError` naming both sides instead of a shape error deep in PyTorch.
- ``model``/``optimizer``/``scheduler``/``scaler``: state dicts.
- ``rng``: Python, NumPy, torch CPU (and CUDA) states at the moment of saving.
- ``progress``: epoch, batches consumed in that epoch, global step, running loss sums of the
  epoch, history so far, best validation value/epoch; enough to replay the remaining batches of a
  half-finished epoch in the same order (see :mod:`dynpath.engine.trainer`).

Writes go through :func:`dynpath.io.atomic_path`, so a kill during ``torch.save`` leaves the
previous checkpoint intact.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dynpath import __version__
from dynpath.errors import CheckpointError
from dynpath.io import atomic_path
from dynpath.torch_files import torch_load_safely

FORMAT = 1
#: The meta key of the vocabulary's identity (:meth:`dynpath.data.vocab.Vocabulary.fingerprint`).
VOCAB_KEY = "vocab_sha256"
#: The meta key of the feature store's identity (``FeatureStore.identity``).
FEATURES_KEY = "features_identity"

log = logging.getLogger(__name__)


def major(version: str) -> str:
    """The major component of a dotted version ("0.1.0" -> "0")."""
    return version.split(".", 1)[0]


def make_meta(
    variant: str,
    arch: str,
    config: dict[str, Any],
    feature_dim: int,
    vocab_size: int,
    **extra: Any,
) -> dict[str, Any]:
    """Checkpoint metadata; ``config`` must be JSON-like (``cfg.model_dump(mode="json")``)."""
    return {
        "format": FORMAT,
        "dynpath_version": __version__,
        "variant": variant,
        "arch": arch,
        "config": config,
        "feature_dim": int(feature_dim),
        "vocab_size": int(vocab_size),
        **extra,
    }


def check_vocab(
    meta: dict[str, Any], size: int, fingerprint: str, vocab: Path, weights: Path
) -> None:
    """Refuse a vocabulary that is not the one ``weights`` was trained with.

    The size is not enough: a vocabulary of the same size with other word ids (another
    ``dynpath vocab`` run, another dataset) fits the same shapes and silently gives other
    spans. A checkpoint written before the fingerprint was recorded is only warned about.
    ``vocab`` is the vocabulary directory, ``weights`` the checkpoint, both named in the error.
    """
    expected = int(meta.get("vocab_size", size))
    if size != expected:
        raise CheckpointError(
            f"{vocab}: vocabulary has {size} words but {weights} was trained with "
            f"{expected}; use the vocab directory of that training run"
        )
    recorded = meta.get(VOCAB_KEY)
    if recorded is None:
        log.warning(
            "%s records no vocabulary fingerprint (trained before it was recorded): cannot check "
            "that %s is its vocabulary, only its size",
            weights,
            vocab,
        )
        return
    if str(recorded) != fingerprint:
        raise CheckpointError(
            f"{vocab / 'vocab.json'}: not the vocabulary {weights} was trained with (both "
            f"have {size} words, but other words or word ids: {fingerprint[:19]} vs "
            f"{str(recorded)[:19]}); use the vocab directory of that training run"
        )


def check_features(
    meta: dict[str, Any], identity: dict[str, Any], store: Path, weights: Path
) -> None:
    """Refuse a feature store whose identity attributes (backbone, clip window, frame rate,
    backbone weights, ...) differ from those of the store ``weights`` was trained on: features
    of the same width from another extraction fit the model and silently give other spans.
    Checkpoints without the record (older ones) are not checked."""
    recorded = meta.get(FEATURES_KEY)
    if not isinstance(recorded, dict):
        return
    differ = [k for k in sorted(recorded) if k in identity and recorded[k] != identity[k]]
    if differ:
        shown = ", ".join(f"{k} {identity[k]!r} vs {recorded[k]!r}" for k in differ)
        raise CheckpointError(
            f"{store}: not the features {weights} was trained on ({shown}); use the feature "
            "store of that training run (data.features)"
        )


# --------------------------------------------------------------------------- RNG states


def capture_rng(generator: torch.Generator | None = None) -> dict[str, Any]:
    """All RNG states as tensors/primitives (safe for ``weights_only`` loading)."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {
            "version": int(py_version),
            "state": torch.tensor(py_state, dtype=torch.int64),
            "gauss": py_gauss,
        },
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64).copy()),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    if generator is not None:
        state["generator"] = generator.get_state()
    return state


def restore_rng(state: dict[str, Any], generator: torch.Generator | None = None) -> None:
    """Inverse of :func:`capture_rng`."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    nps = state["numpy"]
    np.random.set_state(
        (
            nps["name"],
            nps["keys"].numpy().astype(np.uint32),
            nps["pos"],
            nps["has_gauss"],
            nps["gauss"],
        )
    )
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    if generator is not None and "generator" in state:
        generator.set_state(state["generator"])


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) from one integer."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


# --------------------------------------------------------------------------- save / load


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` atomically (temp file + fsync + rename).

    ``torch.save`` writes through a Python file object: given a path, PyTorch's zip writer
    reports a full disk as ``RuntimeError: unexpected pos ...`` with no file name and no errno;
    through a file object the failing ``write`` leaves the real OSError behind it, which
    :func:`~dynpath.io.atomic_path` turns into an :class:`~dynpath.errors.OutputError` naming
    ``path`` (the previous checkpoint is untouched).
    """
    path = Path(path)
    with atomic_path(path, suffix=".pt") as tmp, open(tmp, "wb") as fh:
        torch.save(payload, fh)
    return path


def load_checkpoint(
    path: str | Path,
    variant: str | None = None,
    arch: str | None = None,
    map_location: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Load a checkpoint safely and check it belongs to ``variant``/``arch`` and this version.

    Raises :class:`CheckpointError` (naming the file and both sides of any mismatch) for a
    missing, truncated or unsafe file, another variant/arch, or another dynpath major version.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory; give the checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    ckpt = torch_load_safely(path, map_location)
    if not isinstance(ckpt, dict) or "meta" not in ckpt or "model" not in ckpt:
        raise CheckpointError(f"{path}: not a dynpath checkpoint (no 'meta'/'model' entries)")
    meta = ckpt["meta"]
    if not isinstance(meta, dict) or not isinstance(ckpt["model"], dict):
        raise CheckpointError(f"{path}: not a dynpath checkpoint ('meta'/'model' not mappings)")
    theirs = str(meta.get("dynpath_version", "?"))
    if major(theirs) != major(__version__):
        raise CheckpointError(
            f"{path}: written by dynpath {theirs}, this is dynpath {__version__} "
            f"(major versions {major(theirs)} != {major(__version__)}); retrain or use {theirs}"
        )
    if variant is not None and meta.get("variant") != variant:
        raise CheckpointError(
            f"{path}: checkpoint is for variant {meta.get('variant')!r}, "
            f"not the requested variant {variant!r}"
        )
    if arch is not None and meta.get("arch") != arch:
        raise CheckpointError(
            f"{path}: checkpoint is for arch {meta.get('arch')!r}, not the requested arch {arch!r}"
        )
    return ckpt
