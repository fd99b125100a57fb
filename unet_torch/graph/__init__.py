"""The spec of a torch U-Net read from its graph: the PyTorch front-end of :mod:`unet_graph`.

Public PyTorch U-Nets are plain modules under their authors' names (``down1.double_conv.0``,
``decoder.3.up``), nested in ``Sequential``, ``ModuleList`` and ``ModuleDict`` or called as
functions. :func:`read_torch_graph` reads any of them:

1. the module is traced with ``torch.fx`` (each node knowing the module whose forward runs it) and
   run once, so every tensor's shape and every size computation (``x.size(2) - y.size(2)``) has its
   value; where fx cannot trace it (Python control flow on sizes), ``torch.export`` exports it at
   the size asked for, and its ATen graph is read instead (:mod:`~unet_torch.graph.calls`);
2. each call becomes an op in plan terms (:mod:`~unet_torch.graph.steps`): ``Conv2d`` (with or
   without bias), ``BatchNorm2d``, ``InstanceNorm2d`` (affine or not), ``GroupNorm`` with one group
   per channel, ``ReLU``/``LeakyReLU`` and their functions and methods, ``MaxPool2d``, dropout,
   ``ConvTranspose2d``, ``Upsample``/``F.interpolate``, ``torch.cat``, ``F.pad`` to a skip's size,
   a centre crop by slicing or torchvision's ``center_crop``, ``sigmoid``/``softmax``; calls that
   compute sizes only are no ops, ``contiguous()`` and ``Identity`` pass their input on, and
   anything else is an unknown op that a refusal names by module path and class;
3. the framework-free reader (:func:`unet_graph.read_unet_graph`) infers the spec and checks it
   block by block;
4. each canonical tensor is tied to the module's state-dict key (:attr:`TorchGraphSpec.mapping`),
   which reads the source's weights (:func:`canonical_weights`) and writes them back under its own
   keys (:func:`source_state`, loadable with ``strict=True``).

Hand-written on ``torch.fx``'s and ``torch.export``'s public graphs because neither reads a
U-Net as a whole: each lists its ops, and the spec is a statement about all of them together.
"""

from unet_graph import GraphMismatchError
from unet_torch.graph.reader import TORCH_WORDS, Origin, TorchGraphSpec, read_torch_graph
from unet_torch.graph.weights import (
    Fixed,
    TensorMap,
    canonical_weights,
    source_state,
    tensor_mapping,
)

__all__ = [
    "TORCH_WORDS",
    "Fixed",
    "GraphMismatchError",
    "Origin",
    "TensorMap",
    "TorchGraphSpec",
    "canonical_weights",
    "read_torch_graph",
    "source_state",
    "tensor_mapping",
]
