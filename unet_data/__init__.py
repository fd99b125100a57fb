"""Framework-free data reading: images, masks, image/mask pairs, grouped splits, class weights.

Training, evaluation and ``unet predict`` read their files through this package, so every reader
agrees on the suffixes, the mask encodings and the label that the loss and the metrics skip
(:data:`IGNORE_INDEX`): :mod:`unet_data.images` reads images (TIFF volumes included),
:mod:`unet_data.masks` decodes masks, :mod:`unet_data.pairs` pairs images with masks,
:mod:`unet_data.splits` holds out whole groups, :mod:`unet_data.samples` reads samples when used,
:mod:`unet_data.synthetic` makes the embedded demo data set and :mod:`unet_data.weight_map` the
paper's border weights. Importing this package loads numpy only (Pillow, tifffile and scipy are
imported inside the functions that need them).
"""

from unet_data.masks import IGNORE_INDEX, MaskEncoding, read_mask
from unet_data.pairs import IMAGE_SUFFIXES, find_pairs, image_files, is_image_file
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
    "ByteCache",
    "FileSamples",
    "MemorySamples",
    "MaskEncoding",
    "Sample",
    "SampleRef",
    "class_counts",
    "class_frequencies",
    "expand_pairs",
    "find_pairs",
    "group_of",
    "image_files",
    "is_image_file",
    "median_frequency_weights",
    "parse_bytes",
    "read_mask",
    "sample_bytes",
    "as_samples",
    "scan_samples",
    "split_by_group",
]
