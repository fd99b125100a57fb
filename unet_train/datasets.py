"""Datasets of training: random crops of mirror-padded images, and whole images for validation.

A training sample is a crop of the network's input size taken from the mirror-padded image; images
and masks are augmented jointly with torchvision v2 transforms (:class:`Augmentation`); the loss
target is the center crop of the network's output size (for ``same`` padding the two sizes agree).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from unet_data import IGNORE_INDEX, Sample, as_samples
from unet_data.weight_map import border_weights
from unet_infer import mirror_indices
from unet_train.symmetries import trained_mode

Flips = bool | Literal["horizontal", "vertical"]


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


class RandomGamma(v2.Transform):
    """Raise image intensities to a random power (masks untouched).

    torchvision v2 has ``adjust_gamma`` but no random gamma transform. The exponent is drawn
    log-uniformly from ``[1 / (1 + strength), 1 + strength]``, so darkening and brightening the
    mid-tones are equally likely. Images must lie in [0, 1].
    """

    def __init__(self, strength: float) -> None:
        super().__init__()
        self.log_max = float(np.log1p(strength))

    def make_params(self, flat_inputs: list) -> dict:
        u = float(torch.empty(()).uniform_(-self.log_max, self.log_max))
        return {"gamma": float(np.exp(u))}

    def transform(self, inpt, params: dict):
        # v2 hands this method the image (a tv_tensors.Image, or the first plain tensor when
        # there is none) and the masks; masks and weight maps keep their values.
        is_plain = isinstance(inpt, torch.Tensor) and not isinstance(inpt, tv_tensors.TVTensor)
        if isinstance(inpt, tv_tensors.Image) or is_plain:
            return v2.functional.adjust_gamma(inpt, params["gamma"])
        return inpt


class RandomBrightness(v2.Transform):
    """Scale image intensities by a factor drawn from ``[1 - strength, 1 + strength]``, clipped to
    [0, 1] (masks untouched): v2's colour transforms take 1 or 3 channels only, and this is the
    jitter of images with other channel counts (multispectral TIFFs)."""

    def __init__(self, strength: float) -> None:
        super().__init__()
        self.strength = float(strength)

    def make_params(self, flat_inputs: list) -> dict:
        low = max(0.0, 1.0 - self.strength)
        return {"factor": float(torch.empty(()).uniform_(low, 1.0 + self.strength))}

    def transform(self, inpt, params: dict):
        is_plain = isinstance(inpt, torch.Tensor) and not isinstance(inpt, tv_tensors.TVTensor)
        if isinstance(inpt, tv_tensors.Image) or is_plain:
            return (inpt * params["factor"]).clamp(0.0, 1.0)
        return inpt


@dataclass(frozen=True)
class Augmentation:
    """The joint image/mask augmentation of training crops (one place that names its options).

    Args:
        flips: Random flips: ``true`` (horizontal and vertical), ``horizontal`` (scenes with an
            up and a down, such as road scenes), ``vertical`` or ``false``.
        rot90: Random 90° rotations.
        elastic: Probability of an elastic deformation (0 disables it).
        elastic_alpha: Displacement magnitude of the elastic deformation (pixels).
        elastic_sigma: Smoothness of the elastic displacement field (pixels).
        jitter: Brightness/contrast (and, for RGB, saturation) jitter strength.
        scale: Random zoom of the crop about its centre, by a factor drawn from
            ``[1 / (1 + scale), 1 + scale]`` (0 disables it): objects at other distances than the
            training images show them, as in scenes from another camera or drive.
        gamma: Random gamma: intensities raised to a power drawn log-uniformly from
            ``[1 / (1 + gamma), 1 + gamma]`` (0 disables it); another exposure curve, as of
            another camera or microscope.
        blur: Probability of a Gaussian blur (0 disables it), with a standard deviation drawn
            from ``[0.5, blur_sigma]`` pixels (below 0.5 a blur hardly changes a pixel): another
            focus or resolution.
        blur_sigma: Largest standard deviation of the blur (pixels).
        noise: Standard deviation of additive Gaussian noise on every crop, in units of the
            intensity range [0, 1] (0 disables it), clipped back to [0, 1].
    """

    flips: Flips = True
    rot90: bool = True
    elastic: float = 0.0
    elastic_alpha: float = 30.0
    elastic_sigma: float = 6.0
    jitter: float = 0.1
    scale: float = 0.0
    gamma: float = 0.0
    blur: float = 0.0
    blur_sigma: float = 1.0
    noise: float = 0.0

    def __post_init__(self) -> None:
        if self.flips not in (True, False, "horizontal", "vertical"):
            raise ValueError(
                f"data.augment.flips must be true, false, horizontal or vertical. "
                f"Received: {self.flips!r}"
            )
        if not 0.0 <= self.elastic <= 1.0:
            raise ValueError(f"data.augment.elastic must be in [0, 1]. Received: {self.elastic}")
        for name in ("jitter", "scale", "gamma", "noise"):
            if getattr(self, name) < 0:
                raise ValueError(
                    f"data.augment.{name} must be >= 0. Received: {getattr(self, name)}"
                )
        if not 0.0 <= self.blur <= 1.0:
            raise ValueError(f"data.augment.blur must be in [0, 1]. Received: {self.blur}")
        if self.blur_sigma < 0.5:
            raise ValueError(f"data.augment.blur_sigma must be >= 0.5. Received: {self.blur_sigma}")

    def symmetries(self) -> str:
        """The TTA mode of the views these flips and turns draw (``"none"`` without any): what
        the trained model's ``tta: true`` and ``unet predict --tta`` average over by default."""
        return trained_mode(self.flips in (True, "horizontal"), self.flips in (True, "vertical"),
                            self.rot90)  # fmt: skip

    def build(self, in_channels: int) -> v2.Transform:
        """The torchvision v2 transform (colour transforms leave masks alone by design of v2)."""
        steps: list[v2.Transform] = []
        if self.flips in (True, "horizontal"):
            steps.append(v2.RandomHorizontalFlip())
        if self.flips in (True, "vertical"):
            steps.append(v2.RandomVerticalFlip())
        if self.rot90:
            steps.append(RandomRot90())
        # Pixels pulled in from outside the crop get the ignore label: they never teach anything.
        fill = {tv_tensors.Image: 0.0, tv_tensors.Mask: IGNORE_INDEX}
        if self.scale > 0:
            # Masks are resampled nearest-neighbour by v2 whatever the image's interpolation.
            zoom = (1.0 / (1.0 + self.scale), 1.0 + self.scale)
            steps.append(v2.RandomAffine(degrees=0.0, scale=zoom, fill=fill))
        if self.elastic > 0:
            warp = v2.ElasticTransform(self.elastic_alpha, self.elastic_sigma, fill=fill)
            steps.append(v2.RandomApply([warp], p=self.elastic))
        if self.jitter > 0:
            j = self.jitter
            if in_channels in (1, 3):
                colour = {"saturation": j, "hue": min(j / 4, 0.5)} if in_channels == 3 else {}
                steps.append(v2.ColorJitter(brightness=j, contrast=j, **colour))
            else:
                steps.append(RandomBrightness(j))
        # Photometric steps on images only: v2's blur and noise pass masks through unchanged.
        if self.blur > 0:
            # A kernel of ±3 standard deviations of the widest blur.
            kernel = 2 * int(np.ceil(3 * self.blur_sigma)) + 1
            blur = v2.GaussianBlur(kernel, sigma=(0.5, self.blur_sigma))
            steps.append(v2.RandomApply([blur], p=self.blur))
        if self.gamma > 0:
            steps.append(RandomGamma(self.gamma))
        if self.noise > 0:
            steps.append(v2.GaussianNoise(sigma=self.noise, clip=True))
        return v2.Compose(steps) if steps else v2.Identity()


class DataFileError(ValueError):
    """A bad file found while training (in a data-loader worker too): one line that names it.

    PyTorch re-raises a worker's exception in the main process as ``type(err)(message)`` with the
    worker's traceback in ``message``; this class keeps only the original one-line error.
    """

    def __init__(self, message: str) -> None:
        marker = f"{type(self).__name__}: "
        if "Traceback" in message and marker in message:
            message = message.rsplit(marker, 1)[1].strip().splitlines()[0]
        super().__init__(message)


def load(samples: Sequence[Sample], k: int) -> Sample:
    """Sample ``k``, a bad file raised as :class:`DataFileError` (one line naming the file)."""
    try:
        return samples[k]
    except DataFileError:
        raise
    except (ValueError, OSError) as err:
        raise DataFileError(str(err)) from None


class BorderMaps(Sequence[np.ndarray]):
    """The border weight maps (:func:`~unet_data.weight_map.border_weights`) of some samples,
    computed when asked for (from the mask at hand when cropping) and never all held at once:
    in-memory samples keep theirs, file samples keep none."""

    def __init__(self, samples: Sequence[Sample], w0: float, sigma: float) -> None:
        self.samples, self.w0, self.sigma = samples, w0, sigma
        self._kept: dict[int, np.ndarray] | None = {} if isinstance(samples, list) else None

    def __len__(self) -> int:
        return len(self.samples)

    def for_mask(self, mask: np.ndarray, k: int | None = None) -> np.ndarray:
        if self._kept is not None and k is not None and k in self._kept:
            return self._kept[k]
        weights = border_weights(mask, self.w0, self.sigma, ignore_index=IGNORE_INDEX)
        if self._kept is not None and k is not None:
            self._kept[k] = weights
        return weights

    def __getitem__(self, k):  # type: ignore[override]
        if isinstance(k, slice):
            return [self[i] for i in range(len(self))[k]]
        return self.for_mask(load(self.samples, k)[2], k)


class TrainCrops(Dataset):
    """Random training crops: input-size windows of mirror-padded images, output-size targets.

    One epoch draws ``samples_per_epoch`` crops, cycling through the images so each is seen equally.
    With ``balance_classes = p``, a share ``p`` of the crops is instead centred on a pixel of a class
    drawn uniformly from the classes present (in a random image holding it): rare classes such as
    CamVid's poles and signs then appear in the targets far more often than their pixel share.

    ``samples`` may be in memory (a list) or read when used (:class:`~unet_data.FileSamples`:
    only the image being cropped is decoded; which classes each image holds comes from the
    streaming scan, the pixels of a class are found in the image once loaded). The mirror padding
    is never materialised: a crop's rows and columns are reflected indices into the image.

    With ``weights`` (one ``(H, W)`` float map per image, e.g. :func:`border_weights`, or
    :class:`BorderMaps` computed from each loaded mask), each item is
    ``(image, target, pixel_weights)``: the map is padded, cropped and augmented with the mask.
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
        self.samples = as_samples(samples)
        if weights is not None and len(weights) != len(self.samples):
            raise ValueError(f"{len(weights)} weight maps for {len(self.samples)} images")
        self.input_size, self.output_size = input_size, output_size
        self.samples_per_epoch = samples_per_epoch
        self.augment = augment
        self.balance_classes = balance_classes
        self.sizes = self.samples.sizes
        halo = (input_size[0] - output_size[0], input_size[1] - output_size[1])
        # Same split as the plan's center crops: the extra pixel goes to the bottom/right.
        self.pad = ((halo[0] // 2, halo[0] - halo[0] // 2), (halo[1] // 2, halo[1] - halo[1] // 2))
        self._weights = weights
        # Class id -> indices of the images that hold it (for balanced sampling).
        self._holders: dict[int, np.ndarray] = {}
        if balance_classes > 0:
            for c, column in enumerate(self.samples.presence().T):
                if column.any():
                    self._holders[int(c)] = np.flatnonzero(column)

    def __len__(self) -> int:
        return self.samples_per_epoch

    def _pick(self, i: int) -> tuple[int, int | None]:
        """The image of crop ``i``, and the class to centre it on (``None``: anywhere)."""
        k = i % len(self.samples)
        if self._holders and torch.rand(()).item() < self.balance_classes:
            classes = list(self._holders)
            c = classes[int(torch.randint(len(classes), ()).item())]
            holders = self._holders[c]
            return int(holders[int(torch.randint(len(holders), ()).item())]), c
        return k, None

    def _corner(self, mask: np.ndarray, c: int | None) -> tuple[int, int]:
        """Top-left corner of the output window (in the unpadded image)."""
        (oh, ow), (h, w) = self.output_size, mask.shape
        if c is not None:
            hits = np.flatnonzero(mask == c)
            cy, cx = divmod(int(hits[int(torch.randint(len(hits), ()).item())]), w)
            return min(max(cy - oh // 2, 0), h - oh), min(max(cx - ow // 2, 0), w - ow)
        y = int(torch.randint(h - oh + 1, ()).item())
        x = int(torch.randint(w - ow + 1, ()).item())
        return y, x

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        # The output window lies inside the original image; its input window reaches into the padding.
        k, c = self._pick(i)
        _, img, mask = load(self.samples, k)
        weights = None
        if self._weights is not None:
            if isinstance(self._weights, BorderMaps):
                weights = self._weights.for_mask(mask, k)
            else:
                weights = self._weights[k]
        return self.crop(img, mask, weights, c)

    def crop(
        self, img: np.ndarray, mask: np.ndarray, weights: np.ndarray | None, c: int | None = None
    ) -> tuple[torch.Tensor, ...]:
        """One random crop of a decoded sample (centred on a pixel of class ``c`` if given)."""
        y, x = self._corner(mask, c)
        (ih, iw), (oh, ow) = self.input_size, self.output_size
        rows = mirror_indices(y - self.pad[0][0], ih, mask.shape[0])
        cols = mirror_indices(x - self.pad[1][0], iw, mask.shape[1])
        window = np.ix_(rows, cols)
        items = [
            tv_tensors.Image(torch.from_numpy(img[:, rows][:, :, cols])),
            tv_tensors.Mask(torch.from_numpy(mask[window])),
        ]
        if weights is not None:
            # A mask to v2: moved by the same geometry, nearest-neighbour under elastic warps (its
            # fill lands where the target is ignored, so it never counts).
            items.append(tv_tensors.Mask(torch.from_numpy(np.ascontiguousarray(weights[window]))))
        if self.augment is not None:
            items = list(self.augment(*items))
        top, left = self.pad[0][0], self.pad[1][0]
        center = (slice(top, top + oh), slice(left, left + ow))
        out = [items[0].as_subclass(torch.Tensor).contiguous()]
        out.append(items[1][center].as_subclass(torch.Tensor).long().contiguous())
        if weights is not None:
            out.append(items[2][center].as_subclass(torch.Tensor).float().contiguous())
        return tuple(out)


class WholeImages(Dataset):
    """Whole images and masks, for validation through tiled inference (read when used)."""

    def __init__(self, samples: Sequence[Sample]) -> None:
        self.samples = as_samples(samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        _, img, mask = load(self.samples, i)
        return torch.from_numpy(img), torch.from_numpy(mask)


__all__ = [
    "Augmentation",
    "BorderMaps",
    "DataFileError",
    "RandomBrightness",
    "RandomRot90",
    "TrainCrops",
    "WholeImages",
    "load",
]
