"""Framework-free inference: the tiling engine, the label rule and the files a prediction becomes.

:mod:`unet_infer.tiling` cuts an image of any size into tiles of a valid input size, runs a
``forward`` callable (NCHW numpy in and out, from any backend) and stitches the outputs;
:mod:`unet_infer.tile_sizes` picks and checks tiles, :mod:`unet_infer.tta` names the test-time
augmentation views, :mod:`unet_infer.labels` applies the one label rule, :mod:`unet_infer.predictor`
is the base of the framework predictors, and :mod:`unet_infer.masks` encodes the labels as mask
files and overlays. Importing this package loads numpy only (Pillow is imported inside the
functions that write images).
"""

from unet_infer.labels import labels_from_probs
from unet_infer.predictor import TiledPredictor
from unet_infer.tile_sizes import check_tile, default_tile
from unet_infer.tiling import (
    Forward,
    TileGrid,
    axis_weights,
    mirror_indices,
    predict_images,
    predict_tiled,
    tile_grid,
)
from unet_infer.tta import TTA_MODES, TTA_TRANSFORMS, TTAChoice, TTAMode, tta_mode

__all__ = [
    "TTA_MODES",
    "TTA_TRANSFORMS",
    "Forward",
    "TTAChoice",
    "TTAMode",
    "TileGrid",
    "TiledPredictor",
    "axis_weights",
    "check_tile",
    "default_tile",
    "labels_from_probs",
    "mirror_indices",
    "predict_images",
    "predict_tiled",
    "tile_grid",
    "tta_mode",
]
