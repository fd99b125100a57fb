"""Images to predict (``data.predict_images``): files or folders of images, no masks.

The headers are checked when the list is made (:func:`read_images`); the pixels are read when used,
one whole image per batch (:class:`ImagesOnly`: sizes may differ), for the system's tiled inference.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from unet_data.images import image_info, read_image, slice_name
from unet_train.datasets import DataFileError

#: An image to predict: (name, image ``(C, H, W)`` float32 in [0, 1]).
Unlabelled = tuple[str, np.ndarray]


class ImageFiles(Sequence[Unlabelled]):
    """Images to predict, read when used: ``(name, image)`` items (slices of volumes too)."""

    def __init__(self, items: list[tuple[Path, int | None]], in_channels: int) -> None:
        self.items, self.in_channels = items, in_channels

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return ImageFiles(self.items[i], self.in_channels)
        path, index = self.items[i]
        return slice_name(path, index), read_image(path, self.in_channels, index=index)


class ImagesOnly(torch.utils.data.Dataset):
    """Whole images and their names, for prediction (one image per batch: sizes may differ)."""

    def __init__(self, samples: Sequence[Unlabelled]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, str]:
        try:
            name, image = self.samples[i]
        except (ValueError, OSError) as err:
            raise DataFileError(str(err)) from None
        return torch.from_numpy(image), name


def read_images(paths: list[Path], in_channels: int) -> ImageFiles:
    """Images to predict, named by their paths, read when used (headers are checked now).

    Raises:
        ValueError: No images, two images with one file stem (their masks would share a name), an
            unreadable header or a channel count other than ``in_channels``.
        FileNotFoundError: A missing file (named).
    """
    if not paths:
        raise ValueError("data.predict_images: no image files found")
    stems: dict[str, Path] = {}
    items: list[tuple[Path, int | None]] = []
    for path in paths:
        if path.stem in stems:
            raise ValueError(
                f"{path}: same file stem as {stems[path.stem]}; the masks are named after the stem"
            )
        stems[path.stem] = path
        info = image_info(path)
        if info.slices > 1:  # the masks are named after the stem: slices would overwrite each other
            raise ValueError(
                f"{path}: a volume of {info.slices} slices; prediction reads single images"
            )
        if info.channels != in_channels:
            read_image(path, in_channels)  # its one-line error names the file and the channels
        items.append((path, None))
    return ImageFiles(items, in_channels)


__all__ = ["ImageFiles", "ImagesOnly", "Unlabelled", "read_images"]
