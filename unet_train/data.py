"""Data modules: a folder of images and masks, and the embedded synthetic dataset.

This is their public home in Python (``from unet_train.data import FolderDataModule``). Configs
and saved runs name each class where it lives (``unet_train.folder.FolderDataModule``,
``unet_train.synthetic.SyntheticDataModule``, ``unet_train.streaming.StreamingDataModule``);
configs written with this module's paths (``class_path: unet_train.data.FolderDataModule``) load
as they did, since the names here are those classes. Each part lives in its own module:

- :mod:`unet_train.datamodule`: the training recipe they share (:class:`SegmentationDataModule`):
  random crops of the network's input size from mirror-padded images, augmented, with the center
  crop of the output size as the target; sizes from the spec (:mod:`unet_train.sizing`).
- :mod:`unet_train.folder`: :class:`FolderDataModule`, samples read from their files when used,
  every bad file found in ``setup`` as one line naming it, channels, classes and mask encoding
  measured when not given.
- :mod:`unet_train.synthetic`: :class:`SyntheticDataModule`, generated, no download.
- :mod:`unet_train.splits`: the images a random or ``tail`` split holds out (:func:`held_out`).
- :mod:`unet_train.predict_images`: the images ``train.py predict`` reads (:func:`read_images`).
- :mod:`unet_train.mask_fields`: the mask fields as one value for :func:`unet_data.read_mask`.

Splits: ``fit``/``validate`` read the training and validation images, ``test`` the test split
(a folder's ``test/``, or synthetic images after the validation ones), ``predict`` the images named
by ``predict_images`` (files or folders, no masks).

Masks become int64 class ids in ``[0, num_classes)``, with :data:`~unet_data.IGNORE_INDEX` where
the loss and the metrics must not look (file reading: :mod:`unet_data`).

Streaming shards (a dataset larger than a disk, or on object storage) are
:class:`unet_train.streaming.StreamingDataModule`.
"""

from __future__ import annotations

from unet_train.datamodule import SegmentationDataModule
from unet_train.folder import FolderDataModule
from unet_train.predict_images import ImagesOnly, read_images
from unet_train.splits import held_out
from unet_train.synthetic import SyntheticDataModule

__all__ = [
    "FolderDataModule",
    "ImagesOnly",
    "SegmentationDataModule",
    "SyntheticDataModule",
    "held_out",
    "read_images",
]
