"""The process a training runs in: its place in a ``torchrun`` job, its device and autocast dtype,
deterministic kernels, and Ctrl-C deferred to the next step boundary.

Distributed training: launched by ``torchrun`` (WORLD_SIZE/RANK/LOCAL_RANK in the environment),
NCCL on CUDA and gloo on CPU (see :mod:`dynpath.engine.trainer` for how the loop uses it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType

import torch
import torch.distributed as torch_dist

from dynpath.device import resolve_device

# The trainer's messages keep the trainer's logger name (the CLI's log lines print it).
log = logging.getLogger("dynpath.engine.trainer")


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in a ``torchrun`` job (world_size 1 when not distributed)."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_pref: str = "auto") -> DistInfo:
    """Join the process group when launched by ``torchrun`` (WORLD_SIZE > 1); else single process.

    NCCL when the ranks run on CUDA, gloo on CPU. Idempotent: an existing group is reused.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = resolve_device(device_pref, local_rank, setting="train.device").type == "cuda"
    if not torch_dist.is_initialized():
        backend = "nccl" if use_cuda else "gloo"
        if use_cuda:
            torch.cuda.set_device(local_rank)
        torch_dist.init_process_group(backend=backend)
        log.info("joined %s process group: rank %d of %d", backend, rank, world)
    return DistInfo(world_size=world, rank=rank, local_rank=local_rank)


def shutdown_distributed(info: DistInfo) -> None:
    """Leave the process group :func:`init_distributed` joined (nothing on one process)."""
    if info.enabled and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def amp_dtype(enabled: bool, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``train.amp`` on ``device``: bf16 where the GPU has it, else fp16;
    None (full precision) on CPU or when off. Training, validation and evaluation share it."""
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def train_device(pref: str, info: DistInfo | None = None) -> torch.device:
    """``train.device`` on this machine: :func:`dynpath.device.resolve_device`, with this rank's
    GPU under torchrun."""
    info = info or DistInfo()
    return resolve_device(pref, info.local_rank if info.enabled else None, setting="train.device")


def configure_determinism(device: torch.device) -> None:
    """Deterministic kernels where PyTorch has them (warn, not fail, where it has none)."""
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)
    # Deterministic mode also fills every new uninitialised tensor (torch.empty & co.) with NaN,
    # a guard against kernels that read memory they never wrote. None of ours do (the resume
    # and determinism tests hold without it), and the fills cost ~5-10% of a paper-shape CPU
    # training step (1362 fill_ calls per step; docs/performance.md).
    torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]


@contextlib.contextmanager
def denormals_flushed(device: torch.device) -> Iterator[None]:
    """CPU float arithmetic with subnormal numbers flushed to zero (FTZ/DAZ) inside the block.

    Why: once training shrinks some gradients below float32's normal range (~1.2e-38), x86
    cores take a microcode assist on every subnormal operand; oneDNN's LSTM backward then ran
    4x slower (1.8 -> 7.2 ms per call at the default profile's shape) and whole steps 1.5x
    slower, in bursts (docs/performance.md, "Subnormal floats"). Flushing changes results only
    for values below 1.2e-38, i.e. within float rounding. CUDA kernels are unaffected. torch has
    no getter for the flag, so it is reset to torch's default (off) afterwards.
    """
    if device.type != "cpu":
        yield
        return
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


class Interrupt:
    """The Ctrl-C state of one fit: the first SIGINT only sets ``requested`` (the loop stops at
    the next step boundary with a checkpoint); a second one raises KeyboardInterrupt at once, so
    a user is never stuck behind a long step, validation or checkpoint write."""

    def __init__(self) -> None:
        self.requested = False

    def handle(self, signum: int, frame: FrameType | None) -> None:
        # No logging here: the handler runs between any two bytecodes of the main thread, possibly
        # inside a logging or stream write.
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True


@contextlib.contextmanager
def deferred_sigint(enabled: bool) -> Iterator[Interrupt]:
    """Install :class:`Interrupt`'s handler for SIGINT while the block runs; the previous handler
    comes back on exit, also on error.

    Python lets only the main thread install handlers, so elsewhere (and when ``enabled`` is
    False, or SIGINT is ignored, e.g. under ``nohup``) the handler is left alone and Ctrl-C behaves
    as before: an immediate KeyboardInterrupt, the last periodic checkpoint being the one on disk.
    """
    state = Interrupt()
    main = threading.current_thread() is threading.main_thread()
    if not enabled or not main or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield state
        return
    previous = signal.signal(signal.SIGINT, state.handle)
    try:
        yield state
    finally:
        # None: a handler installed outside Python, which cannot be reinstalled from here
        signal.signal(
            signal.SIGINT, previous if previous is not None else signal.default_int_handler
        )
