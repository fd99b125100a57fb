"""Images and masks from a folder (:class:`FolderDataModule`), read when used.

The folder is read as it ships (:func:`unet_data.find_dataset`): ``images/`` + ``masks/``,
``X/`` + ``X_masks/``, masks beside their images, per-subject subfolders, mask names formed from
the stem (``_mask``, ``_segmentation``, ...), a pairs CSV, MONAI's Decathlon datalist or nnU-Net's
raw folder; one line says what was paired. What cannot be guessed is a key of ``data.files``
(:class:`unet_data.Layout`), and a refusal names it.

Memory stays flat whatever the dataset's size (:class:`~unet_data.FileSamples`), with an optional
cache bounded in bytes (``cache_bytes``). Every problem with the files is still found in ``setup``
and raised as one ``ValueError``/``FileNotFoundError`` line that names the file: a header pass
checks sizes, slices and channels without decoding, then one streaming scan decodes each sample
once (in the data-loader workers) to find unreadable files and bad mask values and to count the
classes; its counts are saved in a small cache file, so later runs on unchanged files skip the
decoding. A file that goes bad later fails in the worker that reads it, with the same one line.

What the folder does not say is measured: the channels from the image headers (alpha is not a
channel), the classes and the mask encoding from the masks (:func:`unet_data.survey.survey_masks`:
JPEG noise snapped to its levels, ids that do not start at 0 refused with the value map to set).
Pixels outside a valid-region mask (``data.files.valid``) get the ignore label, so the loss and
the metrics skip them as they skip any ignored pixel.
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
    Found,
    Layout,
    Pair,
    Sample,
    SampleRef,
    class_counts,
    expand_pairs,
    find_dataset,
    find_test,
    group_of,
    parse_bytes,
    sample_bytes,
    scan_samples,
    split_by_group,
)
from unet_data.images import image_info, is_tiff
from unet_data.masks import is_lossy
from unet_data.survey import survey_masks
from unet_runtime.cache import cache_dir
from unet_spec import UNetSpec
from unet_train.datamodule import SegmentationDataModule
from unet_train.mask_fields import MaskFields
from unet_train.settings import DATA_MOVES, as_settings, move_kwargs
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
    """Images and masks from a folder as it ships, or from a pairs list.

    Layouts (:func:`unet_data.find_dataset`, no key needed): ``images/`` + ``masks/``, ``X/`` +
    ``X_masks/`` and other mask folders beside the image folder, masks beside their images
    (per-subject subfolders too), masks named by the stem or the stem plus ``_mask``, ``_masks``,
    ``_label``, ``_seg``, ``_segmentation``, ``_gt`` or ``_manual1``; ``root/train`` and
    ``root/val`` each holding one of those; ``data.root`` naming a pairs CSV or a Decathlon
    datalist JSON; nnU-Net's raw folder (``dataset.json``: its labels give the classes). Without
    given splits, ``val_fraction`` of the pairs validate. The test split (``train.py test``) is
    ``root/test/`` in any of these layouts (or a list's test pairs).

    Samples are read from their files when used (see the module's notes on memory). A multi-page
    TIFF (OME-TIFF too) is a volume: each slice is one sample named ``<volume>#<slice>``, its mask
    the same slice of the mask volume; a grouped split keeps a volume's slices together.

    Args:
        root: The data folder, or a pairs list (``.csv``, Decathlon datalist ``.json``).
        files: Where the images and masks are, for what cannot be guessed
            (:class:`unet_data.Layout`; in a config: ``files: {masks: training/1st_manual,
            valid: training/mask}``): ``images``, ``masks`` and ``valid`` (valid-region masks)
            each a folder or a name pattern with ``{stem}``; ``unpaired: skip`` leaves out
            images without a mask (and masks without an image) instead of refusing them.
        num_classes: Classes of the task; ``None`` (the default): measured from the masks with
            the encoding (:func:`unet_data.survey.survey_masks`: 0/255 masks are binary, grey
            masks class ids, colour masks one class per colour, JPEG masks their levels), every
            mask decoded once; an nnU-Net folder's labels give them.
        masks: How the masks are read (:class:`~unet_train.mask_fields.MaskFields`; in a
            config: ``masks: {encoding: index, ignore_value: 11}``): ``encoding`` (``auto``:
            measured), ``value_map``, ``ignore_value`` and ``palette`` (measured for colour
            masks when not given).
        background: RGB colour that images with alpha are composited on (e.g.
            ``[255, 255, 255]``); ``None`` (the default): alpha is dropped, with a note.
        in_channels: Image channels; ``None`` (the default): read from the image headers.
        val_fraction: Share of images held out when there is no ``val/`` folder, and the least
            share a ``group`` split holds out when ``val_groups`` is not given.
        split: ``random`` (seeded), ``tail`` (the last images in name order: for slices of one
            volume, where neighbours are correlated) or ``group``: whole sequences or volumes are
            held out (:func:`unet_data.split_by_group`), so validation scores images from a
            drive or volume the model never saw. With ``train/`` and ``val/`` folders, ``group``
            pools both before splitting; the other values keep the folders as given.
        group_pattern: Regular expression whose first group names an image's sequence or volume;
            ``None`` (the default): the subfolder of per-subject data, else the name up to the
            first underscore (CamVid's drive, :data:`unet_data.GROUP_PATTERN`).
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
        **kwargs: The training recipe (see :class:`SegmentationDataModule`); the flat mask keys
            of older configs (``mask_encoding``, ``value_map``, ``ignore_value``, ``palette``)
            are read into ``masks`` (:mod:`unet_train.settings`).

    Example:
        ``python train.py fit --config configs/isbi2012.yaml --data.root ../shared/data/isbi2012``
    """

    def __init__(
        self,
        root: str,
        files: Layout | None = None,
        num_classes: int | None = None,
        masks: MaskFields = MaskFields(),  # noqa: B008 (frozen: LightningCLI shows its fields)
        background: list[int] | None = None,
        val_fraction: float = 0.2,
        split: Literal["random", "tail", "group"] = "random",
        group_pattern: str | None = None,
        val_groups: list[str] | None = None,
        seed: int = 0,
        cache_bytes: int | str = 0,
        preload: bool = False,
        scan: Literal["full", "headers"] = "full",
        scan_cache: str | None = None,
        **kwargs: Any,
    ) -> None:
        moved = {k: kwargs.pop(k) for k in DATA_MOVES if k in kwargs}
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
        self.files = files if files is not None else Layout()
        self._found: Found | None = None
        groups = move_kwargs(moved, DATA_MOVES, "data", type(self).__name__)
        self.masks = as_settings(MaskFields, masks, groups.get("masks"))
        #: Measured, not a key: lossy masks' values go to the nearest level.
        self.snap = False
        if background is not None and (
            len(background) not in (1, 3) or not all(0 <= int(c) <= 255 for c in background)
        ):
            raise ValueError(
                f"data.background must be an RGB colour such as [255, 255, 255]. "
                f"Received: {background!r}"
            )
        self.background = background
        self.val_fraction, self.split, self.seed = val_fraction, split, seed

    @property
    def mask_options(self) -> dict[str, Any]:
        """:func:`~unet_data.read_mask`'s keyword arguments (the measured encoding included)."""
        if self._num_classes is None or self.masks.needs_palette:
            self._measure()
        return self.masks.read_options(self.num_classes, self.snap)

    @property
    def found(self) -> Found:
        """The folder's pairs (:func:`unet_data.find_dataset`), found once; the line saying what
        was paired (and what was skipped) is printed then."""
        if self._found is None:
            self._found = find_dataset(self.root, self.files)
            for line in [self._found.line, *self._found.notes]:
                rank_zero_info(line)
        return self._found

    def _all_pairs(self) -> list[Pair]:
        return self.found.pairs

    def _measure(self) -> None:
        """Channels from the image headers, the classes and the mask encoding from the masks."""
        if getattr(self, "_measured", False):
            return
        self._measured = True
        found = self.found
        pairs = found.pairs
        if self._in_channels is None:
            self._in_channels = self._channels(pairs)
        masks = self.masks
        if found.num_classes is not None:  # declared by the dataset (nnU-Net's labels)
            if masks.ignore_value is None and found.ignore_value is not None:
                masks = replace(masks, ignore_value=found.ignore_value)
            if masks.encoding == "auto":
                masks = replace(masks, encoding="index")
            if self._num_classes is None:
                self._num_classes = max(found.num_classes, 2)
            self.masks = masks
        lossy = any(is_lossy(p.mask) for p in pairs)
        if self._num_classes is None or masks.needs_palette or lossy or masks.encoding == "binary":
            given = self._num_classes
            measured = survey_masks([p.mask for p in pairs], masks.ignore_value, masks.value_map,
                                    masks.encoding, masks.palette, given)  # fmt: skip
            if masks.encoding in ("auto", measured.encoding) or measured.snap:
                self.masks = replace(
                    masks,
                    encoding=measured.encoding,
                    palette=masks.palette if masks.palette is not None else measured.palette,
                    value_map=masks.value_map or measured.value_map,
                )
                self.snap = measured.snap
            if measured.note:
                rank_zero_info(measured.note)
            if self._num_classes is None:
                self._num_classes = measured.num_classes
            if given is None:
                rank_zero_info(
                    f"data: {self._in_channels}-channel images, {self.masks.encoding} masks with "
                    f"{self._num_classes} classes (measured; set data.num_classes, "
                    "data.masks.encoding or data.masks.palette to override)"
                )

    def _channels(self, pairs: list[Pair]) -> int:
        """The images' one channel count, from their headers; says how alpha is read."""
        first, alpha = None, 0
        for pair in pairs:
            info = image_info(pair.image)
            alpha += info.alpha
            if first is None:
                first = (pair.image, info.channels)
            elif info.channels != first[1]:
                raise ValueError(
                    f"{pair.image}: image has {info.channels} channel(s) but {first[0]} has "
                    f"{first[1]}; the images of one dataset need one channel count"
                )
        if alpha:
            how = (f"composited on {list(self.background)} (data.background)"
                   if self.background is not None else
                   "dropped (data.background: [r, g, b] composites them on a colour)")  # fmt: skip
            rank_zero_info(f"data: {alpha} of {len(pairs)} images have an alpha channel: {how}")
        return first[1] if first is not None else 3

    def _read(self, pairs: Sequence[Pair], in_channels: int) -> Sequence[Sample]:
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
        samples = FileSamples(refs, sizes, in_channels, self.mask_options, self.cache_bytes,
                              self.background)  # fmt: skip
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
        splits = self.found.splits
        if "train" in splits:  # splits the data gives: folders, a datalist, a CSV's split
            train_pairs, val_pairs = splits["train"], splits.get("val", [])
            if self.split == "group":
                train_pairs, val_pairs = self._group_split(train_pairs + val_pairs)
        elif self.split == "group":
            train_pairs, val_pairs = self._group_split(splits["all"])
        else:
            pairs = splits["all"]
            val_idx = held_out(len(pairs), self.val_fraction, self.seed, self.split == "tail")
            train_pairs = [p for i, p in enumerate(pairs) if i not in val_idx]
            val_pairs = [p for i, p in enumerate(pairs) if i in val_idx]
        return self._read(train_pairs, spec.in_channels), self._read(val_pairs, spec.in_channels)

    def _group_split(self, pairs: list[Pair]) -> tuple[list[Pair], list[Pair]]:
        # Pairs stay pairs; a volume's slices all follow it, its group being the volume's name;
        # per-subject subfolders are the groups unless data.group_pattern says otherwise.
        pattern = self.group_pattern or GROUP_PATTERN

        def group(pair: Pair) -> str:
            if is_tiff(pair.image) and image_info(pair.image).slices > 1:
                return Path(pair.image).stem
            if self.group_pattern is None and pair.group is not None:
                return pair.group
            return group_of(pair.image, pattern)

        train, val, self.held_out_groups = split_by_group(
            pairs, pattern, self.val_groups, self.val_fraction, self.seed, key=group
        )
        return train, val

    def _load_test(self, spec: UNetSpec) -> Sequence[Sample]:
        return self._read(find_test(self.root, self.files), spec.in_channels)

    def _mask_forms(self) -> tuple[str, ...]:
        """The masks' name forms, found or given, that prediction sets aside."""
        forms = self._found.mask_forms if self._found is not None else ()
        pattern = self.files.masks or ""
        name = pattern.rpartition("/")[2]
        if name.startswith("{stem}") and "*" not in name:  # e.g. {stem}_manual1.gif
            forms += (Path(name.removeprefix("{stem}")).stem.lower(),)
        return forms


__all__ = ["FolderDataModule"]
