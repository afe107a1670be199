"""Checkpoint round trip under torch.load(weights_only=True), RNG states, and mismatch errors."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dynpath import __version__
from dynpath.engine.checkpoint import (
    capture_rng,
    load_checkpoint,
    make_meta,
    restore_rng,
    save_checkpoint,
)
from dynpath.errors import CheckpointError


class _Evil:
    """An arbitrary Python object: the safe unpickler must refuse it."""


def _payload(variant: str = "dynamic", arch: str = "dynamic") -> tuple[dict, nn.Module]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / 10)
    model(torch.randn(3, 4)).sum().backward()
    opt.step()
    sched.step()
    meta = make_meta(variant, arch, {"model": {"dim": 8, "kernels": [3, 5]}}, 4, 100)
    gen = torch.Generator().manual_seed(7)
    payload = {
        "meta": meta,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "rng": capture_rng(gen),
        "progress": {"epoch": 1, "batches_done": 3, "history": [{"epoch": 1, "val_miou": 1.5}]},
    }
    return payload, model


def test_round_trip_with_weights_only(tmp_path: Path) -> None:
    payload, model = _payload()
    path = save_checkpoint(tmp_path / "last.pt", payload)
    # the raw safe loader must accept the file (no pickled Python objects inside)
    raw = torch.load(path, weights_only=True)
    assert raw["meta"]["dynpath_version"] == __version__
    ckpt = load_checkpoint(path, variant="dynamic", arch="dynamic")
    fresh = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    fresh.load_state_dict(ckpt["model"])
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    opt = torch.optim.Adam(fresh.parameters(), lr=1e-3)
    opt.load_state_dict(ckpt["optimizer"])
    assert ckpt["progress"]["batches_done"] == 3
    assert ckpt["meta"]["config"]["model"]["kernels"] == [3, 5]
    assert not list(tmp_path.glob(".last.pt.*")), "atomic write left a temp file behind"


def test_rng_states_restore_every_stream(tmp_path: Path) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    gen = torch.Generator().manual_seed(4)
    random.gauss(0, 1)  # leaves a cached gaussian in Python's state
    save_checkpoint(tmp_path / "rng.pt", {"rng": capture_rng(gen)})
    expected = (
        random.random(),
        random.gauss(0, 1),
        np.random.rand(3).tolist(),
        torch.rand(3).tolist(),
        torch.rand(2, generator=gen).tolist(),
    )
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    gen.manual_seed(99)
    restore_rng(torch.load(tmp_path / "rng.pt", weights_only=True)["rng"], gen)
    got = (
        random.random(),
        random.gauss(0, 1),
        np.random.rand(3).tolist(),
        torch.rand(3).tolist(),
        torch.rand(2, generator=gen).tolist(),
    )
    assert got == expected


def test_other_variant_or_arch_is_refused_naming_both(tmp_path: Path) -> None:
    payload, _ = _payload(variant="sum_fusion", arch="sum_fusion")
    path = save_checkpoint(tmp_path / "best.pt", payload)
    with pytest.raises(CheckpointError, match=r"'sum_fusion'.*'dynamic'"):
        load_checkpoint(path, variant="dynamic")
    with pytest.raises(CheckpointError, match=r"arch 'sum_fusion'.*'concat_fusion'"):
        load_checkpoint(path, arch="concat_fusion")


def test_other_major_version_is_refused(tmp_path: Path) -> None:
    payload, _ = _payload()
    payload["meta"]["dynpath_version"] = "97.0.0"
    path = save_checkpoint(tmp_path / "best.pt", payload)
    with pytest.raises(CheckpointError, match=rf"97\.0\.0.*{__version__}"):
        load_checkpoint(path)


def test_unreadable_and_unsafe_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "truncated.pt"
    payload, _ = _payload()
    save_checkpoint(bad, payload)
    bad.write_bytes(bad.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(bad)

    unsafe = tmp_path / "unsafe.pt"
    torch.save({"meta": {}, "model": _Evil()}, unsafe)
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(unsafe)
