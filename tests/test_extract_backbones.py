"""Backbones: state_dict layouts equal to the public checkpoints', strict loading, feature dims,
random init flagged and reproducible, and the inference-only BatchNorm folding exact."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from dynpath.errors import CheckpointError
from dynpath.extract.backbones import BACKBONES, build_backbone, normalize_c3d, normalize_i3d
from dynpath.extract.c3d import C3D
from dynpath.extract.i3d import END_POINTS, InceptionI3d

# ---- Transcribed from piergiaj/pytorch-i3d pytorch_i3d.py (InceptionI3d.__init__): the
# Unit3D end points (name, in, out, kernel) and the InceptionModule(in, [b0, b1a, b1b, b2a,
# b2b, b3b]) arguments; each Unit3D holds conv3d (no bias) + bn; logits is a Unit3D with bias
# and no bn. This is test DATA, independent of dynpath.extract.i3d.
I3D_STEM = [
    ("Conv3d_1a_7x7", 3, 64, 7),
    ("Conv3d_2b_1x1", 64, 64, 1),
    ("Conv3d_2c_3x3", 64, 192, 3),
]
I3D_MIXED = [
    ("Mixed_3b", 192, [64, 96, 128, 16, 32, 32]),
    ("Mixed_3c", 256, [128, 128, 192, 32, 96, 64]),
    ("Mixed_4b", 128 + 192 + 96 + 64, [192, 96, 208, 16, 48, 64]),
    ("Mixed_4c", 192 + 208 + 48 + 64, [160, 112, 224, 24, 64, 64]),
    ("Mixed_4d", 160 + 224 + 64 + 64, [128, 128, 256, 24, 64, 64]),
    ("Mixed_4e", 128 + 256 + 64 + 64, [112, 144, 288, 32, 64, 64]),
    ("Mixed_4f", 112 + 288 + 64 + 64, [256, 160, 320, 32, 128, 128]),
    ("Mixed_5b", 256 + 320 + 128 + 128, [256, 160, 320, 32, 128, 128]),
    ("Mixed_5c", 256 + 320 + 128 + 128, [384, 192, 384, 48, 128, 128]),
]

# ---- Transcribed from DavideA/c3d-pytorch C3D_model.py (the c3d.pickle Sports-1M layout).
C3D_LAYOUT = {
    "conv1.weight": (64, 3, 3, 3, 3),
    "conv1.bias": (64,),
    "conv2.weight": (128, 64, 3, 3, 3),
    "conv2.bias": (128,),
    "conv3a.weight": (256, 128, 3, 3, 3),
    "conv3a.bias": (256,),
    "conv3b.weight": (256, 256, 3, 3, 3),
    "conv3b.bias": (256,),
    "conv4a.weight": (512, 256, 3, 3, 3),
    "conv4a.bias": (512,),
    "conv4b.weight": (512, 512, 3, 3, 3),
    "conv4b.bias": (512,),
    "conv5a.weight": (512, 512, 3, 3, 3),
    "conv5a.bias": (512,),
    "conv5b.weight": (512, 512, 3, 3, 3),
    "conv5b.bias": (512,),
    "fc6.weight": (4096, 8192),
    "fc6.bias": (4096,),
    "fc7.weight": (4096, 4096),
    "fc7.bias": (4096,),
    "fc8.weight": (487, 4096),
    "fc8.bias": (487,),
}


def _unit(prefix: str, cin: int, cout: int, k: int, nbt: bool) -> dict[str, tuple[int, ...]]:
    out = {
        f"{prefix}.conv3d.weight": (cout, cin, k, k, k),
        f"{prefix}.bn.weight": (cout,),
        f"{prefix}.bn.bias": (cout,),
        f"{prefix}.bn.running_mean": (cout,),
        f"{prefix}.bn.running_var": (cout,),
    }
    if nbt:
        out[f"{prefix}.bn.num_batches_tracked"] = ()
    return out


def i3d_layout(num_classes: int, nbt: bool = True) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the port's state_dict (``nbt``: with num_batches_tracked buffers)."""
    layout: dict[str, tuple[int, ...]] = {}
    for name, cin, cout, k in I3D_STEM:
        layout |= _unit(name, cin, cout, k, nbt)
    for name, cin, (b0, b1a, b1b, b2a, b2b, b3b) in I3D_MIXED:
        layout |= _unit(f"{name}.b0", cin, b0, 1, nbt)
        layout |= _unit(f"{name}.b1a", cin, b1a, 1, nbt)
        layout |= _unit(f"{name}.b1b", b1a, b1b, 3, nbt)
        layout |= _unit(f"{name}.b2a", cin, b2a, 1, nbt)
        layout |= _unit(f"{name}.b2b", b2a, b2b, 3, nbt)
        layout |= _unit(f"{name}.b3b", cin, b3b, 1, nbt)
    layout["logits.conv3d.weight"] = (num_classes, 1024, 1, 1, 1)
    layout["logits.conv3d.bias"] = (num_classes,)
    return layout


def _shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _synthetic_state(layout: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """Random tensors for a layout, scaled like trained weights (He-scaled kernels, BN stats
    near identity) so activations neither vanish into slow denormals nor explode."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, shape in layout.items():
        if k.endswith("num_batches_tracked"):
            out[k] = torch.tensor(7)
        elif k.endswith("running_var"):
            out[k] = torch.rand(shape, generator=g) + 0.5
        elif k.endswith(("bn.weight",)):
            out[k] = 1 + 0.1 * torch.randn(shape, generator=g)
        elif len(shape) > 1:
            fan_in = int(torch.tensor(shape[1:]).prod())
            out[k] = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
        else:
            out[k] = 0.1 * torch.randn(shape, generator=g)
    return out


def _constant_state(layout: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """One distinct constant per key, stored as stride-0 views: a tiny file for C3D's 78M."""
    return {
        k: torch.full((1,) * len(shape), float(i)).expand(shape) if shape else torch.tensor(i)
        for i, (k, shape) in enumerate(layout.items())
    }


def test_i3d_state_dict_equals_the_public_port_layout() -> None:
    expected = i3d_layout(400)
    assert len(expected) == 3 * 6 + 9 * 6 * 6 + 2 == 344
    assert _shapes(InceptionI3d(num_classes=400)) == expected
    assert _shapes(InceptionI3d(num_classes=157)) == i3d_layout(157)  # rgb_charades.pt


def test_c3d_state_dict_equals_the_public_port_layout() -> None:
    assert _shapes(C3D()) == C3D_LAYOUT


def test_registry_names_and_dims() -> None:
    assert {"i3d", "c3d"} <= set(BACKBONES.names())
    assert BACKBONES.get("i3d").dim == 1024
    assert BACKBONES.get("c3d").dim == 4096
    with pytest.raises(CheckpointError, match="unknown backbone 'x3d'"):
        build_backbone("x3d", None, 0)


@pytest.mark.parametrize("nbt", [True, False])  # checkpoints from PyTorch < 0.4.1 lack it
def test_i3d_strict_load_of_a_port_layout_checkpoint(tmp_path: Path, nbt: bool) -> None:
    state = _synthetic_state(i3d_layout(157, nbt=nbt), seed=1)
    path = tmp_path / "rgb_charades.pt"
    torch.save(state, path)
    loaded = build_backbone("i3d", str(path), seed=0)
    assert loaded.pretrained and loaded.weights == str(path)
    assert loaded.weights_id.startswith("sha256:")
    got = loaded.model.state_dict()
    assert got["logits.conv3d.weight"].shape == (157, 1024, 1, 1, 1)
    torch.testing.assert_close(
        got["Mixed_4e.b2b.conv3d.weight"], state["Mixed_4e.b2b.conv3d.weight"]
    )
    torch.testing.assert_close(
        got["Mixed_5c.b0.bn.running_var"], state["Mixed_5c.b0.bn.running_var"]
    )


def test_c3d_strict_load_wrapped_and_dataparallel_prefixed(tmp_path: Path) -> None:
    state = _constant_state(C3D_LAYOUT)
    path = tmp_path / "c3d.pickle"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    assert path.stat().st_size < 100_000
    loaded = build_backbone("c3d", str(path), seed=0)
    assert loaded.pretrained
    got = loaded.model.state_dict()
    for key in ("conv1.weight", "conv4b.bias", "fc6.weight", "fc8.bias"):
        torch.testing.assert_close(got[key], state[key].contiguous())


def test_mismatching_checkpoints_fail_with_the_keys(tmp_path: Path) -> None:
    state = _constant_state(i3d_layout(400))
    del state["Mixed_4c.b1b.conv3d.weight"]
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"missing 1 keys.*Mixed_4c.*unexpected 1"):
        build_backbone("i3d", str(path), seed=0)
    state = _constant_state(i3d_layout(400))
    state["Mixed_5b.b0.conv3d.weight"] = torch.zeros(256, 832, 3, 3, 3)
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"shape mismatch.*Mixed_5b\.b0\.conv3d"):
        build_backbone("i3d", str(path), seed=0)
    torch.save(_constant_state(C3D_LAYOUT), path)
    with pytest.raises(CheckpointError, match="not a i3d state_dict"):
        build_backbone("i3d", str(path), seed=0)
    with pytest.raises(CheckpointError, match="not found"):
        build_backbone("i3d", str(tmp_path / "nope.pt"), seed=0)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(
        CheckpointError, match=r"junk\.pt: not a readable .*refused, not run"
    ) as info:
        build_backbone("i3d", str(tmp_path / "junk.pt"), seed=0)
    assert "weights_only" not in str(info.value)  # never torch's advice to disable the safe load


def test_random_init_is_flagged_and_reproducible_from_the_seed() -> None:
    a = build_backbone("i3d", None, seed=5)
    b = build_backbone("i3d", None, seed=5)
    c = build_backbone("i3d", None, seed=6)
    assert not a.pretrained and a.weights == "random-init(seed=5)"
    wa = a.model.state_dict()["Mixed_3b.b1b.conv3d.weight"]
    torch.testing.assert_close(wa, b.model.state_dict()["Mixed_3b.b1b.conv3d.weight"])
    assert not torch.equal(wa, c.model.state_dict()["Mixed_3b.b1b.conv3d.weight"])
    # The global RNG is left alone.
    torch.manual_seed(0)
    x = torch.rand(1)
    torch.manual_seed(0)
    build_backbone("i3d", None, seed=9)
    assert torch.equal(torch.rand(1), x)


@pytest.mark.parametrize(("name", "size", "dim"), [("i3d", 32, 1024), ("c3d", 32, 4096)])
def test_feature_dims_and_informative_random_features(name: str, size: int, dim: int) -> None:
    loaded = build_backbone(name, None, seed=0)
    clips = torch.randint(0, 256, (3, 16, size, size, 3), dtype=torch.uint8)
    clips[1] = clips[0]
    with torch.inference_mode():
        y = loaded.model(loaded.spec.normalize(clips))
    assert y.shape == (3, dim) and y.dtype == torch.float32
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y[0], y[1])  # eval mode: deterministic per clip
    assert (y[0] - y[2]).abs().max() > 1e-3 * y.abs().max()  # different clips differ
    assert y.abs().mean() > 1e-2  # scale-preserving init: not vanishing (fp16-safe)


def test_i3d_native_geometry_gives_one_pooled_position() -> None:
    # At the port's native 16 x 224 x 224 the adaptive pool equals its AvgPool3d([2, 7, 7]).
    model = build_backbone("i3d", None, seed=0).model
    trunk = torch.rand(1, 3, 16, 224, 224) * 2 - 1
    with torch.inference_mode():
        for name in END_POINTS:
            trunk = getattr(model, name)(trunk)
    assert trunk.shape == (1, 1024, 2, 7, 7)
    port = torch.nn.functional.avg_pool3d(trunk, (2, 7, 7), stride=1).flatten(1)
    ours = torch.nn.functional.adaptive_avg_pool3d(trunk, 1).flatten(1)
    torch.testing.assert_close(ours, port)


def test_bn_folding_is_exact() -> None:
    model = InceptionI3d(num_classes=10)
    model.load_state_dict(_synthetic_state(i3d_layout(10), seed=4))
    model.eval()
    folded = copy.deepcopy(model).fold_bn_()
    x = torch.rand(2, 3, 16, 32, 32) * 2 - 1
    with torch.inference_mode():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape", [(16, 32, 32), (5, 17, 20), (1, 16, 16)])
def test_space_to_depth_stem_is_exact(shape: tuple[int, int, int]) -> None:
    model = InceptionI3d(num_classes=10)
    model.load_state_dict(_synthetic_state(i3d_layout(10), seed=5))
    model.eval().fold_bn_()
    fast = copy.deepcopy(model).space_to_depth_stem_()
    x = torch.rand(2, 3, *shape) * 2 - 1
    with torch.inference_mode():
        ref = model.Conv3d_1a_7x7(x)
        got = fast.Conv3d_1a_7x7(x)
        assert got.shape == ref.shape
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(fast(x), model(x), rtol=1e-4, atol=1e-5)


def test_normalisation_follows_the_ports() -> None:
    clips = torch.tensor([0, 255, 51], dtype=torch.uint8).view(1, 1, 1, 1, 3)
    i3d = normalize_i3d(clips)
    assert i3d.shape == (1, 3, 1, 1, 1)
    torch.testing.assert_close(i3d.flatten(), torch.tensor([-1.0, 1.0, -0.6]))
    torch.testing.assert_close(normalize_c3d(clips).flatten(), torch.tensor([0.0, 255.0, 51.0]))
