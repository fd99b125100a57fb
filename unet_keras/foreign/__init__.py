"""Weights from Keras models this project did not build, and ``.weights.h5`` files.

A Keras model built elsewhere (zhixuhao/unet, keras-unet's ``vanilla_unet`` and ``custom_unet``,
the starting model's own code) has auto-named layers (``conv2d_17``), so its weights cannot be
found by plan name. A model file (``.keras``, or a legacy full-model ``.h5``/``.hdf5`` such as
zhixuhao's ``ModelCheckpoint`` writes) has its layer graph, and the spec is read from it
(:mod:`unet_keras.graph`): no flags needed, and each weighted layer is known as a plan block.

A file without a graph needs the spec. A ``.weights.h5`` file names its groups after the layer
*class* and the layer's position among layers of that class (``conv2d``, ``conv2d_1``, …), never
after the layer's own name; a legacy weights-only ``.h5`` lists its layers in order. Their layers
are matched by order, per class, with the plan's blocks of the same kind, checking every weight
shape (and padding, strides, dilation where the file says); every layer that does not fit is
named, with the plan block and what was expected versus found. The project's own ``.weights.h5``
files carry their spec as the root attribute ``unet_spec``.

Keras layouts stay in :mod:`unet_keras.adapters`: matched arrays are set into the project's own
model of the spec (its twin), and the adapter turns that model into canonical weights.

By concern: :mod:`~unet_keras.foreign.loading` reads any Keras file into canonical weights,
:mod:`~unet_keras.foreign.h5_read` reads the HDF5 layouts (Keras 3 weights, legacy models and
weights, the stored spec), :mod:`~unet_keras.foreign.matching` pairs layers with plan blocks by
order, kind and shape, :mod:`~unet_keras.foreign.transfer` moves weights between canonical form
and a model read by its graph, and :mod:`~unet_keras.foreign.h5_write` writes ``.weights.h5`` and
legacy ``.h5`` files.
"""

from unet_keras.foreign.h5_read import (
    H5_SPEC_ATTR,
    LEGACY_SUFFIXES,
    load_legacy_h5,
    stored_h5_spec,
    weighted_layers_h5,
)
from unet_keras.foreign.h5_write import save_legacy_h5, save_weights_h5
from unet_keras.foreign.loading import load_keras_weights, read_keras_model, stored_keras_spec
from unet_keras.foreign.matching import KerasLayerWeights, match_layers, weighted_layers
from unet_keras.foreign.transfer import canonical_from_graph, canonical_from_model, load_into_model

__all__ = [
    "H5_SPEC_ATTR",
    "LEGACY_SUFFIXES",
    "KerasLayerWeights",
    "canonical_from_graph",
    "canonical_from_model",
    "load_into_model",
    "load_keras_weights",
    "load_legacy_h5",
    "match_layers",
    "read_keras_model",
    "save_legacy_h5",
    "save_weights_h5",
    "stored_h5_spec",
    "stored_keras_spec",
    "weighted_layers",
    "weighted_layers_h5",
]
