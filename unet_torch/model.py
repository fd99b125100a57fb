"""``UNet(spec)``: the PyTorch twin, built by walking the spec's plan.

Module paths are the plan names, so ``state_dict()`` keys are the canonical tensor names (batch
norm's ``num_batches_tracked`` counter aside: it is bookkeeping that Keras has no equivalent for, and
:func:`canonical_state` leaves it out).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from unet_spec import Block, UNetSpec, build_plan, check_weights


class Resize(nn.Module):
    """Bilinear resize of ``x`` to the spatial size of ``ref`` (half-pixel centers, no antialias,
    the same sampling as Keras' ``Resizing`` layer)."""

    def forward(self, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


class CenterCrop(nn.Module):
    """Center crop of ``x`` to the spatial size of ``ref`` (extra row/column at the bottom/right,
    as :meth:`unet_spec.Plan.layout` computes it)."""

    def forward(self, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        (h, w), (rh, rw) = x.shape[-2:], ref.shape[-2:]
        top, left = (h - rh) // 2, (w - rw) // 2
        return x[..., top : top + rh, left : left + rw]


class Concat(nn.Module):
    """Channel concatenation in plan order (``[upsampled, skip]``)."""

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=1)


def _make_module(block: Block, spec: UNetSpec, inplace: bool) -> nn.Module | None:
    kind = block.kind
    if kind == "input":
        return None
    if kind == "conv":
        pad = block.kernel // 2 if block.padding == "same" else 0
        return nn.Conv2d(block.in_channels, block.out_channels, block.kernel, padding=pad)
    if kind == "upconv":
        return nn.ConvTranspose2d(
            block.in_channels, block.out_channels, block.kernel, stride=block.stride
        )
    if kind == "batchnorm":
        return nn.BatchNorm2d(block.out_channels, eps=spec.bn_epsilon, momentum=spec.bn_momentum)
    if kind == "relu":
        return nn.ReLU(inplace=inplace)
    if kind == "maxpool":
        return nn.MaxPool2d(block.kernel, block.stride)
    if kind == "dropout":
        return nn.Dropout(block.rate)
    if kind == "upsample":
        return nn.Upsample(scale_factor=block.stride, mode="bilinear", align_corners=False)
    if kind == "resize":
        return Resize()
    if kind == "crop":
        return CenterCrop()
    if kind == "concat":
        return Concat()
    raise ValueError(f"block {block.name}: unknown kind {kind!r}")


class UNet(nn.Module):
    """A U-Net whose layers are the blocks of ``spec``'s plan; returns logits (NCHW).

    Args:
        spec: The architecture. Apply :func:`probabilities` (or ``spec.head``) to get
            probabilities.

    Example:
        >>> from unet_spec import get_preset
        >>> model = UNet(get_preset("paper-small"))
        >>> model(torch.zeros(1, 1, 188, 188)).shape
        torch.Size([1, 2, 4, 4])
    """

    def __init__(self, spec: UNetSpec) -> None:
        super().__init__()
        self.spec = spec
        self.plan = build_plan(spec)
        last_use = self.plan.last_use
        # Execution steps: (block, module, names whose last reader this block is).
        self._steps: list[tuple[Block, nn.Module, tuple[str, ...]]] = []
        for i, block in enumerate(self.plan.blocks):
            # In-place ReLU only where nobody else reads the input (saves one activation map).
            inplace = block.kind == "relu" and last_use[block.inputs[0]] == i
            module = _make_module(block, spec, inplace)
            if module is None:
                continue
            self._attach(block.name, module)
            done = tuple(n for n in dict.fromkeys(block.inputs) if last_use[n] == i)
            self._steps.append((block, module, done))

    def _attach(self, name: str, module: nn.Module) -> None:
        # "enc1.conv1" becomes self.enc1["conv1"]: nested containers keep the dotted path.
        *parents, leaf = name.split(".")
        owner: nn.Module = self
        for part in parents:
            if not hasattr(owner, part):
                owner.add_module(part, nn.ModuleDict())
            owner = getattr(owner, part)
        owner.add_module(leaf, module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs: dict[str, torch.Tensor] = {"input": x}
        for block, module, done in self._steps:
            outputs[block.name] = module(*(outputs[n] for n in block.inputs))
            for name in done:  # free activations nobody reads any more
                del outputs[name]
        return outputs[self.plan.output.name]


def probabilities(logits: torch.Tensor, head: str) -> torch.Tensor:
    """Apply a spec's head activation to NCHW logits."""
    if head == "sigmoid":
        return torch.sigmoid(logits)
    if head == "softmax":
        return torch.softmax(logits, dim=1)
    return logits


def canonical_state(model: UNet) -> dict[str, np.ndarray]:
    """The model's weights as canonical float32 numpy arrays (names = plan names)."""
    names = model.plan.weight_shapes
    state = model.state_dict()
    return {
        n: state[n].detach().to("cpu", torch.float32).contiguous().numpy().copy() for n in names
    }


@torch.no_grad()
def load_canonical(model: UNet, weights: Mapping[str, np.ndarray], source: str = "weights") -> UNet:
    """Copy canonical weights into ``model`` after checking every name and shape."""
    check_weights(weights, model.spec, source=source)
    state = model.state_dict()
    for name in model.plan.weight_shapes:
        state[name].copy_(torch.from_numpy(np.asarray(weights[name], dtype=np.float32)))
    return model
