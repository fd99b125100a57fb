"""Data modules: a folder of images and masks, and the embedded synthetic dataset.

Both share one training recipe (:class:`SegmentationDataModule`): random crops of the network's input
size from mirror-padded images, augmented by :class:`~unet_train.datasets.Augmentation`, with the
center crop of the output size as the target. Sizes come from ``spec.plan().check_size(crop_size)``;
nothing here does shape arithmetic of its own. Validation and test return whole images with their
masks, prediction whole images with their names: the system runs them through tiled inference.

Splits: ``fit``/``validate`` read the training and validation images, ``test`` the test split
(a folder's ``test/``, or synthetic images after the validation ones), ``predict`` the images named
by ``predict_images`` (files or folders, no masks).

Masks become int64 class ids in ``[0, num_classes)``, with :data:`~unet_data.IGNORE_INDEX` where
the loss and the metrics must not look (file reading: :mod:`unet_data`).

Folder datasets are read when used (:class:`~unet_data.FileSamples`): memory stays flat
whatever the dataset's size, with an optional cache bounded in bytes (``cache_bytes``). Every
problem with the files is still found in ``setup`` and raised as one ``ValueError``/
``FileNotFoundError`` line that names the file: a header pass checks sizes, slices and channels
without decoding, then one streaming scan decodes each sample once (in the data-loader workers) to
find unreadable files and bad mask values and to count the classes; its counts are saved in a small
cache file, so later runs on unchanged files skip the decoding. A file that goes bad later fails
in the worker that reads it, with the same one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader

from unet_data import (
    GROUP_PATTERN,
    IGNORE_INDEX,
    ByteCache,
    FileSamples,
    MaskEncoding,
    Sample,
    SampleRef,
    as_samples,
    class_counts,
    expand_pairs,
    find_pairs,
    group_of,
    image_files,
    parse_bytes,
    sample_bytes,
    scan_samples,
    split_by_group,
)
from unet_data.images import image_info, is_tiff, read_image, slice_name
from unet_data.survey import survey_masks
from unet_data.synthetic import make_dataset
from unet_runtime.cache import cache_dir
from unet_spec import UNetSpec
from unet_spec.sizes import small_size
from unet_train.datasets import Augmentation, BorderMaps, DataFileError, TrainCrops, WholeImages
from unet_train.sizing import CROP_LIMIT, training_layout

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


def _as_is(item: Any) -> Any:
    return item


class _Scan(torch.utils.data.Dataset):
    """The streaming scan as a dataset, so that the data-loader workers share its decoding."""

    def __init__(self, samples: FileSamples) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> np.ndarray | str:
        return self.samples.scan_one(i)


# -- data modules ---------------------------------------------------------------------------------
def mask_options(
    num_classes: int,
    mask_encoding: MaskEncoding,
    value_map: dict[int, int] | None,
    ignore_value: int | None,
    palette: list[list[int]] | None,
) -> dict[str, Any]:
    """The data modules' mask fields as :func:`~unet_data.read_mask`'s keyword arguments."""
    return {"num_classes": num_classes, "encoding": mask_encoding, "value_map": value_map,
            "ignore_value": ignore_value, "palette": palette}  # fmt: skip


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
        """The images named by ``predict_images`` (subclasses may give a default source)."""
        if not self.predict_images:
            raise ValueError(
                "data.predict_images is not set: give the image files or folders to predict"
            )
        return read_images(image_files([Path(p) for p in self.predict_images]), spec.in_channels)

    def setup(self, stage: str | None = None) -> None:
        spec = self.spec
        # Prediction reads only data.predict_images (each checked against the model as it is
        # read): the labelled folder is not measured, and need not be there.
        if stage != "predict" and spec.in_channels != (self.in_channels or spec.in_channels):
            raise ValueError(
                f"the model expects in_channels={spec.in_channels} but data.in_channels is "
                f"{self.in_channels}; set data.in_channels (train.py links it to the model)"
            )
        if self.crop_size is not None or stage in ("test", "predict"):
            self.layout = spec.plan().check_size(self.crop_size or small_size(spec))
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
        given = self.crop_size
        self.layout = training_layout(spec, given, train.sizes.tolist(), train.names)
        if given is None:
            self.crop_size = self.layout.input_size[0]
            rank_zero_info(
                f"data.crop_size: {self.crop_size} (the largest valid size up to {CROP_LIMIT} whose "
                "training target fits every image)"
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


def held_out(count: int, fraction: float, seed: int = 0, tail: bool = False) -> set[int]:
    """The indices of the images a random (seeded) or ``tail`` split holds out for validation:
    ``round(count * fraction)`` of them, at least one and never all. ``unet data pack`` holds out
    the same images as :class:`FolderDataModule` for the same fraction and seed.

    Raises:
        ValueError: Fewer than two images.
    """
    if count < 2:
        raise ValueError(f"need at least 2 images to split off validation (found {count})")
    n_val = min(count - 1, max(1, round(count * fraction)))
    if tail:
        order = list(range(count))
    else:
        order = torch.randperm(count, generator=torch.Generator().manual_seed(seed)).tolist()
    return set(order[-n_val:])


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


class FolderDataModule(SegmentationDataModule):
    """Images and masks from a folder, matched by file stem.

    Layouts: ``root/images`` + ``root/masks`` (split by ``val_fraction``), or ``root/train`` and
    ``root/val`` each holding ``images/`` and ``masks/``. The test split (``train.py test``) is
    ``root/test/`` with ``images/`` and ``masks/``.

    Samples are read from their files when used (see the module's notes on memory). A multi-page
    TIFF (OME-TIFF too) is a volume: each slice is one sample named ``<volume>#<slice>``, its mask
    the same slice of the mask volume; a grouped split keeps a volume's slices together.

    Args:
        root: The data folder.
        num_classes: Classes of the task; ``None`` (the default): measured from the masks with
            the encoding (:func:`unet_data.survey.survey_masks`: 0/255 masks are binary, grey
            masks class ids, colour masks one class per colour), every mask decoded once.
        mask_encoding: ``auto``, ``index``, ``binary`` (0/255) or ``palette`` (see :func:`read_mask`).
        value_map: Raw mask value → class id (e.g. ``{0: 1, 255: 0}`` to make white class 0).
        ignore_value: Raw mask value whose pixels are ignored (e.g. CamVid's void, 11).
        palette: RGB colour of each class, for colour masks (measured when not given: the
            colours of the masks in colour order).
        in_channels: Image channels; ``None`` (the default): read from the image headers.
        val_fraction: Share of images held out when there is no ``val/`` folder, and the least
            share a ``group`` split holds out when ``val_groups`` is not given.
        split: ``random`` (seeded), ``tail`` (the last images in name order: for slices of one
            volume, where neighbours are correlated) or ``group``: whole sequences or volumes are
            held out (:func:`unet_data.split_by_group`), so validation scores images from a
            drive or volume the model never saw. With ``train/`` and ``val/`` folders, ``group``
            pools both before splitting; the other values keep the folders as given.
        group_pattern: Regular expression whose first group names an image's sequence or volume
            (default: the name up to the first underscore, CamVid's drive).
        val_groups: The groups to hold out (e.g. ``[0006R0]``); default: drawn with ``seed``.
        seed: Seed of the random split.
        cache_bytes: Decoded samples kept in memory, per process (each data-loader worker holds
            its own), as bytes or a size such as ``2GB``; 0 (the default) reads every sample
            from its file each time it is used.
        preload: Decode every sample once in ``setup`` and keep them all (the in-memory path,
            for datasets that fit; ``cache_bytes`` is then ignored).
        scan: ``full`` (decode every sample once in ``setup``, in the data-loader workers, so
            that every bad file is found then; the class counts are saved in a cache file and
            unchanged files are not decoded again) or ``headers`` (check the headers only; a
            truncated file or a bad mask value is then found when the sample is first used, and
            class counts, when needed, are one pass over the masks).
        scan_cache: Folder of the scan's cache file (default: ``scans/`` in the user's cache
            folder, :func:`unet_runtime.cache.cache_dir`; the data folder stays untouched unless
            named here, e.g. ``<root>/.unet-cache``).
        **kwargs: The training recipe (see :class:`SegmentationDataModule`).

    Example:
        ``python train.py fit --config configs/isbi2012.yaml --data.root ../shared/data/isbi2012``
    """

    def __init__(
        self,
        root: str,
        num_classes: int | None = None,
        mask_encoding: MaskEncoding = "auto",
        value_map: dict[int, int] | None = None,
        ignore_value: int | None = None,
        palette: list[list[int]] | None = None,
        val_fraction: float = 0.2,
        split: Literal["random", "tail", "group"] = "random",
        group_pattern: str = GROUP_PATTERN,
        val_groups: list[str] | None = None,
        seed: int = 0,
        cache_bytes: int | str = 0,
        preload: bool = False,
        scan: Literal["full", "headers"] = "full",
        scan_cache: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes=num_classes, **kwargs)
        self.cache_bytes = parse_bytes(cache_bytes, "data.cache_bytes")
        if scan not in ("full", "headers"):
            raise ValueError(f"data.scan must be full or headers. Received: {scan!r}")
        self.preload, self.scan, self.scan_cache = preload, scan, scan_cache
        if val_groups is not None and split != "group":
            raise ValueError(f"data.val_groups needs data.split: group. Received: split={split!r}")
        self.group_pattern, self.val_groups = group_pattern, val_groups
        self.held_out_groups: list[str] = []
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"data.val_fraction must be in (0, 1). Received: {val_fraction}")
        self.root = Path(root)
        self.mask_encoding, self.value_map = mask_encoding, value_map
        self.ignore_value, self.palette = ignore_value, palette
        self.val_fraction, self.split, self.seed = val_fraction, split, seed

    @property
    def mask_options(self) -> dict[str, Any]:
        """:func:`~unet_data.read_mask`'s keyword arguments (the measured encoding included)."""
        if self._num_classes is None or (self.mask_encoding == "palette" and self.palette is None):
            self._measure()
        return mask_options(self.num_classes, self.mask_encoding, self.value_map,
                            self.ignore_value, self.palette)  # fmt: skip

    def _all_pairs(self) -> list[tuple[Path, Path]]:
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: no such data folder (data.root)")
        if (self.root / "train").is_dir():
            val = find_pairs(self.root / "val") if (self.root / "val").is_dir() else []
            return find_pairs(self.root / "train") + val
        if (self.root / "images").is_dir():
            return find_pairs(self.root)
        raise FileNotFoundError(
            f"{self.root}: expected images/ and masks/, or train/ and val/ subfolders (data.root)"
        )

    def _measure(self) -> None:
        """Channels from the image headers, the classes and the mask encoding from the masks."""
        if getattr(self, "_measured", False):
            return
        self._measured = True
        pairs = self._all_pairs()
        if self._in_channels is None:
            expand_pairs(pairs)  # one channel count for every image (else the line names two)
            self._in_channels = image_info(pairs[0][0]).channels
        if self._num_classes is None or (self.mask_encoding == "palette" and self.palette is None):
            found = survey_masks([m for _, m in pairs], self.ignore_value, self.value_map)
            if self.mask_encoding in ("auto", found.encoding):
                self.mask_encoding = found.encoding
                self.palette = self.palette if self.palette is not None else found.palette
            if self._num_classes is None:
                self._num_classes = found.num_classes
            rank_zero_info(
                f"data: {self._in_channels}-channel images, {found.encoding} masks with "
                f"{self._num_classes} classes (measured; set data.num_classes, data.mask_encoding "
                "or data.palette to override)"
            )

    def _read(self, pairs: list[tuple[Path, Path]], in_channels: int) -> Sequence[Sample]:
        refs, sizes = expand_pairs(pairs)
        if pairs and (have := image_info(pairs[0][0]).channels) != in_channels:
            raise ValueError(
                f"{pairs[0][0]}: image has {have} channel(s), the model expects "
                f"in_channels={in_channels}; set data.in_channels: {have} (or leave it unset: it "
                "is read from the images)"
            )
        return self._samples(refs, sizes, in_channels)

    def _samples(self, refs: list[SampleRef], sizes: np.ndarray, in_channels: int) -> FileSamples:
        """Samples of ``refs`` checked by the scan (``data.scan``), read when used."""
        samples = FileSamples(refs, sizes, in_channels, self.mask_options, self.cache_bytes)
        if len(samples) and 0 < self.cache_bytes and not self.preload:
            need = max(sample_bytes(int(h), int(w), in_channels) for h, w in samples.sizes)
            if self.cache_bytes < need:
                raise ValueError(
                    f"data.cache_bytes={self.cache_bytes} is smaller than one sample ({need} "
                    "bytes decoded); set 0 to read every sample from its file, or a larger size"
                )
        if self.preload:
            loaded = [samples.read(i) for i in range(len(samples))]
            samples.counts = np.stack(
                [class_counts(m, self.num_classes) for _, _, m in loaded]
            ).reshape(-1, self.num_classes)
            samples.cache = ByteCache(sum(a.nbytes + m.nbytes for _, a, m in loaded))
            for i, sample in enumerate(loaded):
                samples.cache.put(i, sample, sample[1].nbytes + sample[2].nbytes)
        elif self.scan == "full":
            scan_samples(samples, self._cache_dirs(), self._map_scan)
        return samples

    def _cache_dirs(self) -> list[Path]:
        if self.scan_cache is not None:
            return [Path(self.scan_cache)]
        return [cache_dir() / "scans"]

    def _map_scan(self, samples: FileSamples) -> Any:
        """The scan's decoding spread over ``num_workers`` processes, in order."""
        if self.num_workers == 0:
            return map(samples.scan_one, range(len(samples)))
        return DataLoader(
            _Scan(samples), batch_size=None, num_workers=self.num_workers, collate_fn=_as_is
        )

    def _load(self, spec: UNetSpec) -> tuple[Sequence[Sample], Sequence[Sample]]:
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: no such data folder (data.root)")
        if (self.root / "train").is_dir():
            train_pairs = find_pairs(self.root / "train")
            val_pairs = find_pairs(self.root / "val")
            if self.split == "group":
                train_pairs, val_pairs = self._group_split(train_pairs + val_pairs)
        elif (self.root / "images").is_dir() and self.split == "group":
            train_pairs, val_pairs = self._group_split(find_pairs(self.root))
        elif (self.root / "images").is_dir():
            pairs = find_pairs(self.root)
            val_idx = held_out(len(pairs), self.val_fraction, self.seed, self.split == "tail")
            train_pairs = [p for i, p in enumerate(pairs) if i not in val_idx]
            val_pairs = [p for i, p in enumerate(pairs) if i in val_idx]
        else:
            raise FileNotFoundError(
                f"{self.root}: expected images/ and masks/, or train/ and val/ subfolders"
            )
        return self._read(train_pairs, spec.in_channels), self._read(val_pairs, spec.in_channels)

    def _group_split(self, pairs: list[tuple[Path, Path]]) -> tuple[list, list]:
        # Pairs stay pairs; a volume's slices all follow it, its group being the volume's name.
        def group(pair: tuple[Path, Path]) -> str:
            if is_tiff(pair[0]) and image_info(pair[0]).slices > 1:
                return Path(pair[0]).stem
            return group_of(pair[0], self.group_pattern)

        train, val, self.held_out_groups = split_by_group(
            pairs, self.group_pattern, self.val_groups, self.val_fraction, self.seed, key=group
        )
        return train, val

    def _load_test(self, spec: UNetSpec) -> Sequence[Sample]:
        test = self.root / "test"
        if not (test / "images").is_dir() or not (test / "masks").is_dir():
            raise FileNotFoundError(
                f"{test}: no test split (train.py test reads {test}/images/ and {test}/masks/)"
            )
        return self._read(find_pairs(test), spec.in_channels)


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


__all__ = [
    "FolderDataModule",
    "ImagesOnly",
    "SegmentationDataModule",
    "SyntheticDataModule",
    "held_out",
    "read_images",
]
