"""Checkpoints that load with ``torch.load(weights_only=True)`` and resume bit-exactly.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts only, so the safe
unpickler accepts it: every random-number-generator state is converted to tensors (Python's
Mersenne Twister tuple and NumPy's legacy state included), and metadata is JSON-like. It holds:

- ``meta``: dynpath version, variant, arch, the resolved config (JSON dump), feature_dim,
  vocab size; checked on load so a checkpoint of another variant/arch or major version fails
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

import random
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dynpath import __version__
from dynpath.errors import CheckpointError
from dynpath.io import atomic_path

FORMAT = 1


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


_ADVICE_MARKERS = ("weights_only", "Weights only load failed", "trusted source", "file an issue")


def safe_load_failure(err: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, without torch's advice.

    torch's message tells the user to retry with ``weights_only=False``: for a crafted file that
    is exactly the wrong advice (it runs the file's code). What is kept is the reason itself
    (``unsupported GLOBAL posix.system``, ``failed finding central directory``); a text file
    that the unpickler trips over (a bare KeyError/IndexError) becomes "not a torch file".
    """
    text = str(err)
    zipped = re.search(r"failed reading zip archive: ([^.]+)", text)
    if zipped:
        return f"not a valid torch zip archive: {zipped.group(1)}"
    found = re.search(
        r"(Trying to load unsupported GLOBAL [\w.]+|Unsupported global: [^\n]+|"
        r"Unsupported operand \d+|failed finding central directory)",
        text,
    )
    if found:
        return found.group(1).rstrip(". ")
    if isinstance(err, KeyError | IndexError | AttributeError | TypeError | EOFError):
        return "not a file written by torch.save (not a zip/pickle archive)"
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(err).__name__)
    if any(m in first for m in _ADVICE_MARKERS):
        return "refused by the weights-only loader"
    return first[:200]


def torch_load_safely(
    path: Path, map_location: str | torch.device = "cpu", what: str = "dynpath checkpoint"
) -> Any:
    """``torch.load(path, weights_only=True)``; any failure raises :class:`CheckpointError`
    naming ``path`` and the reason (never the advice to disable ``weights_only``)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the "pickle protocol" warning names torch's files
            return torch.load(path, map_location=map_location, weights_only=True)
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a directory; give the checkpoint file") from None
    except PermissionError:
        raise CheckpointError(f"{path}: permission denied") from None
    except Exception as err:
        reason = safe_load_failure(err)
        raise CheckpointError(
            f"{path}: not a readable {what} ({reason}); it is refused, not run"
        ) from None


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
