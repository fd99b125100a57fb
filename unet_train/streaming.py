"""Streaming shards with LitData: datasets larger than a disk, on a local path or object storage.

:func:`pack` writes a folder dataset as LitData chunks (``unet data pack FOLDER OUT``). Images and
masks stay encoded (the PNG/JPEG/TIFF bytes of the files; a slice of a volume as a one-page TIFF),
so the shards are no larger than the source, and packing needs no spec. ``FOLDER/train``,
``FOLDER/val`` and ``FOLDER/test`` become ``OUT/train``, ``OUT/val`` and ``OUT/test``; a folder with
``images/`` and ``masks/`` becomes ``OUT/train``.

:class:`StreamingDataModule` trains from ``OUT`` (a local path or an ``s3://``, ``gs://``, ... URL
that LitData reads): each rank and each data-loader worker streams its own part of the chunks, and
the training loader is LitData's :class:`~litdata.StreamingDataLoader`, whose ``state_dict`` Lightning
checkpoints, so resuming mid-epoch neither repeats nor skips samples.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from litdata import StreamingDataLoader, StreamingDataset, optimize
from litdata.streaming.writer import BinaryWriter

from unet_data import find_pairs, parse_bytes, read_mask
from unet_data.images import image_info, read_array, read_image, slice_name, tiff_slice
from unet_runtime import atomic_path
from unet_train.datamodule import SegmentationDataModule
from unet_train.datasets import BorderMaps, DataFileError, TrainCrops
from unet_train.mask_fields import MaskFields
from unet_train.settings import DATA_MOVES, as_settings, move_kwargs
from unet_train.splits import held_out

SPLITS = ("train", "val", "test")


# -- packing --------------------------------------------------------------------------------------
def _encoded(path: Path, index: int | None) -> bytes:
    """The bytes of a file, or of one slice of a volume as a one-page TIFF."""
    if index is None:
        return path.read_bytes()
    import io

    import tifffile

    buffer = io.BytesIO()
    tifffile.imwrite(buffer, tiff_slice(path, index), photometric=None)
    return buffer.getvalue()


def _record(item: tuple[str, str, int, str]) -> dict[str, Any]:
    image, mask, index, base = Path(item[0]), Path(item[1]), item[2], item[3]
    k = None if index < 0 else index
    suffix = ".tif" if k is not None else image.suffix.lower()
    mask_suffix = ".tif" if k is not None else mask.suffix.lower()
    return {"name": slice_name(image.relative_to(base), k), "image": _encoded(image, k), "image_suffix": suffix,
            "mask": _encoded(mask, k), "mask_suffix": mask_suffix}  # fmt: skip


def pack(
    folder: str | Path,
    out: str | Path,
    shard_size: int | str = "256MB",
    workers: int = 1,
    val_fraction: float = 0.2,
    seed: int = 0,
):
    """Write ``folder``'s image/mask pairs as LitData shards under ``out/<split>``.

    A folder of ``images/`` and ``masks/`` holds out ``val_fraction`` of its images as ``out/val``
    (the images :class:`~unet_train.folder.FolderDataModule` validates on with the same fraction and
    seed; 0 packs them all as ``out/train``).

    Returns:
        ``{split: number of samples}``.

    Raises:
        FileNotFoundError, ValueError: A missing folder, a bad layout, an unreadable header or an
            output folder that exists already (each one line, naming it).
    """
    folder, out = Path(folder), Path(out)
    chunk_bytes = parse_bytes(shard_size, "--shard-size")
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such data folder")
    if out.exists():
        raise ValueError(f"{out}: exists; pack into a new folder")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"--val-fraction must be in [0, 1). Received: {val_fraction}")
    if (folder / "images").is_dir():
        pairs = find_pairs(folder)
        val = held_out(len(pairs), val_fraction, seed) if val_fraction > 0 else set()
        split_pairs = {"train": [p for i, p in enumerate(pairs) if i not in val]}
        if val:
            split_pairs["val"] = [p for i, p in enumerate(pairs) if i in val]
    else:
        split_pairs = {s: find_pairs(folder / s) for s in SPLITS if (folder / s).is_dir()}
    if not split_pairs:
        raise FileNotFoundError(f"{folder}: expected images/ and masks/, or train/ and val/")
    items_of: dict[str, list[tuple[str, str, int, str]]] = {}
    for split, pairs in split_pairs.items():  # every header first: bad input fails before writing
        items = []
        for image, mask in pairs:
            info, minfo = image_info(image), image_info(mask)
            if (info.height, info.width, info.slices) != (minfo.height, minfo.width, minfo.slices):
                raise ValueError(f"{mask}: mask does not match image {image} in size or slices")
            slices = [-1] if info.slices == 1 else list(range(info.slices))
            items.extend((str(image), str(mask), k, str(folder)) for k in slices)
        items_of[split] = items
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, folder=True) as tmp:
        for split, items in items_of.items():
            if workers > 1:
                optimize(fn=_record, inputs=items, output_dir=str(tmp / split),
                         chunk_bytes=chunk_bytes, num_workers=workers, verbose=False)  # fmt: skip
                continue
            writer = BinaryWriter(str(tmp / split), chunk_bytes=chunk_bytes)
            for i, item in enumerate(items):
                writer[i] = _record(item)
            writer.done()
            writer.merge()
    counts = {split: len(items) for split, items in items_of.items()}
    return counts


# -- checking -------------------------------------------------------------------------------------
def _is_url(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def check_shards(path: str) -> None:
    """A local shard folder must hold its ``index.json`` and every chunk it lists, whole.

    Raises:
        FileNotFoundError: No such folder, no ``index.json``, or a missing chunk (named).
        ValueError: An unreadable ``index.json`` or a chunk of the wrong size (named).
    """
    folder = Path(path.removeprefix("file://"))
    index = folder / "index.json"
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such shard folder (write it with unet data pack)")
    if not index.is_file():
        raise FileNotFoundError(f"{index}: no such file; {folder} is not a packed dataset")
    try:
        chunks = json.loads(index.read_text())["chunks"]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{index}: not a LitData index ({type(err).__name__}: {err})") from None
    for chunk in chunks:
        file = folder / chunk["filename"]
        if not file.is_file():
            raise FileNotFoundError(f"{file}: missing shard (listed in {index})")
        size = chunk.get("chunk_bytes")
        if size is not None and file.stat().st_size < int(size):
            raise ValueError(f"{file}: shard is {file.stat().st_size} bytes, {index} says {size}")


def check_url(url: str, timeout: float = 10.0) -> None:
    """An ``s3://`` dataset must answer for its ``index.json`` within ``timeout`` seconds (one
    attempt: LitData's own client retries for minutes before giving up).

    Raises:
        ValueError: Unreachable storage, no such bucket or key, or no credentials (one line).
    """
    if not url.startswith("s3://"):
        return
    import boto3
    from botocore.config import Config

    bucket, _, key = url.removeprefix("s3://").partition("/")
    config = Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 1})
    try:
        boto3.client("s3", config=config).head_object(Bucket=bucket, Key=f"{key}/index.json")
    except Exception as err:
        message = " ".join(str(err).split())[:300]
        raise ValueError(f"{url}: cannot be reached ({type(err).__name__}: {message})") from None


def open_shards(path: str, cls: type[StreamingDataset] | None = None, **kwargs: Any):
    """A :class:`ShardSamples` (or ``cls``) over ``path``, with bad input as one line."""
    if not _is_url(path):
        check_shards(path)
    else:
        check_url(path)
    try:
        return (cls or ShardSamples)(path, **kwargs)
    except (FileNotFoundError, ValueError) as err:
        raise type(err)(f"{path}: {' '.join(str(err).split())}") from None
    except Exception as err:  # unreachable storage: botocore, obstore, fsspec errors
        message = " ".join(str(err).split())[:300]
        raise ValueError(f"{path}: cannot be reached ({type(err).__name__}: {message})") from None


# -- datasets -------------------------------------------------------------------------------------
class ShardSamples(StreamingDataset):
    """Labelled samples streamed from shards: ``(name, image (C, H, W), mask (H, W))``.

    Args:
        input_dir: Shard folder or URL.
        in_channels: Image channels the model expects.
        mask_options: Keyword arguments of :func:`read_mask`.
        **kwargs: :class:`litdata.StreamingDataset` options (``shuffle``, ``seed``, ...).
    """

    def __init__(
        self, input_dir: str, in_channels: int = 3, mask_options: dict | None = None, **kwargs: Any
    ) -> None:
        super().__init__(input_dir, **kwargs)
        self.in_channels = in_channels
        self.mask_options = mask_options or {"num_classes": 2}

    def decode(self, record: dict[str, Any]) -> tuple[str, np.ndarray, np.ndarray]:
        name = record["name"]
        try:
            image = read_image(Path(name).with_suffix(record["image_suffix"]), self.in_channels,
                               data=record["image"])  # fmt: skip
            mask = read_mask(Path(f"{name} (mask)").with_suffix(record["mask_suffix"]),
                             **self.mask_options, data=record["mask"])  # fmt: skip
        except (ValueError, OSError) as err:
            raise DataFileError(f"{name}: {err}") from None
        if mask.shape != image.shape[1:]:
            raise DataFileError(f"{name}: mask is {mask.shape} but image {image.shape[1:]}")
        return name, image, mask

    def __getitem__(self, index: Any) -> Any:
        return self.decode(super().__getitem__(index))


class StreamingCrops(ShardSamples):
    """Training crops (:class:`~unet_train.datasets.TrainCrops`) of streamed samples: one crop per
    sample; with ``balance_classes``, that share is centred on a class drawn from those present in
    the sample."""

    def __init__(self, input_dir: str, crops: TrainCrops, border: BorderMaps | None = None,
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(input_dir, **kwargs)
        self.crops, self.border = crops, border

    def __getitem__(self, index: Any) -> tuple[torch.Tensor, ...]:
        _, image, mask = super().__getitem__(index)
        c = None
        if self.crops.balance_classes > 0 and torch.rand(()).item() < self.crops.balance_classes:
            present = [v for v in np.unique(mask).tolist() if v < self.mask_options["num_classes"]]
            c = present[int(torch.randint(len(present), ()).item())] if present else None
        weights = self.border.for_mask(mask) if self.border is not None else None
        return self.crops.crop(image, mask, weights, c)


class StreamingDataModule(SegmentationDataModule):
    """Train from packed shards (``unet data pack``) on a local path or a URL.

    Args:
        root: The packed folder (``root/train``, optional ``root/val`` and ``root/test``): a path
            or a URL LitData reads (``s3://bucket/data``).
        num_classes, masks: As for :class:`~unet_train.folder.FolderDataModule`, except that
            the classes are not measured (give ``num_classes`` for more than two).
        shuffle: Shuffle the training chunks and samples each epoch (seeded by ``seed``).
        seed: The shuffle's seed (the same on every rank).
        cache_dir: Where chunks of a URL are downloaded (default: LitData's).
        max_cache_size: Disk those chunks may take (e.g. ``50GB``).
        validation: Validate on ``root/val`` (``unet data pack`` writes one; a local root without
            it trains without validation, and says so: no best checkpoint by a validation figure,
            no Keras export or overlays, which are checked and drawn on validation images).
        **kwargs: The training recipe (:class:`~unet_train.datamodule.SegmentationDataModule`);
            ``samples_per_epoch`` does not apply (an epoch is one pass over the shards).
            ``in_channels`` is read from the first training sample when not given, and
            ``crop_size`` chosen from its size (or, when given, checked against it).
    """

    def __init__(
        self,
        root: str,
        num_classes: int | None = None,
        masks: MaskFields = MaskFields(),  # noqa: B008 (frozen: LightningCLI shows its fields)
        shuffle: bool = True,
        seed: int = 0,
        cache_dir: str | None = None,
        max_cache_size: str = "50GB",
        validation: bool = True,
        **kwargs: Any,
    ) -> None:
        moved = {k: kwargs.pop(k) for k in DATA_MOVES if k in kwargs}
        super().__init__(num_classes=num_classes if num_classes is not None else 2, **kwargs)
        self.root = root.rstrip("/")
        groups = move_kwargs(moved, DATA_MOVES, "data", type(self).__name__)
        self.masks = as_settings(MaskFields, masks, groups.get("masks"))
        self._first_size: tuple[int, int] | None = None
        self.shuffle, self.seed, self.validation = shuffle, seed, validation
        self.stream_options: dict[str, Any] = {"max_cache_size": max_cache_size}
        if cache_dir is not None:
            self.stream_options["cache_dir"] = cache_dir
        self._datasets: dict[str, StreamingDataset | None] = {}

    def _split(self, split: str) -> str:
        return f"{self.root}/{split}"

    def _exists(self, split: str) -> bool:
        """A local split exists when its folder does; a URL's ``val`` is read when
        ``data.validation`` is on (it must then be there)."""
        if _is_url(self.root):
            return self.validation
        return self.validation and Path(self._split(split).removeprefix("file://")).is_dir()

    def _measure(self) -> None:
        """The channels and size of the first training sample (its header's worth of decoding)."""
        if self._first_size is not None:
            return
        record = open_shards(self._split("train"), StreamingDataset, **self.stream_options)[0]
        suffix = record["image_suffix"]
        arr, _ = read_array(Path(record["name"]).with_suffix(suffix), data=record["image"])
        self._first_size = (int(arr.shape[0]), int(arr.shape[1]))
        if self._in_channels is None:
            self._in_channels = 1 if arr.ndim == 2 else int(arr.shape[-1])

    def setup(self, stage: str | None = None) -> None:
        spec = self.spec
        # The base recipe's crop checks: data.crop_size against the spec before any shard is
        # read, then against (or chosen from) the first training sample's size.
        self._check_crop(spec, stage)
        if stage not in ("test", "predict"):
            self._measure()
            self._choose_crop(spec, [self._first_size], ["the first sample"],
                              fits="the first training sample")  # fmt: skip
        options = {"in_channels": spec.in_channels,
                   "mask_options": self.masks.read_options(self.num_classes)}  # fmt: skip
        if stage in (None, "fit"):
            crops = TrainCrops([], self.layout.input_size, self.layout.output_size, 0,
                               self.augment.build(spec.in_channels), self.balance_classes)  # fmt: skip
            border = (BorderMaps([], self.border_weight, self.border_sigma)
                      if self.border_weight > 0 else None)  # fmt: skip
            self._datasets["train"] = open_shards(
                self._split("train"), StreamingCrops, crops=crops, border=border, shuffle=self.shuffle,
                seed=self.seed, drop_last=True, **options, **self.stream_options,
            )  # fmt: skip
        splits = {"fit": ("val",), None: ("val",), "validate": ("val",), "test": ("test",)}
        for split in splits.get(stage, ()):
            if split == "test" or self._exists(split):
                self._datasets[split] = open_shards(
                    self._split(split), ShardSamples, **options, **self.stream_options
                )
        if "val" in splits.get(stage, ()):
            val = self._datasets.get("val")
            # Indexed when used: the run's artefacts read the few they draw or check.
            self.val_samples = _Indexed(val) if val is not None else []
            if val is None and stage in (None, "fit"):
                reason = ("data.validation is false" if not self.validation
                          else f"{self._split('val')} does not exist")  # fmt: skip
                rank_zero_warn(
                    f"training without validation ({reason}; unet data pack writes one): no "
                    "best.ckpt by a validation figure, no model.keras and no overlays.png"
                )

    def train_dataloader(self) -> StreamingDataLoader:
        return StreamingDataLoader(self._datasets["train"], batch_size=self.batch_size,
                                   num_workers=self.num_workers, drop_last=True)  # fmt: skip

    def _whole_stream(self, split: str) -> Any:
        dataset = self._datasets.get(split)
        if dataset is None:
            return []  # no validation shards: validation is skipped
        return StreamingDataLoader(dataset, batch_size=self.val_batch_size,
                                   num_workers=self.num_workers, collate_fn=_whole_batch)  # fmt: skip

    def val_dataloader(self) -> Any:
        return self._whole_stream("val")

    def test_dataloader(self) -> Any:
        return self._whole_stream("test")


class _Indexed(Sequence):
    """Samples of a streamed split by index (slices too), decoded when used."""

    def __init__(self, dataset: StreamingDataset, indices: range | None = None) -> None:
        self.dataset = dataset
        self.indices = indices if indices is not None else range(len(dataset))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return _Indexed(self.dataset, self.indices[i])
        return self.dataset[self.indices[i]]


def _whole_batch(items: list[tuple[str, np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, ...]:
    images = torch.stack([torch.from_numpy(image) for _, image, _ in items])
    masks = torch.stack([torch.from_numpy(mask) for _, _, mask in items])
    return images, masks


__all__ = [
    "ShardSamples",
    "StreamingCrops",
    "StreamingDataModule",
    "check_shards",
    "open_shards",
    "pack",
]
