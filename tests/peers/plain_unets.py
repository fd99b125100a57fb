"""Plain U-Nets of standard torch modules, written for this suite in the styles public repositories
use, none of them laid out as this project's plan: each is read from its graph
(:func:`unet_torch.graph.read_torch_graph`) and proven against its own forward pass.

- :class:`FlatUNet`: one flat ``forward`` over a ``ModuleDict``, functional ReLU (``F.relu``,
  ``torch.relu``, ``Tensor.relu``) and pooling, nearest ×2 then a 2×2 'same' conv and ReLU as the up
  step, ``[up, skip]``, a ``contiguous()`` that changes nothing, a sigmoid in ``forward``;
- :class:`ListUNet`: encoder and decoder as ``ModuleList`` loops over ``Sequential`` blocks, a
  shared pooling module, transposed convs, a leaky ReLU, instance norm (affine or not, or a
  ``GroupNorm`` with one group per channel), ``F.pad`` of the upsampled map to the skip's size,
  all rows after it, and ``[skip, up]``;
- :class:`ValidUNet`: the paper's valid convolutions, the skip centre-cropped by slicing (or by
  torchvision's ``center_crop``), channel dropout after the bottleneck, a softmax in ``forward``;
- :class:`BilinearUNet`: bilinear ×2 then a 1×1 conv, the activation before a batch norm with
  its own epsilon and momentum, the upsampled map padded to the skip's size around it;
- :class:`PooledResizeUNet`: the starting model's layout: pooled skips resized bilinearly to the
  upsampled map;
- :class:`AttentionPlainUNet`: the Attention U-Net family's plain U-Net: ``Upsample`` → 3×3 conv →
  batch norm → ReLU as the up step;
- :class:`BranchyUNet`: pads only when the sizes differ (Python control flow on sizes, which
  ``torch.fx`` cannot trace).

:func:`randomise` gives every norm non-trivial parameters and statistics.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms.functional import center_crop


def _conv(c_in: int, c_out: int, k: int = 3, padding: int | str = 1, bias: bool = True):
    return nn.Conv2d(c_in, c_out, k, padding=padding, bias=bias)


class FlatUNet(nn.Module):
    """Depth 2, same padding, no norm."""

    def __init__(self, in_channels: int = 1, classes: int = 1, base: int = 4) -> None:
        super().__init__()
        b = base
        self.layers = nn.ModuleDict(
            {
                "c1a": _conv(in_channels, b), "c1b": _conv(b, b),
                "c2a": _conv(b, 2 * b), "c2b": _conv(2 * b, 2 * b),
                "c3a": _conv(2 * b, 4 * b), "c3b": _conv(4 * b, 4 * b),
                "up2": _conv(4 * b, 2 * b, 2, "same"),
                "d2a": _conv(4 * b, 2 * b), "d2b": _conv(2 * b, 2 * b),
                "up1": _conv(2 * b, b, 2, "same"),
                "d1a": _conv(2 * b, b), "d1b": _conv(b, b),
                "out": _conv(b, classes, 1, 0),
            }
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.layers
        e1 = F.relu(m["c1b"](F.relu(m["c1a"](x))))
        e2 = torch.relu(m["c2b"](torch.relu(m["c2a"](F.max_pool2d(e1, 2)))))
        mid = m["c3b"](m["c3a"](F.max_pool2d(e2, kernel_size=2)).relu()).relu()
        u2 = F.relu(m["up2"](F.interpolate(mid, scale_factor=2, mode="nearest")))
        d2 = F.relu(m["d2b"](F.relu(m["d2a"](torch.cat([u2, e2], dim=1)))))
        u1 = F.relu(m["up1"](F.interpolate(d2, scale_factor=2.0)))
        d1 = F.relu(m["d1b"](F.relu(m["d1a"](torch.cat((u1, e1), 1).contiguous()))))
        return torch.sigmoid(m["out"](d1))


def _norm(kind: str, c: int) -> nn.Module:
    if kind == "group":
        return nn.GroupNorm(c, c)
    return nn.InstanceNorm2d(c, affine=kind == "instance")


class ListUNet(nn.Module):
    """Depth ``depth``, same padding; ``norm`` is ``"instance"`` (affine), ``"plain"`` (instance
    norm without affine parameters) or ``"group"`` (one group per channel)."""

    def __init__(
        self, in_channels: int = 3, classes: int = 2, base: int = 4, depth: int = 3,
        norm: str = "instance", slope: float = 0.1,
    ) -> None:  # fmt: skip
        super().__init__()

        def block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(
                _conv(c_in, c_out, bias=False), _norm(norm, c_out), nn.LeakyReLU(slope, True),
                _conv(c_out, c_out, bias=False), _norm(norm, c_out), nn.LeakyReLU(slope, True),
            )  # fmt: skip

        widths = [base * 2**i for i in range(depth + 1)]
        self.encoder = nn.ModuleList(
            [block(c_in, c) for c_in, c in zip([in_channels, *widths[:-1]], widths, strict=True)]
        )
        self.pool = nn.MaxPool2d(2)
        self.ups = nn.ModuleList(
            [
                nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2)
                for i in reversed(range(depth))
            ]
        )
        self.decoder = nn.ModuleList(
            [block(2 * widths[i], widths[i]) for i in reversed(range(depth))]
        )
        self.head = nn.Conv2d(base, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, level in enumerate(self.encoder):
            x = level(x)
            if i < len(self.encoder) - 1:
                skips.append(x)
                x = self.pool(x)
        for up, level, skip in zip(self.ups, self.decoder, reversed(skips), strict=True):
            x = up(x)
            dy, dx = skip.shape[2] - x.shape[2], skip.shape[3] - x.shape[3]
            x = F.pad(x, [0, dx, 0, dy])
            x = level(torch.cat([skip, x], dim=1))
        return self.head(x)


class ValidUNet(nn.Module):
    """Depth 2, valid padding, channel dropout 0.3 after the bottleneck; ``crop`` is ``"slice"`` or
    ``"torchvision"``."""

    def __init__(self, in_channels: int = 1, classes: int = 2, base: int = 4, crop: str = "slice"):
        super().__init__()
        self.crop_by = crop

        def double(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(
                _conv(c_in, c_out, padding=0), nn.ReLU(inplace=True),
                _conv(c_out, c_out, padding=0), nn.ReLU(inplace=True),
            )  # fmt: skip

        b = base
        self.down = nn.ModuleList([double(in_channels, b), double(b, 2 * b)])
        self.bottom = nn.Sequential(double(2 * b, 4 * b), nn.Dropout2d(0.3))
        self.up = nn.ModuleList(
            [nn.ConvTranspose2d(4 * b, 2 * b, 2, 2), nn.ConvTranspose2d(2 * b, b, 2, 2)]
        )
        self.dec = nn.ModuleList([double(4 * b, 2 * b), double(2 * b, b)])
        self.final = nn.Conv2d(b, classes, kernel_size=1)

    def crop(self, skip: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        h, w = ref.shape[2], ref.shape[3]
        if self.crop_by == "torchvision":
            return center_crop(skip, [h, w])
        top, left = (skip.shape[2] - h) // 2, (skip.shape[3] - w) // 2
        return skip[:, :, top : top + h, left : left + w]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for level in self.down:
            x = level(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottom(x)
        for up, level, skip in zip(self.up, self.dec, reversed(skips), strict=True):
            x = up(x)
            x = level(torch.cat([x, self.crop(skip, x)], 1))
        return F.softmax(self.final(x), dim=1)


class BilinearUNet(nn.Module):
    """Depth 2, same padding; conv → ReLU → batch norm (eps 1e-3, momentum 0.01); bilinear ×2 (half
    pixel centres) then a 1×1 conv; the upsampled map padded around to the skip's size."""

    def __init__(self, in_channels: int = 3, classes: int = 3, base: int = 4) -> None:
        super().__init__()

        def unit(c_in: int, c_out: int) -> list[nn.Module]:
            return [_conv(c_in, c_out), nn.ReLU(), nn.BatchNorm2d(c_out, eps=1e-3, momentum=0.01)]

        b = base
        self.enc1 = nn.Sequential(*unit(in_channels, b), *unit(b, b))
        self.enc2 = nn.Sequential(nn.MaxPool2d(2), *unit(b, 2 * b), *unit(2 * b, 2 * b))
        self.mid = nn.Sequential(nn.MaxPool2d(2, 2), *unit(2 * b, 4 * b), *unit(4 * b, 4 * b))
        self.reduce2 = nn.Conv2d(4 * b, 2 * b, 1)
        self.dec2 = nn.Sequential(*unit(4 * b, 2 * b), *unit(2 * b, 2 * b))
        self.reduce1 = nn.Conv2d(2 * b, b, 1)
        self.dec1 = nn.Sequential(*unit(2 * b, b), *unit(b, b))
        self.out = nn.Conv2d(b, classes, 1)

    @staticmethod
    def up(x: torch.Tensor, skip: torch.Tensor, reduce: nn.Module) -> torch.Tensor:
        x = reduce(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))
        dy, dx = skip.size(2) - x.size(2), skip.size(3) - x.size(3)
        return F.pad(x, (dx // 2, dx - dx // 2, dy // 2, dy - dy // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        m = self.mid(e2)
        d2 = self.dec2(torch.cat([self.up(m, e2, self.reduce2), e2], 1))
        d1 = self.dec1(torch.cat([self.up(d2, e1, self.reduce1), e1], 1))
        return self.out(d1)


class PooledResizeUNet(nn.Module):
    """Depth 2, valid padding; the skips leave each level after its pooling and are resized
    bilinearly to the upsampled map (the starting model's layout)."""

    def __init__(self, in_channels: int = 3, classes: int = 2, base: int = 4) -> None:
        super().__init__()

        def double(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(
                _conv(c_in, c_out, padding=0), nn.ReLU(), _conv(c_out, c_out, padding=0), nn.ReLU()
            )

        b = base
        self.enc = nn.ModuleList([double(in_channels, b), double(b, 2 * b)])
        self.mid = double(2 * b, 4 * b)
        self.ups = nn.ModuleList(
            [nn.ConvTranspose2d(4 * b, 2 * b, 2, 2), nn.ConvTranspose2d(2 * b, b, 2, 2)]
        )
        self.dec = nn.ModuleList([double(4 * b, 2 * b), double(2 * b, b)])
        self.head = nn.Conv2d(b, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for level in self.enc:
            x = F.max_pool2d(level(x), 2)
            skips.append(x)
        x = self.mid(x)
        for up, level, skip in zip(self.ups, self.dec, reversed(skips), strict=True):
            x = up(x)
            skip = F.interpolate(skip, size=x.shape[2:], mode="bilinear", align_corners=False)
            x = level(torch.cat([x, skip], dim=1))
        return torch.sigmoid(self.head(x))


class _ConvBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            _conv(c_in, c_out), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
            _conv(c_out, c_out), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class _UpConv(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.up = nn.Sequential(
            nn.Upsample(scale_factor=2), _conv(c_in, c_out), nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(x)


class AttentionPlainUNet(nn.Module):
    """Depth 2: ``Conv1``..., ``Up3``/``Up_conv3``... as the Attention U-Net family names them."""

    def __init__(self, img_ch: int = 3, output_ch: int = 1, base: int = 4) -> None:
        super().__init__()
        b = base
        self.Maxpool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.Conv1 = _ConvBlock(img_ch, b)
        self.Conv2 = _ConvBlock(b, 2 * b)
        self.Conv3 = _ConvBlock(2 * b, 4 * b)
        self.Up3 = _UpConv(4 * b, 2 * b)
        self.Up_conv3 = _ConvBlock(4 * b, 2 * b)
        self.Up2 = _UpConv(2 * b, b)
        self.Up_conv2 = _ConvBlock(2 * b, b)
        self.Conv_1x1 = nn.Conv2d(b, output_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.Conv1(x)
        x2 = self.Conv2(self.Maxpool(x1))
        x3 = self.Conv3(self.Maxpool(x2))
        d3 = self.Up_conv3(torch.cat((x2, self.Up3(x3)), dim=1))
        d2 = self.Up_conv2(torch.cat((x1, self.Up2(d3)), dim=1))
        return self.Conv_1x1(d2)


class BranchyUNet(nn.Module):
    """Depth 2, same padding, batch norm; pads the upsampled map (replicating its edge) only where
    the sizes differ: a branch on sizes, which ``torch.fx`` cannot trace."""

    def __init__(self, in_channels: int = 1, classes: int = 2, base: int = 4) -> None:
        super().__init__()
        b = base
        self.blocks = nn.ModuleList(
            [_ConvBlock(in_channels, b), _ConvBlock(b, 2 * b), _ConvBlock(2 * b, 4 * b),
             _ConvBlock(4 * b, 2 * b), _ConvBlock(2 * b, b)]
        )  # fmt: skip
        self.ups = nn.ModuleList(
            [nn.ConvTranspose2d(4 * b, 2 * b, 2, 2), nn.ConvTranspose2d(2 * b, b, 2, 2)]
        )
        self.out = nn.Conv2d(b, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.blocks[0](x)
        e2 = self.blocks[1](F.max_pool2d(e1, 2))
        x = self.blocks[2](F.max_pool2d(e2, 2))
        for up, block, skip in (
            (self.ups[0], self.blocks[3], e2),
            (self.ups[1], self.blocks[4], e1),
        ):
            x = up(x)
            if x.shape[-1] != skip.shape[-1]:
                x = F.pad(x, [0, 1, 0, 1], mode="replicate")
            x = block(torch.cat([skip, x], 1))
        return self.out(x)


def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial norm parameters and statistics (fresh ones are 0/1, which would hide a mapping
    that mixes them up); eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm)):
                if getattr(module, "weight", None) is not None:
                    n = module.weight.numel()
                    module.weight.copy_(1 + 0.2 * torch.randn(n, generator=gen))
                    module.bias.copy_(0.1 * torch.randn(n, generator=gen))
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
                module.running_var.copy_(0.5 + torch.rand(n, generator=gen))
    return model.eval()
