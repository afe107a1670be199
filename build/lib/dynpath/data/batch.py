"""The padded training/evaluation batch: the one contract between data, model and engine."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor


@dataclass
class Batch:
    """A collated batch. Masks are bool with True on valid positions.

    ``start``/``end`` are inclusive feature indices of the ground truth (docs/design.md mapping) and
    ``inner`` marks ``start <= t <= end``. ``gt_seconds`` is the clipped ground truth in seconds,
    which evaluation uses; ``num_positions`` is T before padding (after ``max_len`` resampling).
    """

    video: Tensor  # [B, T, D] float32
    video_mask: Tensor  # [B, T] bool
    words: Tensor  # [B, L] int64 word ids (0 = PAD, 1 = UNK)
    word_mask: Tensor  # [B, L] bool
    start: Tensor  # [B] int64
    end: Tensor  # [B] int64
    inner: Tensor  # [B, T] float32 in {0, 1}
    durations: Tensor  # [B] float32 seconds
    gt_seconds: Tensor  # [B, 2] float32 seconds
    num_positions: Tensor  # [B] int64
    qids: list[str]
    vids: list[str]
    queries: list[str]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        moved = {
            f.name: getattr(self, f.name).to(device, non_blocking=non_blocking)
            for f in fields(self)
            if isinstance(getattr(self, f.name), Tensor)
        }
        return replace(self, **moved)

    def __len__(self) -> int:
        return len(self.qids)
