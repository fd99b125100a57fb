"""The embedded synthetic dataset as a data module (:class:`SyntheticDataModule`): no download.

Training, validation and test images are generated from consecutive indices of one seeded dataset
(:mod:`unet_data.synthetic`), so the splits never share an image.
"""

from __future__ import annotations

from typing import Any

from unet_data import Sample
from unet_data.synthetic import make_dataset
from unet_spec import UNetSpec
from unet_train.datamodule import SegmentationDataModule
from unet_train.predict_images import Unlabelled


class SyntheticDataModule(SegmentationDataModule):
    """The embedded dataset (:mod:`unet_data.synthetic`): textured shapes, generated, no download.

    Args:
        num_train: Training images.
        num_val: Validation images (generated from indices after the training ones).
        num_test: Test images (generated from indices after the validation ones); without
            ``predict_images``, ``train.py predict`` segments these too.
        image_size: Side of the square images.
        num_classes: Classes including the background (2 to 5).
        seed: Dataset seed.
        **kwargs: The training recipe (see :class:`SegmentationDataModule`).
    """

    def __init__(
        self,
        num_train: int = 64,
        num_val: int = 16,
        num_test: int = 16,
        image_size: int = 128,
        num_classes: int = 5,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes=num_classes, **kwargs)
        for name, value in (("num_train", num_train), ("num_val", num_val), ("num_test", num_test)):
            if value < 1:
                raise ValueError(f"data.{name} must be at least 1. Received: {value}")
        self.num_train, self.num_val, self.num_test = num_train, num_val, num_test
        self.image_size, self.seed = image_size, seed

    def _samples(self, spec: UNetSpec, count: int, start: int) -> list[Sample]:
        images, masks = make_dataset(
            count, self.image_size, spec.in_channels, self.num_classes, self.seed, start
        )
        return [(f"synthetic#{start + i}", images[i], masks[i]) for i in range(count)]

    def _load(self, spec: UNetSpec) -> tuple[list[Sample], list[Sample]]:
        return self._samples(spec, self.num_train, 0), self._samples(
            spec, self.num_val, self.num_train
        )

    def _load_test(self, spec: UNetSpec) -> list[Sample]:
        return self._samples(spec, self.num_test, self.num_train + self.num_val)

    def _load_predict(self, spec: UNetSpec) -> list[Unlabelled]:
        if self.predict_images:
            return super()._load_predict(spec)
        return [(name, image) for name, image, _ in self._load_test(spec)]


__all__ = ["SyntheticDataModule"]
