"""``UNet(spec)``: the PyTorch twin, built by walking the spec's plan.

Module paths are the plan names, so ``state_dict()`` keys are the canonical tensor names (batch
norm's ``num_batches_tracked`` counter aside: it is bookkeeping that Keras has no equivalent for, and
:func:`unet_torch.adapters.canonical_state` leaves it out). The model to and from canonical weights
is :mod:`unet_torch.adapters`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from unet_spec import Block, UNetSpec, build_plan

# The adapters' earlier home: ``unet_torch.model.canonical_state`` and its kin keep importing.
from unet_torch.adapters import canonical_state, float64_reference, load_canonical  # noqa: F401
from unet_torch.hub import UNetHubMixin


def _bilinear(
    x: torch.Tensor, align_corners: bool = False, **size_or_scale: object
) -> torch.Tensor:
    """Bilinear interpolation (half-pixel centers unless ``align_corners``, no antialias) in ``x``'s
    own dtype.

    Autocast runs upsampling in float32. Under bf16 autocast that turns every resized skip into a
    float32 tensor, the concat then promotes the decoder's input to float32, and every neighbouring
    op pays a cast (the GPU profile in ``benchmarks/README.md`` shows the cost). The kernels
    accumulate in float32 either way.
    """
    device = x.device.type
    if device in ("cpu", "cuda") and torch.is_autocast_enabled(device):
        with torch.autocast(device, enabled=False):
            return F.interpolate(x, mode="bilinear", align_corners=align_corners, **size_or_scale)
    return F.interpolate(x, mode="bilinear", align_corners=align_corners, **size_or_scale)


class Resize(nn.Module):
    """Bilinear resize of ``x`` to the spatial size of ``ref`` (the same sampling as Keras'
    ``Resizing`` layer)."""

    def forward(self, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        return _bilinear(x, size=ref.shape[-2:])


class Upsample(nn.Module):
    """Upsampling by an integer factor: ``"nearest"`` or ``"bilinear"`` (Keras'
    ``UpSampling2D``), or bilinear with aligned corners (``unet_keras``'s ``AlignedBilinear``)."""

    def __init__(
        self, scale_factor: int, mode: str = "bilinear", align_corners: bool = False
    ) -> None:
        super().__init__()
        self.scale_factor, self.mode, self.align_corners = scale_factor, mode, align_corners

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "nearest":
            return F.interpolate(x, scale_factor=self.scale_factor, mode="nearest")
        return _bilinear(x, self.align_corners, scale_factor=self.scale_factor)

    def extra_repr(self) -> str:
        corners = ", align_corners=True" if self.align_corners else ""
        return f"scale_factor={self.scale_factor}, mode={self.mode!r}{corners}"


class Pad(nn.Module):
    """Pad ``x`` to the spatial size of ``ref``: zeros or the edge replicated, the rows/columns
    split around ``x`` (extra one after) or all after it, as :meth:`unet_spec.Plan.layout` computes
    them."""

    def __init__(self, mode: str = "zeros", align: str = "center") -> None:
        super().__init__()
        self.mode, self.align = mode, align

    def forward(self, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        (h, w), (rh, rw) = x.shape[-2:], ref.shape[-2:]
        dh, dw = rh - h, rw - w
        if self.align == "end":
            pads = (0, dw, 0, dh)
        else:
            pads = (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2)
        if not any(pads):
            return x
        return F.pad(x, pads, mode="constant" if self.mode == "zeros" else "replicate")

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, align={self.align!r}"


class _Crop(torch.autograd.Function):
    """A spatial crop whose gradient keeps the input's memory format.

    Autograd's own slice backward scatters into a fresh NCHW tensor. For a channels-last model that
    makes the scatter and the sum with the skip's other gradient (from the max-pool) strided
    kernels (``benchmarks/README.md`` has the before and after).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, top: int, left: int, h: int, w: int) -> torch.Tensor:
        channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
        ctx.meta = (x.shape, channels_last, top, left, h, w)
        return x[..., top : top + h, left : left + w]

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple:
        shape, channels_last, top, left, h, w = ctx.meta
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        full = torch.empty(shape, dtype=grad.dtype, device=grad.device, memory_format=fmt)
        full.zero_()[..., top : top + h, left : left + w] = grad
        return full, None, None, None, None


class CenterCrop(nn.Module):
    """Center crop of ``x`` to the spatial size of ``ref`` (extra row/column at the bottom/right,
    as :meth:`unet_spec.Plan.layout` computes it)."""

    def forward(self, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        (h, w), (rh, rw) = x.shape[-2:], ref.shape[-2:]
        top, left = (h - rh) // 2, (w - rw) // 2
        if torch.is_grad_enabled() and x.requires_grad:
            return _Crop.apply(x, top, left, rh, rw)
        return x[..., top : top + rh, left : left + rw]


class EvenSameConv2d(nn.Conv2d):
    """A 'same' convolution with an even kernel: one row and column more of zeros after the map
    than before it, as Keras (and TensorFlow) pad. ``nn.Conv2d(padding="same")`` pads the same way
    but warns on every call that it copies the input; this pads explicitly, once."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = self.kernel_size[0] - 1
        before = total // 2
        return super().forward(F.pad(x, (before, total - before, before, total - before)))


class Concat(nn.Module):
    """Channel concatenation in plan order (the spec's ``concat_order``)."""

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=1)


def _make_module(block: Block, spec: UNetSpec, inplace: bool) -> nn.Module | None:
    kind = block.kind
    if kind == "input":
        return None
    if kind == "conv":
        args = (block.in_channels, block.out_channels, block.kernel)
        if block.padding == "same" and block.kernel % 2 == 0:
            return EvenSameConv2d(*args, bias=block.bias)
        pad = block.kernel // 2 if block.padding == "same" else 0
        return nn.Conv2d(*args, padding=pad, bias=block.bias)
    if kind == "upconv":
        return nn.ConvTranspose2d(
            block.in_channels, block.out_channels, block.kernel, stride=block.stride
        )
    if kind == "batchnorm":
        return nn.BatchNorm2d(block.out_channels, eps=block.epsilon, momentum=spec.bn_momentum)
    if kind == "instancenorm":
        return nn.InstanceNorm2d(block.out_channels, eps=block.epsilon, affine=True)
    if kind == "relu":
        return nn.ReLU(inplace=inplace)
    if kind == "leakyrelu":
        return nn.LeakyReLU(block.slope, inplace=inplace)
    if kind == "maxpool":
        return nn.MaxPool2d(block.kernel, block.stride)
    if kind == "dropout":
        return nn.Dropout(block.rate)
    if kind == "upsample":
        return Upsample(block.stride, block.mode, block.align_corners)
    if kind == "pad":
        return Pad(block.mode, block.align)
    if kind == "resize":
        return Resize()
    if kind == "crop":
        return CenterCrop()
    if kind == "concat":
        return Concat()
    raise ValueError(f"block {block.name}: unknown kind {kind!r}")


class UNet(nn.Module, UNetHubMixin):  # from_pretrained, save_pretrained: unet_torch/hub.py
    """A U-Net whose layers are the blocks of ``spec``'s plan; returns logits (NCHW).

    Inference on the CPU (float32, gradients off, no autocast) runs in channels-last order whatever
    the caller passes; the logits come back in the input's own memory format (NCHW for an NCHW
    input). Why: oneDNN's fastest forward convolutions on x86 (its brgemm kernels, chosen for AVX2
    and AVX-512 alike) read and write NHWC directly, while an NCHW tensor is reordered to a blocked
    layout before each convolution and back after it, two passes over every activation map. The
    parameters stay as they are (``state_dict()`` is the canonical form either way), and training
    keeps the caller's format: oneDNN's weight-gradient kernel for NHWC is its slow generic one,
    which makes a channels-last training step slower than NCHW on the CPU, by far below AVX-512
    (see ``benchmarks/README.md``).

    Building a ``UNet`` changes nothing in the process. On the CPU, a process that calls
    :func:`unet_runtime.keep_freed_memory` once (``train.py``, the ``unet`` command and the
    benchmarks do) makes glibc's ``malloc`` reuse the freed activation maps of one call for the next
    instead of handing them back to the system, from where each map would come back as freshly
    faulted-in pages on every call (``docs/architecture.md``, "Process settings").

    Args:
        spec: The architecture. Apply :func:`probabilities` (or ``spec.head``) to get
            probabilities.
        recompute: Plan levels (``"enc1"``, ``"mid"``, ``"dec1"``, ...) whose activations are not
            kept for the backward pass but recomputed from the level's input (activation
            checkpointing). The high-resolution encoder levels hold the most memory for the
            least compute: ``("enc1", "enc2", "enc3")`` recomputes a small share of the
            multiply-accumulates to drop the largest activation maps (figures in
            ``benchmarks/README.md``). Gradients are unchanged to the bit, and batch-norm running
            statistics are updated once, not again during the recomputation.

    Example:
        >>> from unet_spec import get_preset
        >>> model = UNet(get_preset("paper-small"))
        >>> model(torch.zeros(1, 1, 188, 188)).shape
        torch.Size([1, 2, 4, 4])
    """

    def __init__(self, spec: UNetSpec, recompute: Sequence[str] = ()) -> None:
        super().__init__()
        self.spec = spec
        self.plan = build_plan(spec)
        levels = [b.name.split(".")[0] for b in self.plan.blocks]
        unknown = sorted(set(recompute) - set(levels) - {"input"})
        if unknown or "input" in recompute:
            raise ValueError(
                f"recompute: unknown plan level(s) {', '.join(unknown or ['input'])}; "
                f"levels: {', '.join(dict.fromkeys(lv for lv in levels if lv != 'input'))}"
            )
        self.recompute = tuple(dict.fromkeys(recompute))
        last_use = self.plan.last_use
        level_of = dict(zip((b.name for b in self.plan.blocks), levels, strict=True))
        # Execution steps: (block, module, names whose last reader this block is).
        steps: list[tuple[Block, nn.Module, tuple[str, ...]]] = []
        for i, block in enumerate(self.plan.blocks):
            # In-place ReLU only where nobody else reads the input (saves one activation map),
            # and never on the input of a recomputed level (the recomputation reads it again).
            source = block.inputs[0] if block.inputs else ""
            inplace = (
                block.kind in ("relu", "leakyrelu")
                and last_use[source] == i
                and not (levels[i] in self.recompute and level_of[source] != levels[i])
            )
            module = _make_module(block, spec, inplace)
            if module is None:
                continue
            self._attach(block.name, module)
            done = tuple(n for n in dict.fromkeys(block.inputs) if last_use[n] == i)
            steps.append((block, module, done))
        # Consecutive steps of one level form a segment; checkpointed segments run as one unit.
        self._segments: list[_Segment] = []
        for block, module, done in steps:
            level = level_of[block.name]
            if not self._segments or self._segments[-1].level != level:
                self._segments.append(_Segment(level, level in self.recompute))
            self._segments[-1].steps.append((block, module, done))
        for seg in self._segments:
            made = [b.name for b, _, _ in seg.steps]
            reads = [n for b, _, _ in seg.steps for n in b.inputs]
            seg.inputs = tuple(n for n in dict.fromkeys(reads) if n not in made)
            freed = {n for _, _, done in seg.steps for n in done}
            seg.outputs = tuple(n for n in made if n not in freed)
            seg.last_read = tuple(n for n in seg.inputs if n in freed)

    def _attach(self, name: str, module: nn.Module) -> None:
        # "enc1.conv1" becomes self.enc1["conv1"]: nested containers keep the dotted path.
        *parents, leaf = name.split(".")
        owner: nn.Module = self
        for part in parents:
            if not hasattr(owner, part):
                owner.add_module(part, nn.ModuleDict())
            owner = getattr(owner, part)
        owner.add_module(leaf, module)

    def _cpu_inference(self, x: torch.Tensor) -> bool:
        """Whether ``x`` takes the channels-last inference path (see the class docstring)."""
        return (
            x.device.type == "cpu"
            and x.dtype == torch.float32
            and x.dim() == 4
            and not torch.is_grad_enabled()
            and not torch.is_autocast_enabled("cpu")
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._cpu_inference(x):
            # The caller gets the logits in the layout it gave: NCHW unless x is channels-last.
            wanted = (
                torch.channels_last
                if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
                else torch.contiguous_format
            )
            outputs = {"input": x.contiguous(memory_format=torch.channels_last)}
            for seg in self._segments:
                seg.run_into(outputs)
            return outputs[self.plan.output.name].contiguous(memory_format=wanted)
        outputs: dict[str, torch.Tensor] = {"input": x}
        for seg in self._segments:
            if seg.checkpointed and torch.is_grad_enabled():
                results = torch.utils.checkpoint.checkpoint(
                    seg.run,
                    *(outputs[n] for n in seg.inputs),
                    use_reentrant=False,
                    context_fn=_recompute_context(seg),
                )
                for name in seg.last_read:  # inputs nobody reads after this segment
                    del outputs[name]
                outputs.update(zip(seg.outputs, results, strict=True))
            else:
                seg.run_into(outputs)
        return outputs[self.plan.output.name]


class _Segment:
    """The steps of one plan level, with the names it reads from and leaves for later levels."""

    def __init__(self, level: str, checkpointed: bool) -> None:
        self.level, self.checkpointed = level, checkpointed
        self.steps: list[tuple[Block, nn.Module, tuple[str, ...]]] = []
        self.inputs: tuple[str, ...] = ()
        self.outputs: tuple[str, ...] = ()
        self.last_read: tuple[str, ...] = ()  # inputs whose last reader is in this segment

    def run_into(self, outputs: dict[str, torch.Tensor]) -> None:
        for block, module, done in self.steps:
            outputs[block.name] = module(*(outputs[n] for n in block.inputs))
            for name in done:  # free activations nobody reads any more
                del outputs[name]

    def run(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = dict(zip(self.inputs, inputs, strict=True))
        self.run_into(outputs)
        return tuple(outputs[n] for n in self.outputs)


def _recompute_context(seg: _Segment):
    """Contexts for the first pass and the recomputation of a checkpointed segment.

    The recomputation must not move batch-norm running statistics a second time: during it, batch
    norm runs with momentum 0 (the update then leaves the buffers bit-for-bit as they were) and
    its batch counter is put back afterwards. torch's checkpoint restores the RNG state itself, so
    dropout draws the same mask.
    """
    norms = [m for _, m, _ in seg.steps if isinstance(m, nn.BatchNorm2d)]

    @contextlib.contextmanager
    def frozen_statistics() -> Iterator[None]:
        saved = [(m.momentum, m.num_batches_tracked.clone()) for m in norms]
        for m in norms:
            m.momentum = 0.0
        try:
            yield
        finally:
            for m, (momentum, count) in zip(norms, saved, strict=True):
                m.momentum = momentum
                m.num_batches_tracked.copy_(count)

    return lambda: (contextlib.nullcontext(), frozen_statistics())


def probabilities(logits: torch.Tensor, head: str) -> torch.Tensor:
    """Apply a spec's head activation to NCHW logits."""
    if head == "sigmoid":
        return torch.sigmoid(logits)
    if head == "softmax":
        return torch.softmax(logits, dim=1)
    return logits
