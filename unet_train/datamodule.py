"""The training recipe shared by every data module (:class:`SegmentationDataModule`).

Random crops of the network's input size from mirror-padded images, augmented by
:class:`~unet_train.datasets.Augmentation`, with the center crop of the output size as the target.
Sizes come from the spec (:mod:`unet_train.sizing`); nothing here does shape arithmetic of its own.
Validation and test return whole images with their masks, prediction whole images with their
names (:mod:`unet_train.predict_images`): the system runs them through tiled inference.

Subclasses say where the samples come from (``_load``, ``_load_test``) and what the data measures
(``_measure``: channels and classes, linked to the model by ``train.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader

from unet_data import IGNORE_INDEX, MASK_FORMS, Sample, as_samples, image_files, split_masks
from unet_spec import UNetSpec
from unet_spec.sizes import small_size
from unet_train.datasets import Augmentation, BorderMaps, TrainCrops, WholeImages
from unet_train.predict_images import ImagesOnly, Unlabelled, read_images
from unet_train.sizing import CROP_LIMIT, check_crop, training_layout


class SegmentationDataModule(L.LightningDataModule):
    """Shared training recipe; subclasses only say where the samples come from (``_load``).

    The spec (input channels, padding, sizes) comes from the model being trained: the trainer's
    LightningModule ``spec`` attribute, or :meth:`attach_spec` when the module is used alone.

    Args:
        num_classes: Classes of the task (linked to the model's ``num_classes`` by ``train.py``);
            ``None``: measured from the masks where the data module can (a folder), else 2.
        crop_size: Network input size of a training crop (``N`` for ``N×N``); must be a valid size
            of the spec whose output fits every training image (the error lists those that do).
            ``None``: the largest such size up to 256 (:func:`unet_train.sizing.training_layout`).
        samples_per_epoch: Training crops per epoch (default: one per training image).
        batch_size: Training crops per batch (per device).
        val_batch_size: Whole validation images per batch (images of one size only).
        num_workers: Data-loader worker processes.
        augment: The joint image/mask augmentation (:class:`~unet_train.datasets.Augmentation`;
            in a config: ``augment: {flips: horizontal, rot90: false, jitter: 0.2}``).
        balance_classes: Share of training crops centred on a pixel of a uniformly drawn class
            (rare-class oversampling; 0 draws every crop uniformly over the image).
        border_weight: ``w0`` of the U-Net paper's weight map (:func:`border_weights`): background
            pixels between two nearby objects weigh up to ``1 + w0`` in the loss (0 disables it).
        border_sigma: Width ``σ`` of that weight map, in pixels.
        predict_images: Images for ``train.py predict``: files or folders of images (no masks),
            one path or a list.
        in_channels: Image channels (linked to the model's ``in_channels`` by ``train.py``);
            ``None``: measured from the images where the data module can (a folder), else the
            model's preset decides.
    """

    def __init__(
        self,
        num_classes: int | None = None,
        crop_size: int | None = None,
        samples_per_epoch: int | None = None,
        batch_size: int = 8,
        val_batch_size: int = 1,
        num_workers: int = 0,
        augment: Augmentation | None = None,
        balance_classes: float = 0.0,
        border_weight: float = 0.0,
        border_sigma: float = 5.0,
        predict_images: str | list[str] | None = None,
        in_channels: int | None = None,
    ) -> None:
        super().__init__()
        if num_classes is not None and not 1 <= num_classes < IGNORE_INDEX:
            raise ValueError(
                f"data.num_classes must be in [1, {IGNORE_INDEX - 1}]. Received: {num_classes}"
            )
        if not 0.0 <= balance_classes <= 1.0:
            raise ValueError(f"data.balance_classes must be in [0, 1]. Received: {balance_classes}")
        if border_weight < 0 or border_sigma <= 0:
            raise ValueError(
                "data.border_weight must be >= 0 and data.border_sigma > 0. "
                f"Received: {border_weight}, {border_sigma}"
            )
        self.border_weight, self.border_sigma = border_weight, border_sigma
        self._border_maps: BorderMaps | None = None
        self._num_classes, self._in_channels = num_classes, in_channels
        if in_channels is not None and in_channels < 1:
            raise ValueError(f"data.in_channels must be at least 1. Received: {in_channels}")
        self.balance_classes = balance_classes
        self.crop_size = crop_size
        self.samples_per_epoch = samples_per_epoch
        self.batch_size, self.val_batch_size, self.num_workers = (
            batch_size,
            val_batch_size,
            num_workers,
        )
        self.augment = augment if augment is not None else Augmentation()
        self._spec: UNetSpec | None = None
        if isinstance(predict_images, str):
            predict_images = [predict_images]
        self.predict_images = predict_images
        self.train_samples: Sequence[Sample] = []
        self.val_samples: Sequence[Sample] = []
        self.test_samples: Sequence[Sample] = []
        self.predict_samples: Sequence[Unlabelled] = []
        self._loaded_for: UNetSpec | None = None

    # -- spec ------------------------------------------------------------------------------------
    def attach_spec(self, spec: UNetSpec) -> None:
        """Use ``spec`` (instead of the trainer's model) for channels and crop sizes."""
        self._spec = spec

    @property
    def spec(self) -> UNetSpec:
        if self._spec is not None:
            return self._spec
        trainer = getattr(self, "trainer", None)
        module = getattr(trainer, "lightning_module", None) if trainer is not None else None
        spec = getattr(module, "spec", None)
        if spec is None:
            raise ValueError(
                "the data module needs a spec: call attach_spec(spec) or use a Trainer"
            )
        return spec

    # -- what the data says (``train.py`` links it to the model) -----------------------------------
    @property
    def num_classes(self) -> int:
        """The task's classes: as given, else measured (:meth:`_measure`), else 2."""
        if self._num_classes is None:
            self._measure()
        return self._num_classes if self._num_classes is not None else 2

    @property
    def in_channels(self) -> int | None:
        """The images' channels: as given, else measured, else ``None`` (the model's preset)."""
        if self._in_channels is None:
            self._measure()
        return self._in_channels

    def _measure(self) -> None:
        """Fill in what was not given (``_num_classes``, ``_in_channels``) from the data; the
        base class measures nothing."""

    # -- loading ---------------------------------------------------------------------------------
    def _load(self, spec: UNetSpec) -> tuple[Sequence[Sample], Sequence[Sample]]:
        raise NotImplementedError

    def _load_test(self, spec: UNetSpec) -> Sequence[Sample]:
        raise NotImplementedError

    def _load_predict(self, spec: UNetSpec) -> Sequence[Unlabelled]:
        """The images named by ``predict_images`` (subclasses may give a default source); files
        named as masks of an image beside them (``x_mask.tif`` beside ``x.tif``, or the form of
        the run's own masks) are set aside, and said so."""
        if not self.predict_images:
            raise ValueError(
                "data.predict_images is not set: give the image files or folders to predict"
            )
        paths = image_files([Path(p) for p in self.predict_images])
        forms = tuple(dict.fromkeys((*MASK_FORMS[1:], *self._mask_forms())))
        images, masks, found = split_masks(paths, forms)
        if masks:
            rank_zero_info(
                f"predict: skipped {len(masks)} mask file(s) among data.predict_images "
                f"({', '.join(found)} beside their images)"
            )
        return read_images(images, spec.in_channels)

    def _mask_forms(self) -> tuple[str, ...]:
        """Name forms of this data's masks beyond :data:`unet_data.MASK_FORMS` (none here)."""
        return ()

    def setup(self, stage: str | None = None) -> None:
        spec = self.spec
        # Prediction reads only data.predict_images (each checked against the model as it is
        # read): the labelled folder is not measured, and need not be there.
        if stage != "predict" and spec.in_channels != (self.in_channels or spec.in_channels):
            raise ValueError(
                f"the model expects in_channels={spec.in_channels} but data.in_channels is "
                f"{self.in_channels}; set data.in_channels (train.py links it to the model)"
            )
        self._check_crop(spec, stage)
        if stage == "test":
            self.test_samples = self._load_test(spec)
            return
        if stage == "predict":
            self.predict_samples = self._load_predict(spec)
            return
        if self._loaded_for != spec:
            self.train_samples, self.val_samples = self._load(spec)
            self._loaded_for = spec
            self._border_maps = None
        train = as_samples(self.train_samples, self.num_classes)
        self._choose_crop(spec, train.sizes.tolist(), train.names)

    # -- the training crop (every data module goes through these two) -----------------------------
    def _check_crop(self, spec: UNetSpec, stage: str | None) -> None:
        """``data.crop_size`` against the spec's valid sizes before any sample is read (one line
        naming it and the nearest valid sizes); testing and prediction without one use the spec's
        small size."""
        if self.crop_size is not None:
            self.layout = check_crop(spec, self.crop_size)
        elif stage in ("test", "predict"):
            self.layout = spec.plan().check_size(small_size(spec))

    def _choose_crop(
        self,
        spec: UNetSpec,
        sizes: Sequence[tuple[int, int]],
        names: Sequence[str],
        fits: str = "every image",
    ) -> None:
        """The training crop: ``data.crop_size`` checked against the spec and the training images
        of ``sizes`` (:func:`~unet_train.sizing.training_layout`), or chosen when not given (the
        info line says the crop's target ``fits`` those images)."""
        given = self.crop_size
        self.layout = training_layout(spec, given, sizes, names)
        if given is None:
            self.crop_size = self.layout.input_size[0]
            rank_zero_info(
                f"data.crop_size: {self.crop_size} (the largest valid size up to {CROP_LIMIT} whose "
                f"training target fits {fits})"
            )

    def train_dataloader(self) -> DataLoader:
        if not self.train_samples:
            raise ValueError("no training images")
        augment = self.augment.build(self.spec.in_channels)
        dataset = TrainCrops(
            self.train_samples,
            self.layout.input_size,
            self.layout.output_size,
            self.samples_per_epoch or len(self.train_samples),
            augment,
            self.balance_classes,
            self.border_maps(),
        )
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=len(dataset) > self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def border_maps(self) -> BorderMaps | None:
        """The training images' border weight maps, or ``None`` when disabled: a sequence that
        computes each map from its mask when used (in-memory samples keep theirs)."""
        if self.border_weight <= 0:
            return None
        if self._border_maps is None:
            self._border_maps = BorderMaps(
                self.train_samples, self.border_weight, self.border_sigma
            )
        return self._border_maps

    def val_dataloader(self) -> DataLoader:
        if not self.val_samples:
            raise ValueError("no validation images")
        return self._whole(WholeImages(self.val_samples), self.val_batch_size)

    def test_dataloader(self) -> DataLoader:
        if not self.test_samples:
            raise ValueError("no test images")
        return self._whole(WholeImages(self.test_samples), self.val_batch_size)

    def predict_dataloader(self) -> DataLoader:
        if not self.predict_samples:
            raise ValueError("no images to predict")
        return self._whole(ImagesOnly(self.predict_samples), 1)

    def _whole(self, dataset: torch.utils.data.Dataset, batch_size: int) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )


__all__ = ["SegmentationDataModule"]
