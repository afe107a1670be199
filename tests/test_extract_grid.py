"""The parameter-free `grid` clip descriptor used by the synthetic default."""

from __future__ import annotations

import pytest
import torch

from dynpath.errors import CheckpointError
from dynpath.extract.backbones import build_backbone, normalize_i3d


def _clips(moving: bool) -> torch.Tensor:
    """uint8 [1, 16, 64, 64, 3]: a red square, static or moving right one pixel per frame."""
    x = torch.zeros(1, 16, 64, 64, 3, dtype=torch.uint8)
    for t in range(16):
        left = 8 + (2 * t if moving else 0)
        x[0, t, 24:40, left : left + 16, 0] = 255
    return x


def test_grid_is_parameter_free_and_flagged() -> None:
    loaded = build_backbone("grid", None, seed=0)
    assert loaded.pretrained is False and loaded.weights == "parameter-free"
    assert sum(p.numel() for p in loaded.model.parameters()) == 0
    with pytest.raises(CheckpointError, match="has no weights"):
        build_backbone("grid", "some.pt", seed=0)


def test_grid_describes_colour_position_and_motion() -> None:
    net = build_backbone("grid", None, seed=0).model
    static = net(normalize_i3d(_clips(False)))
    moving = net(normalize_i3d(_clips(True)))
    dim = static.shape[1]
    assert static.shape == (1, 3 * 3 * 8 * 8)
    third = dim // 3
    energy_static, energy_moving = static[0, 2 * third :], moving[0, 2 * third :]
    assert energy_static.abs().max() == 0  # nothing moves: no motion energy
    assert energy_moving.abs().max() > 0.05
    change = moving[0, third : 2 * third].reshape(3, 8, 8)[0]  # red channel, first->second half
    assert change[:, 6:].max() > 0 and change[:, :2].min() < 0  # appears right, leaves left
    assert torch.equal(net(normalize_i3d(_clips(True))), moving)  # deterministic
