"""One rule for where torch code runs, shared by extraction, training, evaluation and the Localizer.

There were three, and they disagreed on CUDA: extraction refused an unavailable CUDA request,
training refused it too but picked the rank's GPU under torchrun, and the Localizer passed any
string to torch (a missing GPU surfaced later, as torch's error about moving a model).
"""

from __future__ import annotations

import torch

from dynpath.errors import DynpathError


def resolve_device(
    name: str, local_rank: int | None = None, setting: str = "device"
) -> torch.device:
    """The device ``name`` asks for, on this machine.

    ``auto``: CUDA when available, else the CPU. ``cpu``: the CPU. ``cuda`` / ``cuda:N``: that GPU;
    an error naming ``setting`` (``train.device``, ``--device``, ...) when CUDA is not available
    here, instead of a silent fall back to the CPU. Under torchrun (``local_rank`` given) every CUDA
    choice means this rank's own GPU. A bare ``cuda`` is ``cuda:0``.
    """
    if name == "cpu":
        return torch.device("cpu")
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", local_rank or 0)
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DynpathError(
            f"{setting}={name!r} is not a device (auto, cpu, cuda, cuda:N)"
        ) from None
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise DynpathError(f"{setting}={name!r} but CUDA is not available on this machine")
    if local_rank is not None:
        return torch.device("cuda", local_rank)
    return device if device.index is not None else torch.device("cuda", 0)
