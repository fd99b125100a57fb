"""Labelled samples read from their files when used, the scan that checks them once, class weights.

A :class:`FileSamples` holds only names, sizes and per-image class counts, so a data set never has
to fit in memory; :func:`scan_samples` decodes every sample once (bad files are found before
training starts) and caches the counts next to the data. Pillow is imported inside the functions
(``import unet_data`` loads numpy only).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from unet_data.images import image_info, read_image, slice_name
from unet_data.masks import IGNORE_INDEX, read_mask, read_valid
from unet_runtime.files import atomic_path

#: One labelled image: (name, image ``(C, H, W)`` float32 in [0, 1], mask ``(H, W)`` int64).
Sample = tuple[str, np.ndarray, np.ndarray]


_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}  # fmt: skip


def parse_bytes(value: int | str, field: str) -> int:
    """A size in bytes from ``1000000``, ``"256MB"`` or ``"2GiB"``.

    Raises:
        ValueError: Not a size (the message names ``field``).
    """
    if isinstance(value, int) and not isinstance(value, bool):
        number, unit = value, ""
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(value))
        if match is None or match.group(2).upper() not in _UNITS:
            raise ValueError(f"{field} must be a size such as 512MB or 2GB. Received: {value!r}")
        number, unit = float(match.group(1)), match.group(2).upper()
    if number < 0:
        raise ValueError(f"{field} must be >= 0. Received: {value!r}")
    return int(number * _UNITS[unit])


class SampleRef(NamedTuple):
    """One labelled sample on disk: an image and its mask, or slice ``index`` of a volume, and
    the valid-region mask whose outside is ignored (``None``: every pixel counts)."""

    image: Path
    mask: Path
    index: int | None = None
    valid: Path | None = None

    @property
    def name(self) -> str:
        return slice_name(self.image, self.index)

    @property
    def group(self) -> str | None:
        """The volume a slice belongs to (its file stem), ``None`` for a plain image."""
        return None if self.index is None else Path(self.image).stem


def expand_pairs(
    pairs: Sequence[Sequence[Any]], in_channels: int | None = None
) -> tuple[list[SampleRef], np.ndarray]:
    """Check image/mask pairs from their headers (no pixels decoded) and list their samples.

    A pair is ``(image, mask)`` or a :class:`~unet_data.layouts.Pair` (with its valid-region
    mask). A multi-page TIFF becomes one sample per slice (its mask must be a volume of as many
    slices).

    Returns:
        The samples, and their sizes ``(n, 2)`` (height, width).

    Raises:
        FileNotFoundError: A missing file.
        ValueError: An unreadable header, a mask of another size or slice count, images of
            different channel counts in one dataset, or a channel count other than
            ``in_channels`` (each names the file).
    """
    refs: list[SampleRef] = []
    sizes: list[tuple[int, int]] = []
    first: tuple[Path, int] | None = None
    for pair in pairs:
        image, mask = pair[0], pair[1]
        valid = getattr(pair, "valid", None)
        info, minfo = image_info(image), image_info(mask)
        if first is None:
            first = (image, info.channels)
        elif info.channels != first[1]:
            raise ValueError(
                f"{image}: image has {info.channels} channel(s) but {first[0]} has {first[1]}; "
                "the images of one dataset need one channel count"
            )
        if in_channels is not None and info.channels != in_channels:
            raise ValueError(
                f"{image}: image has {info.channels} channel(s) ({info.mode}), the model expects "
                f"in_channels={in_channels}"
            )
        if (minfo.height, minfo.width) != (info.height, info.width):
            raise ValueError(
                f"{mask}: mask is {minfo.height}x{minfo.width} but image {image} "
                f"is {info.height}x{info.width}"
            )
        if minfo.slices != info.slices:
            raise ValueError(
                f"{mask}: mask has {minfo.slices} slice(s) but image {image} has {info.slices}"
            )
        if valid is not None:
            vinfo = image_info(valid)
            if (vinfo.height, vinfo.width, vinfo.slices) != (info.height, info.width, info.slices):
                raise ValueError(
                    f"{valid}: valid-region mask is {vinfo.height}x{vinfo.width} but image "
                    f"{image} is {info.height}x{info.width}"
                )
            valid = Path(valid)
        if info.slices == 1:
            refs.append(SampleRef(Path(image), Path(mask), None, valid))
        else:
            refs.extend(SampleRef(Path(image), Path(mask), k, valid) for k in range(info.slices))
        sizes.extend([(info.height, info.width)] * info.slices)
    return refs, np.array(sizes, np.int64).reshape(-1, 2)


class ByteCache:
    """A least-recently-used cache bounded in bytes (0 keeps nothing)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0
        self._items: OrderedDict[Any, tuple[Any, int]] = OrderedDict()

    def get(self, key: Any) -> Any | None:
        item = self._items.get(key)
        if item is None:
            return None
        self._items.move_to_end(key)
        return item[0]

    def put(self, key: Any, value: Any, nbytes: int) -> None:
        if nbytes > self.limit or key in self._items:
            return
        while self.used + nbytes > self.limit:
            _, (_, size) = self._items.popitem(last=False)
            self.used -= size
        self._items[key] = (value, nbytes)
        self.used += nbytes

    def __len__(self) -> int:
        return len(self._items)


def sample_bytes(height: int, width: int, channels: int) -> int:
    """Memory of one decoded sample: float32 image and int64 mask."""
    return height * width * (4 * channels + 8)


class FileSamples(Sequence[Sample]):
    """Labelled samples read from their files when used (a ``Sequence`` of :data:`Sample`).

    Only names, sizes and (after :func:`scan_samples` or :meth:`class_counts`) per-image class
    counts are held: a few bytes per sample, so a dataset never has to fit in memory. Decoded
    samples are kept in a :class:`ByteCache` of ``cache_bytes`` (per process: each data-loader
    worker holds its own).

    Args:
        refs: The samples (:func:`expand_pairs`).
        sizes: Their ``(height, width)``, from the headers.
        in_channels: Image channels the model expects.
        mask_options: Keyword arguments of :func:`read_mask` but ``index``.
        cache_bytes: Cache size in bytes.
        background: RGB colour that images with alpha are composited on (default: alpha
            dropped; :func:`~unet_data.images.read_array`).
    """

    def __init__(
        self,
        refs: Sequence[SampleRef],
        sizes: np.ndarray,
        in_channels: int,
        mask_options: dict[str, Any],
        cache_bytes: int = 0,
        background: Sequence[int] | None = None,
    ) -> None:
        self.refs = list(refs)
        self.sizes = np.asarray(sizes, np.int64).reshape(-1, 2)
        if len(self.sizes) != len(self.refs):
            raise ValueError(f"{len(self.sizes)} sizes for {len(self.refs)} samples")
        self.in_channels, self.mask_options = in_channels, dict(mask_options)
        self.background = None if background is None else [int(c) for c in background]
        self.cache = ByteCache(cache_bytes)
        #: Labelled pixels per class and sample ``(n, num_classes)``, once counted.
        self.counts: np.ndarray | None = None

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.refs]

    @property
    def num_classes(self) -> int:
        return int(self.mask_options["num_classes"])

    def __len__(self) -> int:
        return len(self.refs)

    def subset(self, indices: Iterable[int]) -> FileSamples:
        idx = list(indices)
        out = FileSamples([self.refs[i] for i in idx], self.sizes[idx], self.in_channels,
                          self.mask_options, self.cache.limit, self.background)  # fmt: skip
        if self.counts is not None:
            out.counts = self.counts[idx]
        return out

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return self.subset(range(len(self))[i])
        i = range(len(self))[i]  # negative indices, and IndexError past the end
        sample = self.cache.get(i)
        if sample is None:
            sample = self.read(i)
            self.cache.put(i, sample, sample[1].nbytes + sample[2].nbytes)
        return sample

    def read(self, i: int) -> Sample:
        """Decode sample ``i`` (uncached).

        Raises:
            FileNotFoundError, ValueError: A missing, unreadable or inconsistent file (named).
        """
        ref = self.refs[i]
        image = read_image(ref.image, self.in_channels, index=ref.index, background=self.background)
        mask = self.read_mask(i)
        if mask.shape != image.shape[1:]:
            raise ValueError(
                f"{slice_name(ref.mask, ref.index)}: mask is {mask.shape[0]}x{mask.shape[1]} but "
                f"image {ref.name} is {image.shape[1]}x{image.shape[2]}"
            )
        return ref.name, image, mask

    def read_mask(self, i: int) -> np.ndarray:
        """The class ids of sample ``i``; outside its valid region (if any), the ignore label:
        the loss and the metrics skip those pixels as they skip any ignored pixel."""
        ref = self.refs[i]
        mask = read_mask(ref.mask, **self.mask_options, index=ref.index)
        if ref.valid is not None:
            inside = read_valid(ref.valid, ref.index)
            if inside.shape != mask.shape:
                raise ValueError(
                    f"{slice_name(ref.valid, ref.index)}: valid-region mask is "
                    f"{inside.shape[0]}x{inside.shape[1]} but mask {ref.mask} is "
                    f"{mask.shape[0]}x{mask.shape[1]}"
                )
            mask[~inside] = IGNORE_INDEX
        return mask

    def scan_one(self, i: int) -> np.ndarray | str:
        """Decode sample ``i`` and count its classes; a bad file gives its one-line error instead
        (so a worker process can hand it back as a value)."""
        try:
            _, _, mask = self.read(i)
        except (ValueError, OSError) as err:
            return str(err)
        return class_counts(mask, self.num_classes)

    def class_counts(self) -> np.ndarray:
        """Labelled pixels per class and sample ``(n, num_classes)`` int64: one streaming pass
        over the masks, the first time (kept: a few bytes per sample)."""
        if self.counts is None:
            counts = np.zeros((len(self), self.num_classes), np.int64)
            for i in range(len(self.refs)):
                counts[i] = class_counts(self.read_mask(i), self.num_classes)
            self.counts = counts
        return self.counts

    def presence(self) -> np.ndarray:
        """Which classes each sample holds ``(n, num_classes)`` bool."""
        return self.class_counts() > 0

    # -- the scan's cache file ------------------------------------------------------------------
    def fingerprint(self) -> str:
        """A key of the files (paths, sizes, modification times) and of how they are read."""
        h = hashlib.sha256()
        head = {"v": 2, "in_channels": self.in_channels, "mask": self.mask_options}
        h.update(json.dumps(head, sort_keys=True, default=str).encode())
        stats: dict[Path, str] = {}
        for ref in self.refs:
            paths = (ref.image, ref.mask) + ((ref.valid,) if ref.valid is not None else ())
            for path in paths:
                if path not in stats:
                    st = os.stat(path)
                    stats[path] = f"{os.fspath(path)}|{st.st_size}|{st.st_mtime_ns}"
            h.update(("|".join(stats[p] for p in paths) + f"|{ref.index}\n").encode())
        return h.hexdigest()[:24]


class MemorySamples(Sequence[Sample]):
    """Labelled samples held in memory, with what :class:`FileSamples` tells without decoding:
    ``names``, ``sizes``, :meth:`class_counts` and :meth:`presence` (the sample protocol that the
    data modules and training datasets read, whichever kind they hold).

    Args:
        samples: ``(name, image, mask)`` triples.
        num_classes: Classes counted (default: one more than the highest label present).
    """

    def __init__(self, samples: Iterable[Sample], num_classes: int | None = None) -> None:
        self.samples = list(samples)
        self.sizes = np.array([m.shape for _, _, m in self.samples], np.int64).reshape(-1, 2)
        if num_classes is None:
            labels = [int(m[m != IGNORE_INDEX].max(initial=-1)) for _, _, m in self.samples]
            num_classes = max(labels, default=-1) + 1
        self.num_classes = num_classes
        self.counts: np.ndarray | None = None

    @property
    def names(self) -> list[str]:
        return [name for name, _, _ in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return MemorySamples(self.samples[i], self.num_classes)
        return self.samples[i]

    def class_counts(self) -> np.ndarray:
        """Labelled pixels per class and sample ``(n, num_classes)`` int64 (counted once)."""
        if self.counts is None:
            self.counts = np.stack(
                [class_counts(m, self.num_classes) for _, _, m in self.samples]
            ).reshape(-1, self.num_classes)
        return self.counts

    def presence(self) -> np.ndarray:
        """Which classes each sample holds ``(n, num_classes)`` bool."""
        return self.class_counts() > 0


def as_samples(
    samples: Iterable[Sample], num_classes: int | None = None
) -> FileSamples | MemorySamples:
    """The sample protocol over ``samples``: files stay as they are (read when used), anything
    else is held as :class:`MemorySamples` (the one place the two kinds are told apart)."""
    if isinstance(samples, FileSamples | MemorySamples):
        return samples
    return MemorySamples(samples, num_classes)


#: A map over sample indices (e.g. parallel, through data-loader workers) of ``scan_one``.
Mapper = Callable[[FileSamples], Iterable[np.ndarray | str]]


def scan_samples(
    samples: FileSamples, cache_dirs: Sequence[Path] = (), mapper: Mapper | None = None
) -> bool:
    """Decode every sample once, streaming, to find every bad file now and count the classes.

    The counts are saved in the first writable folder of ``cache_dirs`` (``scan-<key>.npz``, keyed
    by :meth:`FileSamples.fingerprint`); a later scan of unchanged files reads them back instead.

    Returns:
        Whether the counts came from a cache file.

    Raises:
        FileNotFoundError, ValueError: The first bad sample (its one-line error names the file).
    """
    if not len(samples):
        samples.counts = np.zeros((0, samples.num_classes), np.int64)
        return False
    key = samples.fingerprint()
    for folder in cache_dirs:
        file = Path(folder) / f"scan-{key}.npz"
        if file.is_file():
            try:
                with np.load(file) as stored:
                    counts = stored["counts"]
            except Exception:  # a damaged cache file is only a cache miss
                continue
            if counts.shape == (len(samples), samples.num_classes):
                samples.counts = counts.astype(np.int64)
                return True
    counts = np.zeros((len(samples), samples.num_classes), np.int64)
    results = mapper(samples) if mapper is not None else map(samples.scan_one, range(len(samples)))
    for i, result in enumerate(results):
        if isinstance(result, str):
            if "no such" in result:
                raise FileNotFoundError(result)
            raise ValueError(result)
        counts[i] = result
    samples.counts = counts
    for folder in cache_dirs:
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
            with atomic_path(Path(folder) / f"scan-{key}.npz") as tmp:
                with open(tmp, "wb") as f:
                    np.savez(f, counts=counts)
            break
        except (OSError, ValueError):  # a read-only data folder: try the next place
            continue
    return False


# -- class statistics ---------------------------------------------------------------------------
def class_counts(mask: np.ndarray, num_classes: int) -> np.ndarray:
    """Labelled pixels per class of one mask (ignored pixels excluded), int64 ``(num_classes,)``."""
    valid = mask[mask != IGNORE_INDEX]
    return np.bincount(valid.ravel(), minlength=num_classes)[:num_classes].astype(np.int64)


def class_frequencies(samples: Sequence[Sample], num_classes: int) -> np.ndarray:
    """Share of labelled pixels per class (ignored pixels excluded).

    The per-image counts of :meth:`FileSamples.class_counts` (one streaming pass over the masks)
    or :meth:`MemorySamples.class_counts`.
    """
    per_image = as_samples(samples, num_classes).class_counts()
    k = min(num_classes, per_image.shape[1])  # samples counted over fewer classes lack the rest
    counts = np.zeros(num_classes, np.float64)
    counts[:k] = per_image[:, :k].sum(axis=0)
    return counts / max(counts.sum(), 1.0)


def median_frequency_weights(
    samples: Sequence[Sample], num_classes: int, power: float = 0.5
) -> list[float]:
    """Median-frequency class weights raised to ``power`` (0.5: the square root, gentler)."""
    freq = class_frequencies(samples, num_classes)
    med = float(np.median(freq[freq > 0])) if (freq > 0).any() else 1.0
    return [float((med / f) ** power) if f > 0 else 0.0 for f in freq]
