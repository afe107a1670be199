"""Reading torch files (checkpoints, backbone weights) without running what is inside them.

It sits in the lowest layer (docs/design.md, "Import rules") because both feature extraction
(backbone weights) and the engine (training checkpoints) load torch files, and extraction sits
below the engine.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import torch

from dynpath.errors import CheckpointError

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
