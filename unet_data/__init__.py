"""Framework-free data reading: images, masks, image/mask pairs, grouped splits, class weights.

Training, evaluation and ``unet predict`` read their files through this package, so every reader
agrees on the suffixes, the mask encodings and the label that the loss and the metrics skip
(:data:`IGNORE_INDEX`): :mod:`unet_data.images` reads images (TIFF volumes included),
:mod:`unet_data.masks` decodes masks (:mod:`unet_data.survey` measures their encoding),
:mod:`unet_data.pairs` holds the rules that pair images with masks, :mod:`unet_data.layouts` finds
the pairs of a data folder as public datasets ship it (or of a pairs list, or nnU-Net's folder),
:mod:`unet_data.splits` holds out whole groups, :mod:`unet_data.samples` reads samples when used,
:mod:`unet_data.synthetic` makes the embedded demo data set and :mod:`unet_data.weight_map` the
paper's border weights. Importing this package loads numpy only (Pillow, tifffile and scipy are
imported inside the functions that need them).
"""

from unet_data.layouts import Found, Layout, Pair, find_dataset, find_pairs, find_test
from unet_data.masks import IGNORE_INDEX, MaskEncoding, read_mask, read_valid
from unet_data.pairs import IMAGE_SUFFIXES, MASK_FORMS, image_files, is_image_file, split_masks
from unet_data.samples import (
    ByteCache,
    FileSamples,
    MemorySamples,
    Sample,
    SampleRef,
    as_samples,
    class_counts,
    class_frequencies,
    expand_pairs,
    median_frequency_weights,
    parse_bytes,
    sample_bytes,
    scan_samples,
)
from unet_data.splits import GROUP_PATTERN, group_of, split_by_group

__all__ = [
    "GROUP_PATTERN",
    "IGNORE_INDEX",
    "IMAGE_SUFFIXES",
    "MASK_FORMS",
    "ByteCache",
    "FileSamples",
    "Found",
    "Layout",
    "Pair",
    "MemorySamples",
    "MaskEncoding",
    "Sample",
    "SampleRef",
    "class_counts",
    "class_frequencies",
    "expand_pairs",
    "find_dataset",
    "find_pairs",
    "find_test",
    "group_of",
    "image_files",
    "is_image_file",
    "median_frequency_weights",
    "parse_bytes",
    "read_mask",
    "read_valid",
    "sample_bytes",
    "as_samples",
    "scan_samples",
    "split_by_group",
    "split_masks",
]
