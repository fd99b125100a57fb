"""Data modules: a folder of images and masks, and the embedded synthetic dataset.

Both share one training recipe (:class:`SegmentationDataModule`): random crops of the network's input
size from mirror-padded images, augmented by :class:`~unet_train.datasets.Augmentation`, with the
center crop of the output size as the target. Sizes come from ``spec.plan().check_size(crop_size)``;
nothing here does shape arithmetic of its own. Validation and test return whole images with their
masks, prediction whole images with their names: the system runs them through tiled inference.

Splits: ``fit``/``validate`` read the training and validation images, ``test`` the test split
(a folder's ``test/``, or synthetic images after the validation ones), ``predict`` the images named
by ``predict_images`` (files or folders, no masks).

Masks become int64 class ids in ``[0, num_classes)``, with :data:`~unet_spec.data.IGNORE_INDEX` where
the loss and the metrics must not look (file reading: :mod:`unet_spec.data`).

Every problem with the files is found in ``setup`` (all files are read up front; the datasets are
small enough to keep in memory) and raised as one ``ValueError``/``FileNotFoundError`` line that
names the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from unet_spec import UNetSpec
from unet_spec.data import (
    GROUP_PATTERN,
    IGNORE_INDEX,
    MaskEncoding,
    Sample,
    find_pairs,
    image_files,
    read_mask,
    split_by_group,
)
from unet_spec.images import read_image
from unet_spec.synthetic import make_dataset
from unet_spec.weight_map import border_weights
from unet_train.datasets import Augmentation, TrainCrops, WholeImages

#: An image to predict: (name, image ``(C, H, W)`` float32 in [0, 1]).
Unlabelled = tuple[str, np.ndarray]


class ImagesOnly(torch.utils.data.Dataset):
    """Whole images and their names, for prediction (one image per batch: sizes may differ)."""

    def __init__(self, samples: list[Unlabelled]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, str]:
        name, image = self.samples[i]
        return torch.from_numpy(image), name


# -- data modules ---------------------------------------------------------------------------------
class SegmentationDataModule(L.LightningDataModule):
    """Shared training recipe; subclasses only say where the samples come from (``_load``).

    The spec (input channels, padding, sizes) comes from the model being trained: the trainer's
    LightningModule ``spec`` attribute, or :meth:`attach_spec` when the module is used alone.

    Args:
        num_classes: Classes of the task (linked to the model's ``num_classes`` by ``train.py``).
        crop_size: Network input size of a training crop (``N`` for ``N×N``); must be a valid size
            of the spec (the error lists the nearest ones).
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
    """

    def __init__(
        self,
        num_classes: int = 2,
        crop_size: int = 128,
        samples_per_epoch: int | None = None,
        batch_size: int = 8,
        val_batch_size: int = 1,
        num_workers: int = 0,
        augment: Augmentation | None = None,
        balance_classes: float = 0.0,
        border_weight: float = 0.0,
        border_sigma: float = 5.0,
        predict_images: str | list[str] | None = None,
    ) -> None:
        super().__init__()
        if not 1 <= num_classes < IGNORE_INDEX:
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
        self._border_maps: list[np.ndarray] | None = None
        self.num_classes = num_classes
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
        self.train_samples: list[Sample] = []
        self.val_samples: list[Sample] = []
        self.test_samples: list[Sample] = []
        self.predict_samples: list[Unlabelled] = []
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

    # -- loading ---------------------------------------------------------------------------------
    def _load(self, spec: UNetSpec) -> tuple[list[Sample], list[Sample]]:
        raise NotImplementedError

    def _load_test(self, spec: UNetSpec) -> list[Sample]:
        raise NotImplementedError

    def _load_predict(self, spec: UNetSpec) -> list[Unlabelled]:
        """The images named by ``predict_images`` (subclasses may give a default source)."""
        if not self.predict_images:
            raise ValueError(
                "data.predict_images is not set: give the image files or folders to predict"
            )
        return read_images(image_files([Path(p) for p in self.predict_images]), spec.in_channels)

    def setup(self, stage: str | None = None) -> None:
        spec = self.spec
        self.layout = spec.plan().check_size(self.crop_size)
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
        oh, ow = self.layout.output_size
        for name, _, mask in self.train_samples:
            h, w = mask.shape
            if h < oh or w < ow:
                raise ValueError(
                    f"{name}: image {h}x{w} is smaller than the training target "
                    f"{oh}x{ow} (the output of data.crop_size={self.crop_size}); lower crop_size"
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

    def border_maps(self) -> list[np.ndarray] | None:
        """The training images' border weight maps (computed once), or ``None`` when disabled."""
        if self.border_weight <= 0:
            return None
        if self._border_maps is None:
            self._border_maps = [
                border_weights(
                    mask, self.border_weight, self.border_sigma, ignore_index=IGNORE_INDEX
                )
                for _, _, mask in self.train_samples
            ]
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


def read_images(paths: list[Path], in_channels: int) -> list[Unlabelled]:
    """Images to predict, named by their paths.

    Raises:
        ValueError: No images, or two images with one file stem (their masks would share a name).
        FileNotFoundError: A missing file (named).
    """
    if not paths:
        raise ValueError("data.predict_images: no image files found")
    stems: dict[str, Path] = {}
    for path in paths:
        if path.stem in stems:
            raise ValueError(
                f"{path}: same file stem as {stems[path.stem]}; the masks are named after the stem"
            )
        stems[path.stem] = path
    return [(str(path), read_image(path, in_channels)) for path in paths]


class FolderDataModule(SegmentationDataModule):
    """Images and masks from a folder, matched by file stem.

    Layouts: ``root/images`` + ``root/masks`` (split by ``val_fraction``), or ``root/train`` and
    ``root/val`` each holding ``images/`` and ``masks/``. The test split (``train.py test``) is
    ``root/test/`` with ``images/`` and ``masks/``.

    Args:
        root: The data folder.
        num_classes: Classes of the task.
        mask_encoding: ``auto``, ``index``, ``binary`` (0/255) or ``palette`` (see :func:`read_mask`).
        value_map: Raw mask value → class id (e.g. ``{0: 1, 255: 0}`` to make white class 0).
        ignore_value: Raw mask value whose pixels are ignored (e.g. CamVid's void, 11).
        palette: RGB colour of each class, for colour masks.
        val_fraction: Share of images held out when there is no ``val/`` folder, and the least
            share a ``group`` split holds out when ``val_groups`` is not given.
        split: ``random`` (seeded), ``tail`` (the last images in name order: for slices of one
            volume, where neighbours are correlated) or ``group``: whole sequences or volumes are
            held out (:func:`unet_spec.data.split_by_group`), so validation scores images from a
            drive or volume the model never saw. With ``train/`` and ``val/`` folders, ``group``
            pools both before splitting; the other values keep the folders as given.
        group_pattern: Regular expression whose first group names an image's sequence or volume
            (default: the name up to the first underscore, CamVid's drive).
        val_groups: The groups to hold out (e.g. ``[0006R0]``); default: drawn with ``seed``.
        seed: Seed of the random split.
        **kwargs: The training recipe (see :class:`SegmentationDataModule`).

    Example:
        ``python train.py fit --config configs/isbi2012.yaml --data.root ../shared/data/isbi2012``
    """

    def __init__(
        self,
        root: str,
        num_classes: int = 2,
        mask_encoding: MaskEncoding = "auto",
        value_map: dict[int, int] | None = None,
        ignore_value: int | None = None,
        palette: list[list[int]] | None = None,
        val_fraction: float = 0.2,
        split: Literal["random", "tail", "group"] = "random",
        group_pattern: str = GROUP_PATTERN,
        val_groups: list[str] | None = None,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes=num_classes, **kwargs)
        if val_groups is not None and split != "group":
            raise ValueError(f"data.val_groups needs data.split: group. Received: split={split!r}")
        self.group_pattern, self.val_groups = group_pattern, val_groups
        self.held_out_groups: list[str] = []
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"data.val_fraction must be in (0, 1). Received: {val_fraction}")
        self.root = Path(root)
        self.mask_options = {
            "num_classes": num_classes, "encoding": mask_encoding, "value_map": value_map,
            "ignore_value": ignore_value, "palette": palette,
        }  # fmt: skip
        self.val_fraction, self.split, self.seed = val_fraction, split, seed

    def _read(self, pairs: list[tuple[Path, Path]], in_channels: int) -> list[Sample]:
        samples = []
        for image_path, mask_path in pairs:
            image = read_image(image_path, in_channels)
            mask = read_mask(mask_path, **self.mask_options)
            if mask.shape != image.shape[1:]:
                raise ValueError(
                    f"{mask_path}: mask is {mask.shape[0]}x{mask.shape[1]} but image {image_path} "
                    f"is {image.shape[1]}x{image.shape[2]}"
                )
            samples.append((str(image_path), image, mask))
        return samples

    def _load(self, spec: UNetSpec) -> tuple[list[Sample], list[Sample]]:
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: no such data folder")
        if (self.root / "train").is_dir():
            train_pairs = find_pairs(self.root / "train")
            val_pairs = find_pairs(self.root / "val")
            if self.split == "group":
                train_pairs, val_pairs = self._group_split(train_pairs + val_pairs)
        elif (self.root / "images").is_dir() and self.split == "group":
            train_pairs, val_pairs = self._group_split(find_pairs(self.root))
        elif (self.root / "images").is_dir():
            pairs = find_pairs(self.root)
            if len(pairs) < 2:
                raise ValueError(f"{self.root}: need at least 2 images to split off validation")
            n_val = min(len(pairs) - 1, max(1, round(len(pairs) * self.val_fraction)))
            if self.split == "tail":
                order = list(range(len(pairs)))
            else:
                order = torch.randperm(
                    len(pairs), generator=torch.Generator().manual_seed(self.seed)
                ).tolist()
            val_idx = set(order[-n_val:])
            train_pairs = [p for i, p in enumerate(pairs) if i not in val_idx]
            val_pairs = [p for i, p in enumerate(pairs) if i in val_idx]
        else:
            raise FileNotFoundError(
                f"{self.root}: expected images/ and masks/, or train/ and val/ subfolders"
            )
        return self._read(train_pairs, spec.in_channels), self._read(val_pairs, spec.in_channels)

    def _group_split(self, pairs: list[tuple[Path, Path]]) -> tuple[list, list]:
        train, val, self.held_out_groups = split_by_group(
            pairs, self.group_pattern, self.val_groups, self.val_fraction, self.seed
        )
        return train, val

    def _load_test(self, spec: UNetSpec) -> list[Sample]:
        test = self.root / "test"
        if not (test / "images").is_dir() or not (test / "masks").is_dir():
            raise FileNotFoundError(
                f"{test}: no test split (train.py test reads {test}/images/ and {test}/masks/)"
            )
        return self._read(find_pairs(test), spec.in_channels)


class SyntheticDataModule(SegmentationDataModule):
    """The embedded dataset (:mod:`unet_spec.synthetic`): textured shapes, generated, no download.

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


__all__ = [
    "FolderDataModule",
    "ImagesOnly",
    "SegmentationDataModule",
    "SyntheticDataModule",
    "read_images",
]
