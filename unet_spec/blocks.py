"""The blocks of a plan: one layer each, its name (the weight contract) and the tensors it owns.

A block called ``enc1.conv1`` is the PyTorch module at path ``enc1.conv1``, the Keras layer named
``enc1_conv1`` (:func:`keras_name`) and the tensors ``enc1.conv1.weight`` / ``enc1.conv1.bias`` of
a canonical weight file; :mod:`unet_spec.plan` states the whole contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Literal

BlockKind = Literal[
    "input", "conv", "batchnorm", "instancenorm", "relu", "leakyrelu", "maxpool", "dropout",
    "upconv", "upsample", "resize", "crop", "pad", "concat",
]  # fmt: skip

# Blocks that own weights, and the canonical tensors they own (torch layouts).
WEIGHT_KINDS = ("conv", "upconv", "batchnorm", "instancenorm")


@dataclass(frozen=True)
class Block:
    """One layer of the plan.

    Attributes:
        name: Hierarchical name, the weight contract (``enc1.conv1``).
        kind: What the layer computes (see ``BlockKind``).
        inputs: Names of the blocks whose outputs this block reads, in order. ``concat`` reads
            ``(upsampled, skip)`` or ``(skip, upsampled)`` (the spec's ``concat_order``);
            ``resize``/``crop``/``pad`` read ``(source, reference)`` and bring the source to the
            reference's spatial size.
        in_channels: Channels read (for ``concat``, the sum).
        out_channels: Channels produced.
        kernel: Kernel size of ``conv``/``upconv``/``maxpool`` (0 otherwise).
        stride: Stride of ``upconv``/``maxpool``.
        padding: ``"valid"`` or ``"same"`` for ``conv`` (an even kernel pads one more row and
            column after than before, as both frameworks do).
        rate: Dropout rate for ``dropout``.
        bias: Whether a ``conv`` has a bias.
        mode: ``"bilinear"`` or ``"nearest"`` for ``upsample``; ``"zeros"`` or ``"replicate"``
            for ``pad``.
        align_corners: Bilinear ``upsample`` with aligned corners.
        align: ``"center"`` or ``"end"``: where ``pad`` puts its rows and columns.
        slope: Negative slope of ``leakyrelu``.
        epsilon: Epsilon of ``batchnorm`` and ``instancenorm``.
    """

    name: str
    kind: BlockKind
    inputs: tuple[str, ...]
    in_channels: int
    out_channels: int
    kernel: int = 0
    stride: int = 1
    padding: str = "valid"
    rate: float = 0.0
    bias: bool = True
    mode: str = ""
    align_corners: bool = False
    align: str = "center"
    slope: float = 0.0
    epsilon: float = 0.0

    @property
    def keras_name(self) -> str:
        """The Keras layer name: the plan name with dots replaced by underscores."""
        return keras_name(self.name)

    @property
    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        """Canonical tensors of this block, in PyTorch layouts."""
        c_in, c_out, k = self.in_channels, self.out_channels, self.kernel
        if self.kind == "conv":
            weight = {f"{self.name}.weight": (c_out, c_in, k, k)}
            return {**weight, f"{self.name}.bias": (c_out,)} if self.bias else weight
        if self.kind == "upconv":
            return {f"{self.name}.weight": (c_in, c_out, k, k), f"{self.name}.bias": (c_out,)}
        if self.kind == "batchnorm":
            return {
                f"{self.name}.{t}": (c_out,)
                for t in ("weight", "bias", "running_mean", "running_var")
            }
        if self.kind == "instancenorm":  # affine, no running statistics
            return {f"{self.name}.{t}": (c_out,) for t in ("weight", "bias")}
        return {}

    @cached_property  # asked of every block on every shape walk; a frozen block's never changes
    def trainable_params(self) -> int:
        if self.kind == "batchnorm":
            return 2 * self.out_channels
        return sum(numel(s) for s in self.weight_shapes.values())


def keras_name(name: str) -> str:
    """Keras layer name of the plan block ``name`` (``enc1.conv1`` → ``enc1_conv1``)."""
    return name.replace(".", "_")


def numel(shape: tuple[int, ...]) -> int:
    """Number of values in a tensor of ``shape``."""
    n = 1
    for s in shape:
        n *= s
    return n
