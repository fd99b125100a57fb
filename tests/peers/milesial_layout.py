"""A stand-in for milesial/Pytorch-UNet's ``UNet`` (``unet/unet_model.py``, ``unet_parts.py``): the
same module tree and forward pass, written for this suite.

milesial/Pytorch-UNet is not a package, so the suite cannot import its class. This module rebuilds
the layout its code describes, with the same state-dict keys:

- ``DoubleConv``: ``double_conv`` = 3×3 conv (padding 1) → BatchNorm2d → ReLU, twice (indices 0, 1, 3,
  4 hold weights); ``mid`` channels for the first conv default to ``out``;
- ``Down``: ``maxpool_conv`` = 2×2 max pooling, then a ``DoubleConv``;
- ``Up``: ``up`` is a 2×2 stride-2 transposed conv to ``in // 2`` channels, or (``bilinear``) a
  ×2 bilinear upsampling with aligned corners and ``conv = DoubleConv(in, out, in // 2)``; the
  upsampled map is zero-padded to the skip's size, split around it (the extra row/column after),
  and ``[skip, up]`` is concatenated;
- ``UNet``: ``inc``, ``down1..4``, ``up1..4``, ``outc`` (1×1 conv, logits); with ``bilinear``
  the bottleneck has half the width.

``base`` and ``depth`` shrink it for tests (64 and 4 reproduce the original); ``bias`` gives the
conv biases of checkpoints written before the project dropped them. The suite's milesial proof is
against this stand-in.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DoubleConv(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, c_mid: int | None = None, bias: bool = False):
        c_mid = c_mid or c_out
        super().__init__()
        self.double_conv = nn.Sequential(
            nn.Conv2d(c_in, c_mid, 3, padding=1, bias=bias),
            nn.BatchNorm2d(c_mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_mid, c_out, 3, padding=1, bias=bias),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )


class Down(nn.Module):
    def __init__(self, c_in: int, c_out: int, bias: bool = False):
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), DoubleConv(c_in, c_out, bias=bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool_conv(x)


class Up(nn.Module):
    def __init__(self, c_in: int, c_out: int, bilinear: bool, bias: bool = False):
        super().__init__()
        if bilinear:
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
            self.conv = DoubleConv(c_in, c_out, c_in // 2, bias=bias)
        else:
            self.up = nn.ConvTranspose2d(c_in, c_in // 2, kernel_size=2, stride=2)
            self.conv = DoubleConv(c_in, c_out, bias=bias)

    def forward(self, below: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = self.up(below)
        dy = skip.shape[2] - up.shape[2]
        dx = skip.shape[3] - up.shape[3]
        up = F.pad(up, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        return self.conv(torch.cat([skip, up], dim=1))


class UNet(nn.Module):
    def __init__(
        self,
        n_channels: int,
        n_classes: int,
        bilinear: bool = False,
        base: int = 64,
        depth: int = 4,
        bias: bool = False,
    ):
        super().__init__()
        self.n_channels, self.n_classes, self.bilinear = n_channels, n_classes, bilinear
        factor = 2 if bilinear else 1
        self.depth = depth
        self.inc = DoubleConv(n_channels, base, bias=bias)
        for k in range(1, depth + 1):
            c_out = base * 2**k if k < depth else base * 2**k // factor
            setattr(self, f"down{k}", Down(base * 2 ** (k - 1), c_out, bias=bias))
        for j in range(1, depth + 1):
            c_in = base * 2 ** (depth + 1 - j)
            c_out = base * 2 ** (depth - j) // factor if j < depth else base
            setattr(self, f"up{j}", Up(c_in, c_out, bilinear, bias=bias))
        self.outc = nn.Module()
        self.outc.conv = nn.Conv2d(base, n_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [self.inc(x)]
        for k in range(1, self.depth + 1):
            features.append(getattr(self, f"down{k}")(features[-1]))
        x = features.pop()
        for j in range(1, self.depth + 1):
            x = getattr(self, f"up{j}")(x, features.pop())
        return self.outc.conv(x)


def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every batch norm non-trivial statistics and affine parameters (fresh ones are 0/1,
    which would hide a mapping that mixes them up)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(1 + 0.2 * torch.randn(n, generator=gen))
                module.bias.copy_(0.1 * torch.randn(n, generator=gen))
                module.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
                module.running_var.copy_(0.5 + torch.rand(n, generator=gen))
    return model.eval()
