"""Framework-free data helpers: the ignore label, masks, image/mask pairs, grouped splits, class weights.

Training, evaluation and ``unet predict`` read their files through this module and
:mod:`unet_data.images`, so every reader agrees on the suffixes, the mask encodings and the label that
the loss and the metrics skip. Pillow is imported inside the functions (``import unet_data`` loads
numpy only).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np

from unet_data.images import image_info, is_tiff, open_image, read_image, slice_name, tiff_slice
from unet_runtime.files import atomic_path

#: Class id of pixels that the loss and the metrics skip.
IGNORE_INDEX = 255
#: Image files every reader accepts (compared in lower case).
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")

MaskEncoding = Literal["auto", "index", "binary", "palette"]
#: One labelled image: (name, image ``(C, H, W)`` float32 in [0, 1], mask ``(H, W)`` int64).
Sample = tuple[str, np.ndarray, np.ndarray]


def is_image_file(path: Path) -> bool:
    """An image by its suffix, not a hidden file."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def image_files(paths: Sequence[Path]) -> list[Path]:
    """Files as given, folders replaced by their image files (sorted); missing paths are kept so
    that the reader reports them by name."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(f for f in p.iterdir() if is_image_file(f)))
        else:
            out.append(p)
    return out


# -- reading --------------------------------------------------------------------------------------
def read_mask(
    path: str | Path,
    num_classes: int,
    encoding: MaskEncoding = "auto",
    value_map: dict[int, int] | None = None,
    ignore_value: int | None = None,
    palette: Sequence[Sequence[int]] | None = None,
    index: int | None = None,
    data: bytes | None = None,
) -> np.ndarray:
    """Read a mask (or slice ``index`` of a multi-page TIFF volume of masks) as int64 class ids ``(H, W)``, :data:`IGNORE_INDEX` where ignored.

    Args:
        path: Mask file.
        num_classes: Valid class ids are ``0 .. num_classes - 1``.
        encoding: ``"index"`` (pixel values are class ids; a palette PNG gives its indices),
            ``"binary"`` (0 → class 0, 255 → class 1), ``"palette"`` (RGB colours listed in
            ``palette``, class = position in the list) or ``"auto"`` (palette when ``palette`` is
            given, binary for 0/255 masks of a 2-class task, index otherwise).
        value_map: Raw value → class id, applied before the check (``"index"``/``"binary"``).
        ignore_value: Raw value (palette position for ``"palette"``) to ignore.
        palette: RGB colours of the classes for ``"palette"``.
        index: The slice of a volume.
        data: The file's bytes (streamed shards), ``path`` then only names it.

    Raises:
        ValueError: Unreadable file, or values that are neither a class nor ``ignore_value``.
    """
    path = Path(path)
    arr = tiff_slice(path, index, data) if is_tiff(path) else None
    if index is not None and not is_tiff(path):
        raise ValueError(f"{path}: not a volume (only multi-page TIFFs have slices)")
    name = slice_name(path, index)
    img = open_image(path, data=data) if arr is None else None
    mode = img.mode if img is not None else ("tiff" if arr.ndim == 2 else "tiff-rgb")
    if encoding == "auto":
        if palette is not None:
            encoding = "palette"
        elif mode == "P" or num_classes != 2:
            encoding = "index"
        else:
            grey = np.asarray(img.convert("L")) if img is not None else arr
            values = np.unique(grey)
            encoding = "binary" if set(values.tolist()) <= {0, 255} and 255 in values else "index"
    if encoding == "palette":
        if palette is None:
            raise ValueError(f"{name}: mask_encoding='palette' needs data.palette (RGB colours)")
        if img is not None:
            rgb = np.asarray(img.convert("RGB")).astype(np.int64)
        elif arr.ndim == 3 and arr.shape[-1] >= 3:
            rgb = arr[..., :3].astype(np.int64)
        else:
            raise ValueError(f"{name}: mask_encoding='palette' needs an RGB mask")
        code = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        raw = np.full(code.shape, -1, np.int64)
        for k, colour in enumerate(palette):
            r, g, b = (int(c) for c in colour)
            raw[code == ((r << 16) | (g << 8) | b)] = k
        if (raw < 0).any():
            bad = np.unique(rgb[raw < 0].reshape(-1, 3), axis=0)[:4].tolist()
            raise ValueError(f"{name}: colours {bad} are not in data.palette")
    else:
        if mode not in ("L", "P", "I", "I;16", "1", "tiff"):
            raise ValueError(
                f"{name}: a {encoding} mask must have one channel, received mode {mode} "
                "(use mask_encoding='palette' for colour masks)"
            )
        raw = (np.asarray(img) if img is not None else arr).astype(np.int64)
        if encoding == "binary":
            if value_map is None:
                value_map = {0: 0, 255: 1}
    mask = raw.copy()
    ignored = raw == ignore_value if ignore_value is not None else np.zeros(raw.shape, bool)
    if value_map:
        for src, dst in value_map.items():
            mask[raw == int(src)] = int(dst)
    mask[ignored] = IGNORE_INDEX
    bad = ~ignored & ((mask < 0) | (mask >= num_classes))
    if bad.any():
        values = np.unique(raw[bad])[:8].tolist()
        extra = f" nor the ignore value {ignore_value}" if ignore_value is not None else ""
        raise ValueError(
            f"{name}: mask values {values} are neither a class id (0..{num_classes - 1}){extra} "
            f"(encoding={encoding!r}; set data.value_map or data.ignore_value)"
        )
    return mask


def find_pairs(folder: str | Path) -> list[tuple[Path, Path]]:
    """Image/mask pairs of ``folder/images`` and ``folder/masks``, matched by file stem.

    Raises:
        FileNotFoundError: A missing folder.
        ValueError: No images, or an image without a mask (or the reverse).
    """
    folder = Path(folder)
    images_dir, masks_dir = folder / "images", folder / "masks"
    for d in (images_dir, masks_dir):
        if not d.is_dir():
            raise FileNotFoundError(f"{d}: no such folder (expected images/ and masks/)")

    def listing(d: Path) -> dict[str, Path]:
        found: dict[str, Path] = {}
        for p in sorted(d.iterdir()):
            if is_image_file(p):
                if p.stem in found:
                    raise ValueError(f"{p}: two files with the stem {p.stem!r} in {d}")
                found[p.stem] = p
        return found

    images, masks = listing(images_dir), listing(masks_dir)
    if not images:
        raise ValueError(f"{images_dir}: no images ({', '.join(IMAGE_SUFFIXES)})")
    for stem, p in images.items():
        if stem not in masks:
            raise ValueError(f"{p}: no mask with the stem {stem!r} in {masks_dir}")
    for stem, p in masks.items():
        if stem not in images:
            raise ValueError(f"{p}: no image with the stem {stem!r} in {images_dir}")
    return [(images[s], masks[s]) for s in images]


# -- splits ---------------------------------------------------------------------------------------
#: The default group of a file: its name up to the first underscore (CamVid's drive, ``0016E5`` in
#: ``0016E5_07959.png``; a volume's name in ``volA_slice_012.png``).
GROUP_PATTERN = r"^([^_]+)_"


def group_of(path: Path, pattern: str = GROUP_PATTERN) -> str:
    """The group (sequence, drive, volume) of an image file: the first capture group of
    ``pattern`` matched against the file name.

    Raises:
        ValueError: A name that does not match.
    """
    match = re.search(pattern, Path(path).name)
    if match is None or not match.groups():
        raise ValueError(
            f"{path}: the name does not match data.group_pattern {pattern!r} (its first group "
            "names the sequence or volume)"
        )
    return match.group(1)


def split_by_group(
    items: Sequence[Any],
    pattern: str = GROUP_PATTERN,
    val_groups: Sequence[str] | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    key: Callable[[Any], str] | None = None,
) -> tuple[list[Any], list[Any], list[str]]:
    """Split image/mask pairs so that no group has images on both sides.

    Frames of one video or slices of one volume are near-duplicates of their neighbours; a split
    that scatters them over training and validation measures memory, not generalization. Here
    whole groups are held out: ``val_groups`` when given, else groups drawn in a seeded order until
    at least ``val_fraction`` of the images are held out (at least one group stays for training).

    ``items`` are image/mask pairs (grouped by :func:`group_of` their image) or anything ``key``
    names the group of (:class:`SampleRef`: a volume's slices form the volume's group).

    Returns:
        ``(train, val, held_out_groups)``.

    Raises:
        ValueError: Fewer than two groups, an unknown group in ``val_groups``, or no group left for
            training.
    """
    groups: dict[str, list[tuple[Path, Path]]] = {}
    for pair in items:
        name = key(pair) if key is not None else group_of(pair[0], pattern)
        groups.setdefault(name, []).append(pair)
    names = sorted(groups)
    if len(names) < 2:
        only = f" {names[0]!r}" if names else ""
        raise ValueError(
            f"{len(items)} images form one group{only} under data.group_pattern {pattern!r}; a "
            "grouped split needs at least two (use split: tail for slices of one volume)"
        )
    if val_groups is not None:
        unknown = sorted(set(val_groups) - set(names))
        if unknown:
            raise ValueError(
                f"data.val_groups {unknown} are not among the groups found: {', '.join(names)}"
            )
        held = sorted(set(val_groups))
    else:
        order = np.random.default_rng(seed).permutation(len(names))
        held, count = [], 0
        for k in order:
            if count >= val_fraction * len(items):
                break
            held.append(names[k])
            count += len(groups[names[k]])
        held.sort()
    if len(held) == len(names):
        raise ValueError(f"data.val_groups {held} hold out every group; none is left to train on")
    train = [p for name in names if name not in held for p in groups[name]]
    val = [p for name in held for p in groups[name]]
    return train, val, held


# -- samples read from files when used ----------------------------------------------------------
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
    """One labelled sample on disk: an image and its mask, or slice ``index`` of a volume."""

    image: Path
    mask: Path
    index: int | None = None

    @property
    def name(self) -> str:
        return slice_name(self.image, self.index)

    @property
    def group(self) -> str | None:
        """The volume a slice belongs to (its file stem), ``None`` for a plain image."""
        return None if self.index is None else Path(self.image).stem


def expand_pairs(
    pairs: Sequence[tuple[Path, Path]], in_channels: int | None = None
) -> tuple[list[SampleRef], np.ndarray]:
    """Check image/mask pairs from their headers (no pixels decoded) and list their samples.

    A multi-page TIFF becomes one sample per slice (its mask must be a volume of as many slices).

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
    for image, mask in pairs:
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
        if info.slices == 1:
            refs.append(SampleRef(Path(image), Path(mask)))
        else:
            refs.extend(SampleRef(Path(image), Path(mask), k) for k in range(info.slices))
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
    """

    def __init__(
        self,
        refs: Sequence[SampleRef],
        sizes: np.ndarray,
        in_channels: int,
        mask_options: dict[str, Any],
        cache_bytes: int = 0,
    ) -> None:
        self.refs = list(refs)
        self.sizes = np.asarray(sizes, np.int64).reshape(-1, 2)
        if len(self.sizes) != len(self.refs):
            raise ValueError(f"{len(self.sizes)} sizes for {len(self.refs)} samples")
        self.in_channels, self.mask_options = in_channels, dict(mask_options)
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
                          self.mask_options, self.cache.limit)  # fmt: skip
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
        image = read_image(ref.image, self.in_channels, index=ref.index)
        mask = read_mask(ref.mask, **self.mask_options, index=ref.index)
        if mask.shape != image.shape[1:]:
            raise ValueError(
                f"{slice_name(ref.mask, ref.index)}: mask is {mask.shape[0]}x{mask.shape[1]} but "
                f"image {ref.name} is {image.shape[1]}x{image.shape[2]}"
            )
        return ref.name, image, mask

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
            for i, ref in enumerate(self.refs):
                counts[i] = class_counts(read_mask(ref.mask, **self.mask_options, index=ref.index),
                                         self.num_classes)  # fmt: skip
            self.counts = counts
        return self.counts

    def presence(self) -> np.ndarray:
        """Which classes each sample holds ``(n, num_classes)`` bool."""
        return self.class_counts() > 0

    # -- the scan's cache file ------------------------------------------------------------------
    def fingerprint(self) -> str:
        """A key of the files (paths, sizes, modification times) and of how they are read."""
        h = hashlib.sha256()
        head = {"v": 1, "in_channels": self.in_channels, "mask": self.mask_options}
        h.update(json.dumps(head, sort_keys=True, default=str).encode())
        stats: dict[Path, str] = {}
        for ref in self.refs:
            for path in (ref.image, ref.mask):
                if path not in stats:
                    st = os.stat(path)
                    stats[path] = f"{os.fspath(path)}|{st.st_size}|{st.st_mtime_ns}"
            h.update(f"{stats[ref.image]}|{stats[ref.mask]}|{ref.index}\n".encode())
        return h.hexdigest()[:24]


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

    Files (:class:`FileSamples`) give their per-image counts from one streaming pass over the
    masks (:meth:`FileSamples.class_counts`); in-memory samples are counted here.
    """
    if isinstance(samples, FileSamples):
        counts = samples.class_counts()[:, :num_classes].sum(axis=0).astype(np.float64)
    else:
        counts = np.zeros(num_classes, np.float64)
        for _, _, mask in samples:
            counts += class_counts(mask, num_classes)
    return counts / max(counts.sum(), 1.0)


def median_frequency_weights(
    samples: Sequence[Sample], num_classes: int, power: float = 0.5
) -> list[float]:
    """Median-frequency class weights raised to ``power`` (0.5: the square root, gentler)."""
    freq = class_frequencies(samples, num_classes)
    med = float(np.median(freq[freq > 0])) if (freq > 0).any() else 1.0
    return [float((med / f) ** power) if f > 0 else 0.0 for f in freq]


__all__ = [
    "GROUP_PATTERN",
    "IGNORE_INDEX",
    "IMAGE_SUFFIXES",
    "ByteCache",
    "FileSamples",
    "MaskEncoding",
    "Sample",
    "SampleRef",
    "class_counts",
    "class_frequencies",
    "expand_pairs",
    "find_pairs",
    "group_of",
    "image_files",
    "is_image_file",
    "median_frequency_weights",
    "parse_bytes",
    "read_mask",
    "sample_bytes",
    "scan_samples",
    "split_by_group",
]
