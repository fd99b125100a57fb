"""What a read gives, whatever read it: canonical weights, the spec, and the source itself as
something runnable (a :class:`Reference`) that the twin is judged against; and where such a
proof runs.

Every reader returns a :class:`SourceRead`: the format registry's (:mod:`unet_bridge.formats`),
each converter of a layout from elsewhere (:mod:`unet_bridge.sources`) and the graph source. The
judge (:mod:`unet_bridge.judge`) runs a :class:`Reference` beside the twin: a torch module
(:func:`module_reference`, the twin itself included), a Keras model loaded from a file
(:func:`keras_model_reference`), onnxruntime, a deployment artefact. Framework imports happen
inside functions, so importing this module loads numpy and ``unet_spec`` only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np

from unet_spec import UNetSpec

#: What a reference outputs: logits, or the logits through an activation.
Output = Literal["logits", "sigmoid", "softmax"]
#: The outputs the judge compares (a Keras model ending in another activation is refused by it).
OUTPUTS: tuple[str, ...] = ("logits", "sigmoid", "softmax")


@dataclass(frozen=True)
class Reference:
    """Something runnable that computes what the source computes.

    Attributes:
        run: NCHW float32 numpy in, numpy out (same layout as the twins' outputs).
        output: Whether ``run`` gives ``"logits"`` or probabilities (``"sigmoid"``/``"softmax"``);
            a Keras model's other last activation is kept by name, for the judge to refuse.
        description: What runs, for the proof line (``"MONAI BasicUNet"``, ``"unet.unet_model:UNet"``).
        run64: The same source run in float64, when it can be (a torch module in ``double()``);
            its noise then counts in the comparison, like a second framework's.
        keras_model: The Keras model ``run`` calls, when the source is a Keras model loaded from
            its file: that size is the size of a written ``.keras`` model.
        sizes: The input sizes the proof runs the source at (its own size when it has a fixed
            one); empty: the proof's default (:func:`reference_sizes`).
    """

    run: Callable[[np.ndarray], np.ndarray]
    output: str
    description: str
    run64: Callable[[np.ndarray], np.ndarray] | None = None
    keras_model: Any = None
    sizes: tuple[int, ...] = ()


class SourceRead(NamedTuple):
    """What every reader returns (unpacks as ``weights, spec, reference, note``).

    Attributes:
        weights: Canonical weights (plan names, torch layouts, float32).
        spec: The spec the file carries, or the one inferred from its tensors or graph.
        reference: The source itself, runnable, or ``None`` when only weights exist.
        note: What the file held and what a port of it can and cannot prove, one line (empty for
            this project's own files).
    """

    weights: dict[str, np.ndarray]
    spec: UNetSpec
    reference: Reference | None
    note: str


def module_reference(module: Any, description: str, output: Output = "logits") -> Reference:
    """A torch module (eval mode, CPU) as a :class:`Reference`, with a float64 run for its noise.

    The float64 run casts the module itself (:func:`unet_torch.adapters.to_float64`) rather than
    copying it (a copy of a 31 M-parameter model is 250 MB more), and the fp32 run casts it back,
    which is exact for weights that were float32: a proof runs every fp32 input first, then every
    float64 one, so the module changes precision once.
    """
    import torch

    from unet_torch.adapters import to_float64

    module = module.eval().to("cpu")

    def precision(dtype: Any) -> None:
        if next(module.parameters(), torch.empty(0, dtype=dtype)).dtype != dtype:
            if dtype == torch.float64:
                to_float64(module)
            else:
                module.to(dtype)

    def runner(dtype: Any) -> Callable[[np.ndarray], np.ndarray]:
        def run(x: np.ndarray) -> np.ndarray:
            precision(dtype)
            with torch.no_grad():
                out = module(torch.from_numpy(np.ascontiguousarray(x)).to(dtype))
            return out.detach().to("cpu").numpy().copy()

        return run

    return Reference(runner(torch.float32), output, description, runner(torch.float64))


def head_activation(model: Any) -> str:
    """The activation a Keras model's last layer applies (``"linear"`` for none)."""
    activation = model.layers[-1].get_config().get("activation", "linear")
    return activation if isinstance(activation, str) else "linear"


def fixed_size(model: Any) -> int | None:
    """The square input size a Keras model was built for, if any."""
    if model is None:
        return None
    shape = model.input_shape
    h, w = shape[1], shape[2]
    return h if h is not None and h == w else None


def keras_model_reference(
    model: Any, spec: UNetSpec, description: str = "source model"
) -> Reference:
    """A Keras model loaded from a file as the reference: what its last layer outputs (logits or
    an activation) is compared, at its own fixed input size (or :func:`proof_size`)."""
    from unet_keras import to_nchw, to_nhwc

    activation = head_activation(model)

    def run(x: np.ndarray) -> np.ndarray:
        return to_nchw(np.asarray(model(to_nhwc(x), training=False), dtype=np.float32))

    output = "logits" if activation == "linear" else activation
    size = fixed_size(model) or proof_size(spec)
    return Reference(run, output, description, keras_model=model, sizes=(size,))


# -- where a proof runs ---------------------------------------------------------------------------
#: Pooling cells per side of a port's proof input: the bottleneck still sees an 8x8 map, every
#: tensor of the model takes part, and a float64 run of a 31 M-parameter model stays affordable
#: (its memory and time grow with the area; see docs/results.md).
PROOF_CELLS = 8


def proof_size(spec: UNetSpec) -> int:
    """The input size a port is proven at: the smallest valid size of :data:`PROOF_CELLS`
    pooling cells per side or more."""
    return spec.plan().nearest_valid_size(PROOF_CELLS * 2**spec.depth, direction="up")


def reference_sizes(spec: UNetSpec, size: int) -> list[int]:
    """The check size, and for a spec that takes any size (a pad merge) a small odd one too: sizes
    whose poolings drop a row are where padding conventions (zeros split around the map, or the
    far edge replicated) show. Four pooling cells and one less than a fifth drop a row at every
    level, and a small map keeps the second run cheap."""
    sizes = [size]
    if spec.skip_merge == "pad":
        cell = 2**spec.depth
        odd = 5 * cell - 1
        try:
            spec.plan().layout(odd)
            if odd != size:
                sizes.append(odd)
        except ValueError:
            pass
    return sizes


def two_sizes(spec: UNetSpec, size: int | None = None) -> tuple[int, ...]:
    """Two input sizes where the spec takes two: ``size`` (default: :func:`proof_size`) and a
    small odd one where the spec takes any size (:func:`reference_sizes`), else the smallest valid
    size of at least four pooling cells (or, that being ``size``, the next one)."""
    size = size or proof_size(spec)
    sizes = reference_sizes(spec, size)
    if len(sizes) == 1:
        plan = spec.plan()
        try:
            other = plan.nearest_valid_size(4 * 2**spec.depth, direction="up")
            if other == size:
                other = plan.nearest_valid_size(size + 1, direction="up")
            sizes.append(other)
        except ValueError:  # no other size: one is what the spec takes
            pass
    return tuple(sizes)


__all__ = [
    "OUTPUTS",
    "PROOF_CELLS",
    "Output",
    "Reference",
    "SourceRead",
    "fixed_size",
    "head_activation",
    "keras_model_reference",
    "module_reference",
    "proof_size",
    "reference_sizes",
    "two_sizes",
]
