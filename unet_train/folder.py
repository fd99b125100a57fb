"""Images and masks from a folder (:class:`FolderDataModule`), read when used.

Memory stays flat whatever the dataset's size (:class:`~unet_data.FileSamples`), with an optional
cache bounded in bytes (``cache_bytes``). Every problem with the files is still found in ``setup``
and raised as one ``ValueError``/``FileNotFoundError`` line that names the file: a header pass
checks sizes, slices and channels without decoding, then one streaming scan decodes each sample
once (in the data-loader workers) to find unreadable files and bad mask values and to count the
classes; its counts are saved in a small cache file, so later runs on unchanged files skip the
decoding. A file that goes bad later fails in the worker that reads it, with the same one line.

What the folder does not say is measured: the channels from the image headers, the classes and the
mask encoding from the masks (:func:`unet_data.survey.survey_masks`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader

from unet_data import (
    GROUP_PATTERN,
    ByteCache,
    FileSamples,
    MaskEncoding,
    Sample,
    SampleRef,
    class_counts,
    expand_pairs,
    find_pairs,
    group_of,
    parse_bytes,
    sample_bytes,
    scan_samples,
    split_by_group,
)
from unet_data.images import image_info, is_tiff
from unet_data.survey import survey_masks
from unet_runtime.cache import cache_dir
from unet_spec import UNetSpec
from unet_train.datamodule import SegmentationDataModule
from unet_train.mask_fields import MaskFields
from unet_train.splits import held_out


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

    __module__ = "unet_train.data"  # the class path configs name (see SegmentationDataModule)

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
        self.masks = MaskFields(mask_encoding, value_map, ignore_value, palette)
        self.val_fraction, self.split, self.seed = val_fraction, split, seed

    @property
    def mask_options(self) -> dict[str, Any]:
        """:func:`~unet_data.read_mask`'s keyword arguments (the measured encoding included)."""
        if self._num_classes is None or self.masks.needs_palette:
            self._measure()
        return self.masks.read_options(self.num_classes)

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
        masks = self.masks
        if self._num_classes is None or masks.needs_palette:
            found = survey_masks([m for _, m in pairs], masks.ignore_value, masks.value_map)
            if masks.encoding in ("auto", found.encoding):
                palette = masks.palette if masks.palette is not None else found.palette
                self.masks = replace(masks, encoding=found.encoding, palette=palette)
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


__all__ = ["FolderDataModule"]
