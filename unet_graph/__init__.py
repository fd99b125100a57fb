"""The spec of a U-Net read from its graph, whatever framework built it.

Public U-Nets are built from auto-named layers (``conv2d_17``) or from modules named after one
project's taste (``down1.double_conv.0``), so nothing in them names the plan. Their graph says
everything else. A *front-end* turns a framework's graph into a :class:`Graph` of :class:`Op`
values in plan terms (conv, norm, activation, pool, up step, merge, concat, head; a Keras
``Conv2D`` with ``activation="relu"`` is a ``conv`` then a ``relu``), and
:func:`read_unet_graph` reads that:

1. (the front-end: :mod:`unet_keras.graph` for a Keras functional model, :mod:`unet_torch.graph`
   for a traced torch module) every layer, module or function call becomes one or more ops;
2. the *main path* is followed from the input to the output: where a tensor feeds two ops, the one
   that is not a merge (concat, crop, resize, pad) continues the path and the other carries a skip;
3. the path is cut at the poolings and the up steps into encoder levels, the bottleneck and decoder
   levels; each level's convs, activations, norms and dropouts give the spec's fields, each skip
   branch gives the skip source, merge and concat order, and what follows the last decoder level's
   two convs gives the extra convs before the head and the head itself;
4. the inferred spec's plan is compared with the graph block by block (kind, channels, kernel,
   padding, bias, inputs), so a spec is only returned when its twin computes what the graph does.

Whatever the spec cannot express is collected, never only the first: each mismatch names the op's
origin and the architectural feature (``layer conv2d_5 (Conv2D): kernel 5x5; the spec's level convs
are 3x3``). Dropout sites the spec has no exact place for map to the nearest site and are reported
in :attr:`GraphSpec.notes`: inference is unchanged, training dropout differs.

This package imports no framework: a fix to the walk serves every front-end. Hand-written because
the frameworks' graph tools (Keras' layer graph, ``torch.fx``, ONNX) each describe their own ops,
and none reads a U-Net as a whole.

The reader is cut by step: :mod:`~unet_graph.ops` holds the vocabulary, :mod:`~unet_graph.walk`
follows the main path and the skips (2), :mod:`~unet_graph.levels` cuts the path into levels and
names the plan blocks (3), :mod:`~unet_graph.infer` gathers the spec's fields,
:mod:`~unet_graph.plan_check` compares the plan with the graph (4), and :mod:`~unet_graph.reader`
runs them in order.
"""

from unet_graph.ops import ACTS, MERGES, NORMS, UPS, WORDS, Graph, GraphMismatchError, Op
from unet_graph.reader import GraphSpec, read_unet_graph

__all__ = [
    "ACTS",
    "MERGES",
    "NORMS",
    "UPS",
    "WORDS",
    "Graph",
    "GraphMismatchError",
    "GraphSpec",
    "Op",
    "read_unet_graph",
]
