"""Data modules: a folder of images and masks, and the embedded synthetic dataset.

Both share one training recipe. A training sample is a crop of the network's input size taken from
the mirror-padded image; images and masks are augmented jointly with torchvision v2 transforms
(flips, 90° rotations, elastic deformation, intensity jitter); the loss target is the center crop of
the network's output size (for ``same`` padding the two sizes agree). Sizes come from
``spec.plan().check_size(crop_size)``; nothing here does shape arithmetic of its own.

Validation returns whole images: the system runs them through tiled inference.

Masks become int64 class ids in ``[0, num_classes)``, with :data:`IGNORE_INDEX` where the loss and
the metrics must not look.

Every problem with the files is found in ``setup`` (all files are read up front; the datasets are
small enough to keep in memory) and raised as one ``ValueError``/``FileNotFoundError`` line that
names the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from unet_spec import UNetSpec
from unet_spec.images import open_image, read_image
from unet_torch.synthetic import make_dataset
from unet_torch.weight_map import border_weights

#: Class id of pixels that the loss and the metrics skip.
IGNORE_INDEX = 255
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")

MaskEncoding = Literal["auto", "index", "binary", "palette"]
Flips = bool | Literal["horizontal", "vertical"]
Sample = tuple[str, np.ndarray, np.ndarray]  # (name, image (C,H,W) float32, mask (H,W) int64)


# -- reading files --------------------------------------------------------------------------------
def read_mask(
    path: str | Path,
    num_classes: int,
    encoding: MaskEncoding = "auto",
    value_map: dict[int, int] | None = None,
    ignore_value: int | None = None,
    palette: Sequence[Sequence[int]] | None = None,
) -> np.ndarray:
    """Read a mask as int64 class ids ``(H, W)``, :data:`IGNORE_INDEX` where ignored.

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

    Raises:
        ValueError: Unreadable file, or values that are neither a class nor ``ignore_value``.
    """
    path = Path(path)
    img = open_image(path)
    if encoding == "auto":
        if palette is not None:
            encoding = "palette"
        elif img.mode == "P" or num_classes != 2:
            encoding = "index"
        else:
            values = np.unique(np.asarray(img.convert("L")))
            encoding = "binary" if set(values.tolist()) <= {0, 255} and 255 in values else "index"
    if encoding == "palette":
        if palette is None:
            raise ValueError(f"{path}: mask_encoding='palette' needs data.palette (RGB colours)")
        rgb = np.asarray(img.convert("RGB")).astype(np.int64)
        code = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        raw = np.full(code.shape, -1, np.int64)
        for k, colour in enumerate(palette):
            r, g, b = (int(c) for c in colour)
            raw[code == ((r << 16) | (g << 8) | b)] = k
        if (raw < 0).any():
            bad = np.unique(rgb[raw < 0].reshape(-1, 3), axis=0)[:4].tolist()
            raise ValueError(f"{path}: colours {bad} are not in data.palette")
    else:
        if img.mode not in ("L", "P", "I", "I;16", "1"):
            raise ValueError(
                f"{path}: a {encoding} mask must have one channel, received mode {img.mode} "
                "(use mask_encoding='palette' for colour masks)"
            )
        raw = np.asarray(img).astype(np.int64)
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
            f"{path}: mask values {values} are neither a class id (0..{num_classes - 1}){extra} "
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
            if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."):
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


# -- datasets -------------------------------------------------------------------------------------
class RandomRot90(v2.Transform):
    """Rotate image and mask together by a random multiple of 90° (square crops keep their size)."""

    def make_params(self, flat_inputs: list) -> dict:
        return {"k": int(torch.randint(4, ()).item())}

    def transform(self, inpt, params: dict):
        if params["k"] == 0 or not isinstance(inpt, torch.Tensor):
            return inpt
        rotated = torch.rot90(inpt.as_subclass(torch.Tensor), params["k"], dims=(-2, -1))
        return (
            tv_tensors.wrap(rotated, like=inpt)
            if isinstance(inpt, tv_tensors.TVTensor)
            else rotated
        )


def build_augmentation(
    in_channels: int,
    flips: Flips = True,
    rot90: bool = True,
    elastic: float = 0.0,
    elastic_alpha: float = 30.0,
    elastic_sigma: float = 6.0,
    jitter: float = 0.1,
) -> v2.Transform:
    """The joint image/mask augmentation (colour transforms leave masks alone by design of v2)."""
    steps: list[v2.Transform] = []
    if flips in (True, "horizontal"):
        steps.append(v2.RandomHorizontalFlip())
    if flips in (True, "vertical"):
        steps.append(v2.RandomVerticalFlip())
    if rot90:
        steps.append(RandomRot90())
    if elastic > 0:
        # Pixels pulled in from outside the crop get the ignore label, so they never teach anything.
        fill = {tv_tensors.Image: 0.0, tv_tensors.Mask: IGNORE_INDEX}
        steps.append(
            v2.RandomApply(
                [v2.ElasticTransform(elastic_alpha, elastic_sigma, fill=fill)], p=elastic
            )
        )
    if jitter > 0:
        colour = {"saturation": jitter, "hue": min(jitter / 4, 0.5)} if in_channels == 3 else {}
        steps.append(v2.ColorJitter(brightness=jitter, contrast=jitter, **colour))
    return v2.Compose(steps) if steps else v2.Identity()


class TrainCrops(Dataset):
    """Random training crops: input-size windows of mirror-padded images, output-size targets.

    One epoch draws ``samples_per_epoch`` crops, cycling through the images so each is seen equally.
    With ``balance_classes = p``, a share ``p`` of the crops is instead centred on a pixel of a class
    drawn uniformly from the classes present (in a random image holding it): rare classes such as
    CamVid's poles and signs then appear in the targets far more often than their pixel share.

    With ``weights`` (one ``(H, W)`` float map per image, e.g. :func:`border_weights`), each item
    is ``(image, target, pixel_weights)``: the map is padded, cropped and augmented with the mask.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        input_size: tuple[int, int],
        output_size: tuple[int, int],
        samples_per_epoch: int,
        augment: v2.Transform | None,
        balance_classes: float = 0.0,
        weights: Sequence[np.ndarray] | None = None,
    ) -> None:
        self.samples = list(samples)
        if weights is not None and len(weights) != len(self.samples):
            raise ValueError(f"{len(weights)} weight maps for {len(self.samples)} images")
        self.input_size, self.output_size = input_size, output_size
        self.samples_per_epoch = samples_per_epoch
        self.augment = augment
        self.balance_classes = balance_classes
        halo = (input_size[0] - output_size[0], input_size[1] - output_size[1])
        # Same split as the plan's center crops: the extra pixel goes to the bottom/right.
        self.pad = ((halo[0] // 2, halo[0] - halo[0] // 2), (halo[1] // 2, halo[1] - halo[1] // 2))
        self._padded: list[tuple[np.ndarray, np.ndarray]] = [
            (
                np.pad(img, ((0, 0), *self.pad), mode="reflect") if any(halo) else img,
                np.pad(mask, self.pad, mode="reflect") if any(halo) else mask,
            )
            for _, img, mask in self.samples
        ]
        self._weights = (
            None
            if weights is None
            else [np.pad(w, self.pad, mode="reflect") if any(halo) else w for w in weights]
        )
        # Class id -> indices of the images that hold it (for balanced sampling).
        self._holders: dict[int, np.ndarray] = {}
        if balance_classes > 0:
            present = [set(np.unique(mask).tolist()) - {IGNORE_INDEX} for _, _, mask in samples]
            for c in sorted(set().union(*present)):
                self._holders[c] = np.array([i for i, p in enumerate(present) if c in p])

    def __len__(self) -> int:
        return self.samples_per_epoch

    def _window(self, i: int) -> tuple[int, int, int]:
        """Image index and top-left corner of the output window (in the unpadded image)."""
        (oh, ow), k = self.output_size, i % len(self.samples)
        if self._holders and torch.rand(()).item() < self.balance_classes:
            classes = list(self._holders)
            c = classes[int(torch.randint(len(classes), ()).item())]
            holders = self._holders[c]
            k = int(holders[int(torch.randint(len(holders), ()).item())])
            mask = self.samples[k][2]
            hits = np.flatnonzero(mask == c)
            cy, cx = divmod(int(hits[int(torch.randint(len(hits), ()).item())]), mask.shape[1])
            h, w = mask.shape
            return k, min(max(cy - oh // 2, 0), h - oh), min(max(cx - ow // 2, 0), w - ow)
        h, w = self.samples[k][2].shape
        y = int(torch.randint(h - oh + 1, ()).item())
        x = int(torch.randint(w - ow + 1, ()).item())
        return k, y, x

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        # The output window lies inside the original image; its input window reaches into the padding.
        k, y, x = self._window(i)
        img, mask = self._padded[k]
        (ih, iw), (oh, ow) = self.input_size, self.output_size
        window = (slice(y, y + ih), slice(x, x + iw))
        items = [
            tv_tensors.Image(torch.from_numpy(img[(slice(None), *window)].copy())),
            tv_tensors.Mask(torch.from_numpy(mask[window].copy())),
        ]
        if self._weights is not None:
            # A mask to v2: moved by the same geometry, nearest-neighbour under elastic warps (its
            # fill lands where the target is ignored, so it never counts).
            items.append(tv_tensors.Mask(torch.from_numpy(self._weights[k][window].copy())))
        if self.augment is not None:
            items = list(self.augment(*items))
        top, left = self.pad[0][0], self.pad[1][0]
        center = (slice(top, top + oh), slice(left, left + ow))
        out = [items[0].as_subclass(torch.Tensor).contiguous()]
        out.append(items[1][center].as_subclass(torch.Tensor).long().contiguous())
        if self._weights is not None:
            out.append(items[2][center].as_subclass(torch.Tensor).float().contiguous())
        return tuple(out)


class WholeImages(Dataset):
    """Whole images and masks, for validation through tiled inference."""

    def __init__(self, samples: Sequence[Sample]) -> None:
        self.samples = list(samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        _, img, mask = self.samples[i]
        return torch.from_numpy(img), torch.from_numpy(mask)


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
        flips: Random flips: ``true`` (horizontal and vertical), ``horizontal`` (scenes with an
            up and a down, such as road scenes), ``vertical`` or ``false``.
        rot90: Random 90° rotations.
        elastic: Probability of an elastic deformation (0 disables it).
        elastic_alpha: Displacement magnitude of the elastic deformation (pixels).
        elastic_sigma: Smoothness of the elastic displacement field (pixels).
        jitter: Brightness/contrast (and, for RGB, saturation) jitter strength.
        balance_classes: Share of training crops centred on a pixel of a uniformly drawn class
            (rare-class oversampling; 0 draws every crop uniformly over the image).
        border_weight: ``w0`` of the U-Net paper's weight map (:func:`border_weights`): background
            pixels between two nearby objects weigh up to ``1 + w0`` in the loss (0 disables it).
        border_sigma: Width ``σ`` of that weight map, in pixels.
    """

    def __init__(
        self,
        num_classes: int = 2,
        crop_size: int = 128,
        samples_per_epoch: int | None = None,
        batch_size: int = 8,
        val_batch_size: int = 1,
        num_workers: int = 0,
        flips: Flips = True,
        rot90: bool = True,
        elastic: float = 0.0,
        elastic_alpha: float = 30.0,
        elastic_sigma: float = 6.0,
        jitter: float = 0.1,
        balance_classes: float = 0.0,
        border_weight: float = 0.0,
        border_sigma: float = 5.0,
    ) -> None:
        super().__init__()
        if not 1 <= num_classes < IGNORE_INDEX:
            raise ValueError(
                f"data.num_classes must be in [1, {IGNORE_INDEX - 1}]. Received: {num_classes}"
            )
        if flips not in (True, False, "horizontal", "vertical"):
            raise ValueError(
                f"data.flips must be true, false, horizontal or vertical. Received: {flips!r}"
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
        self.augment_options = {
            "flips": flips, "rot90": rot90, "elastic": elastic, "elastic_alpha": elastic_alpha,
            "elastic_sigma": elastic_sigma, "jitter": jitter,
        }  # fmt: skip
        self._spec: UNetSpec | None = None
        self.train_samples: list[Sample] = []
        self.val_samples: list[Sample] = []
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

    def setup(self, stage: str | None = None) -> None:
        spec = self.spec
        if self._loaded_for != spec:
            self.train_samples, self.val_samples = self._load(spec)
            self._loaded_for = spec
            self._border_maps = None
        self.layout = spec.plan().check_size(self.crop_size)
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
        augment = build_augmentation(self.spec.in_channels, **self.augment_options)
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
        return DataLoader(
            WholeImages(self.val_samples),
            batch_size=self.val_batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )


class FolderDataModule(SegmentationDataModule):
    """Images and masks from a folder, matched by file stem.

    Layouts: ``root/images`` + ``root/masks`` (split by ``val_fraction``), or ``root/train`` and
    ``root/val`` each holding ``images/`` and ``masks/``.

    Args:
        root: The data folder.
        num_classes: Classes of the task.
        mask_encoding: ``auto``, ``index``, ``binary`` (0/255) or ``palette`` (see :func:`read_mask`).
        value_map: Raw mask value → class id (e.g. ``{0: 1, 255: 0}`` to make white class 0).
        ignore_value: Raw mask value whose pixels are ignored (e.g. CamVid's void, 11).
        palette: RGB colour of each class, for colour masks.
        val_fraction: Share of images held out when there is no ``val/`` folder.
        split: ``random`` (seeded) or ``tail`` (the last images in name order: for slices of a
            volume, where neighbours are correlated).
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
        split: Literal["random", "tail"] = "random",
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes=num_classes, **kwargs)
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


class SyntheticDataModule(SegmentationDataModule):
    """The embedded dataset (:mod:`unet_torch.synthetic`): textured shapes, generated, no download.

    Args:
        num_train: Training images.
        num_val: Validation images (generated from indices after the training ones).
        image_size: Side of the square images.
        num_classes: Classes including the background (2 to 5).
        seed: Dataset seed.
        **kwargs: The training recipe (see :class:`SegmentationDataModule`).
    """

    def __init__(
        self,
        num_train: int = 64,
        num_val: int = 16,
        image_size: int = 128,
        num_classes: int = 5,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes=num_classes, **kwargs)
        for name, value in (("num_train", num_train), ("num_val", num_val)):
            if value < 1:
                raise ValueError(f"data.{name} must be at least 1. Received: {value}")
        self.num_train, self.num_val, self.image_size, self.seed = (
            num_train,
            num_val,
            image_size,
            seed,
        )

    def _load(self, spec: UNetSpec) -> tuple[list[Sample], list[Sample]]:
        def samples(count: int, start: int) -> list[Sample]:
            images, masks = make_dataset(
                count, self.image_size, spec.in_channels, self.num_classes, self.seed, start
            )
            return [(f"synthetic#{start + i}", images[i], masks[i]) for i in range(count)]

        return samples(self.num_train, 0), samples(self.num_val, self.num_train)


def class_frequencies(samples: Sequence[Sample], num_classes: int) -> np.ndarray:
    """Share of labelled pixels per class (ignored pixels excluded)."""
    counts = np.zeros(num_classes, np.float64)
    for _, _, mask in samples:
        valid = mask[mask != IGNORE_INDEX]
        counts += np.bincount(valid.ravel(), minlength=num_classes)[:num_classes]
    return counts / max(counts.sum(), 1.0)


def median_frequency_weights(
    samples: Sequence[Sample], num_classes: int, power: float = 0.5
) -> list[float]:
    """Median-frequency class weights raised to ``power`` (0.5: the square root, gentler)."""
    freq = class_frequencies(samples, num_classes)
    med = float(np.median(freq[freq > 0])) if (freq > 0).any() else 1.0
    return [float((med / f) ** power) if f > 0 else 0.0 for f in freq]


__all__ = [
    "IGNORE_INDEX",
    "FolderDataModule",
    "SegmentationDataModule",
    "SyntheticDataModule",
    "TrainCrops",
    "WholeImages",
    "build_augmentation",
    "find_pairs",
    "median_frequency_weights",
    "read_image",
    "read_mask",
]
