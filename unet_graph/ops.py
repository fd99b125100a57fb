"""The reader's vocabulary: an :class:`Op` (one step of a graph in plan terms), the :class:`Graph`
a front-end hands over, and the error that lists every mismatch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Ops that bring a skip and the upsampled map together; the path never continues through their
# reference input.
MERGES = ("concat", "crop", "resize", "pad")
ACTS = ("relu", "leakyrelu")
NORMS = ("batchnorm", "instancenorm")
UPS = ("upconv", "upsample")

#: How messages name the classes a framework builds some ops from (a front-end gives its own).
WORDS: Mapping[str, str] = {
    "upconv": "transposed conv",
    "upsample": "upsampling",
    "maxpool": "max pooling",
    "concat": "concat",
    "dropout": "dropout",
    "spatial_dropout": "channel dropout",
}


class GraphMismatchError(ValueError):
    """The graph is not a U-Net the spec can express; ``mismatches`` lists every reason."""

    def __init__(self, source: str, mismatches: Sequence[str]) -> None:
        self.mismatches = list(mismatches)
        count = f"{len(mismatches)} mismatch" + ("es" if len(mismatches) != 1 else "")
        super().__init__(
            f"{source}: not a U-Net the spec can express ({count}): " + "; ".join(mismatches)
        )


@dataclass
class Op:
    """One step of the graph in plan terms.

    Attributes:
        index: Position in :attr:`Graph.ops`.
        kind: A plan block kind, ``"input"``, or ``"sigmoid"``/``"softmax"`` (head activations),
            ``"activation"`` (another activation function) or ``"unknown"`` (something no block
            computes).
        inputs: Indices of the ops read, in order.
        label: How messages name the op's origin (``layer conv2d_5 (Conv2D)``,
            ``module decoder.3.up (Upsample)``, ``function cat at decoder``).
        where: The short name of that origin (``conv2d_5``, ``decoder.3.up``).
        cls: The class or function the op comes from (``Conv2D``, ``BatchNorm2d``, ``cat``).
        channels: The op's output channels.
        source: The front-end's own handle (a Keras layer, a torch module); opaque here.
        attrs: The settings a plan block has (``kernel``, ``padding``, ``bias``, ``mode``, ...),
            ``momentum`` in the spec's convention (PyTorch's), ``over_channels`` for a softmax
            (whether it normalises over the channels), ``what`` for an unknown op's description in
            messages.
        problems: Settings no block has (strides on a conv, dilation, ...).
        name: The plan block this op is, once the graph is parsed (``""`` for dropouts and the head
            activation, which are compared separately).
    """

    index: int
    kind: str
    inputs: tuple[int, ...]
    label: str
    where: str
    cls: str
    channels: int
    source: Any = None
    attrs: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    name: str = ""

    @property
    def what(self) -> str:
        """How messages name what the op computes when no block does."""
        return self.attrs.get("what") or f"layer class {self.cls}"


@dataclass(frozen=True)
class Graph:
    """What a front-end makes of a model: its ops in topological order and how to name them.

    Attributes:
        ops: The ops; ``ops[0]`` is the input (kind ``"input"``) and every op reads earlier ones.
        output: Index of the op whose output is the model's output.
        source: How messages name the model (``Keras model 'unet'``, ``torch module UNet``).
        in_channels: The input's channels.
        input_size: The model's fixed ``(H, W)``, or ``None`` when it takes any size.
        measured_at: The input ``(H, W)`` at which size-dependent attributes (pad and crop
            ``amounts``, resize ``size``) were read; defaults to ``input_size``. ``None``: not
            checked against the plan's layout.
        words: How messages name the framework's classes for some op kinds (keys of
            :data:`WORDS`).
    """

    ops: list[Op]
    output: int
    source: str
    in_channels: int
    input_size: tuple[int, int] | None = None
    measured_at: tuple[int, int] | None = None
    words: Mapping[str, str] = field(default_factory=lambda: dict(WORDS))

    @property
    def layout_size(self) -> tuple[int, int] | None:
        return self.measured_at or self.input_size
