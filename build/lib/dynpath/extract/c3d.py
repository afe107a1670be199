"""C3D (Tran et al., ICCV 2015), written so the public PyTorch Sports-1M checkpoint loads as is.

Layer names and shapes follow the widely used port DavideA/c3d-pytorch ``C3D_model.py`` (conv1,
conv2, conv3a/b, conv4a/b, conv5a/b with biases, fc6 8192->4096, fc7 4096->4096, fc8 4096->487
Sports-1M classes; pool5 pads H and W by 1), so its ``c3d.pickle`` state_dict loads with
``strict=True``. The feature is fc6 after ReLU (4096-d), as in the C3D feature-extraction recipe
TACoS grounding methods use.

Input, as the port's ``predict.py`` prepares it: 16 RGB frames (channel order as read by
skimage, i.e. RGB, not Caffe's BGR), resized to 112 x 200 and centre-cropped to 112 x 112,
float values in [0, 255] with NO mean subtraction. :func:`normalize_c3d` in
:mod:`dynpath.extract.backbones` reproduces that (our frames are short-side resized to the crop
size, which for the port's 4:3..16:9 inputs is the same 112-pixel short side).

Smaller inputs: for 16 x 112 x 112 pool5 yields 512 x 1 x 4 x 4 = 8192 values, which fc6 expects.
Any other clip size (64 px crops, other window lengths) is brought to 1 x 4 x 4 by an adaptive
average pool before the flatten, so fc6's 8192-d input and the checkpoint still fit; at the
native size the pool is skipped and the numbers are the port's exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FEATURE_DIM = 4096
_POOL5_SHAPE = (1, 4, 4)  # pool5 output (T, H, W) for the native 16 x 112 x 112 input


def _pool(h: torch.Tensor, kt: int, pad_hw: int = 0) -> torch.Tensor:
    """The port's max pool (kernel = stride = (kt, 2, 2)), kernel clamped to tiny inputs.

    Clamping only matters for clips shorter than 16 frames or crops under 32 px, where the
    port's pool would fail on a 1-long dimension; at the native size it is the port's pool.
    """
    t, hh, ww = h.shape[-3:]
    k = (min(kt, t), min(2, hh + 2 * pad_hw), min(2, ww + 2 * pad_hw))
    return F.max_pool3d(h, k, k, padding=(0, min(pad_hw, k[1] // 2), min(pad_hw, k[2] // 2)))


class C3D(nn.Module):
    """C3D backbone; ``forward`` returns the [B, 4096] fc6 feature, ``classify`` fc8 logits."""

    feature_dim = FEATURE_DIM

    def __init__(self, num_classes: int = 487) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.conv1 = nn.Conv3d(3, 64, kernel_size=3, padding=1)
        self.conv2 = nn.Conv3d(64, 128, kernel_size=3, padding=1)
        self.conv3a = nn.Conv3d(128, 256, kernel_size=3, padding=1)
        self.conv3b = nn.Conv3d(256, 256, kernel_size=3, padding=1)
        self.conv4a = nn.Conv3d(256, 512, kernel_size=3, padding=1)
        self.conv4b = nn.Conv3d(512, 512, kernel_size=3, padding=1)
        self.conv5a = nn.Conv3d(512, 512, kernel_size=3, padding=1)
        self.conv5b = nn.Conv3d(512, 512, kernel_size=3, padding=1)
        self.fc6 = nn.Linear(8192, 4096)
        self.fc7 = nn.Linear(4096, 4096)
        self.fc8 = nn.Linear(4096, num_classes)
        self.dropout = nn.Dropout(0.5)

    def _fc6(self, x: torch.Tensor) -> torch.Tensor:
        h = _pool(F.relu(self.conv1(x)), 1)
        h = _pool(F.relu(self.conv2(h)), 2)
        h = _pool(F.relu(self.conv3b(F.relu(self.conv3a(h)))), 2)
        h = _pool(F.relu(self.conv4b(F.relu(self.conv4a(h)))), 2)
        h = _pool(F.relu(self.conv5b(F.relu(self.conv5a(h)))), 2, pad_hw=1)
        if tuple(h.shape[-3:]) != _POOL5_SHAPE:
            h = F.adaptive_avg_pool3d(h, _POOL5_SHAPE)
        return F.relu(self.fc6(h.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, T, H, W] RGB in [0, 255] -> [B, 4096] fc6 features (after ReLU)."""
        return self._fc6(x)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """[B, num_classes] fc8 logits (dropout is the identity in eval mode)."""
        h = F.relu(self.fc7(self.dropout(self._fc6(x))))
        return self.fc8(self.dropout(h))
