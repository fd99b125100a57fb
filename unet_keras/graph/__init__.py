"""The spec of a Keras U-Net read from its layer graph, for models this project did not build.

zhixuhao/unet and keras-unet (``vanilla_unet``, ``custom_unet``) build their models from auto-named
layers (``conv2d_17``), so nothing in a saved model names the plan. The functional graph says
everything else, and :func:`read_unet_graph` reads it:

1. Every layer becomes one or more *ops* in plan terms (a ``Conv2D`` with ``activation="relu"`` is a
   ``conv`` then a ``relu``; ``ReLU``/``LeakyReLU``/``Activation`` layers, ``BatchNormalization``,
   ``GroupNormalization`` with one group per channel (instance norm), ``MaxPooling2D``,
   ``Dropout``/``SpatialDropout2D``, ``Conv2DTranspose``, ``UpSampling2D``, ``Cropping2D``,
   ``Resizing``, ``ZeroPadding2D``, ``Concatenate`` and this project's own upsampling and padding
   layers).
2. (:mod:`unet_graph` from here on.) The *main path* is followed from the input to the output:
   where a tensor feeds two layers, the one that is not a merge (concat, crop, resize, pad)
   continues the path and the other carries a skip.
3. The path is cut at the poolings and the up steps into encoder levels, the bottleneck and decoder
   levels; each level's convs, activations, norms and dropouts give the spec's fields, each skip
   branch gives the skip source, merge and concat order, and what follows the last decoder level's
   two convs gives the extra convs before the head and the head itself.
4. The inferred spec's plan is compared with the graph block by block (kind, channels, kernel,
   padding, bias, inputs), so a spec is only returned when its twin computes what the graph does.

Whatever the spec cannot express is collected, never only the first: each mismatch names the layer
and the architectural feature (``layer conv2d_5 (Conv2D): kernel 5x5; the spec's level convs are
3x3``). Dropout sites the spec has no exact place for (keras-unet drops between a level's two convs)
map to the nearest site and are reported in :attr:`GraphSpec.notes`: inference is unchanged,
training dropout differs.

Step 1 is Keras' own and lives here (:mod:`~unet_keras.graph.ops`: layers into
:class:`unet_graph.Op` values); steps 2 to 4 are framework-free and live in :mod:`unet_graph`, shared
with the PyTorch front-end (:mod:`unet_torch.graph`). :mod:`~unet_keras.graph.reader` runs them.
Hand-written because Keras has no public "graph as data" API beyond each layer's ``input`` and
``output`` tensors and its config, which is what step 1 reads.
"""

from unet_graph import GraphMismatchError, GraphSpec, Op
from unet_keras.graph.ops import graph_ops, keras_graph
from unet_keras.graph.reader import read_unet_graph

__all__ = ["GraphMismatchError", "GraphSpec", "Op", "graph_ops", "keras_graph", "read_unet_graph"]
