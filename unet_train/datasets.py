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

from unet_spec.data import IGNORE_INDEX, Sample

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
    """

    flips: Flips = True
    rot90: bool = True
    elastic: float = 0.0
    elastic_alpha: float = 30.0
    elastic_sigma: float = 6.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.flips not in (True, False, "horizontal", "vertical"):
            raise ValueError(
                f"data.augment.flips must be true, false, horizontal or vertical. "
                f"Received: {self.flips!r}"
            )
        if not 0.0 <= self.elastic <= 1.0:
            raise ValueError(f"data.augment.elastic must be in [0, 1]. Received: {self.elastic}")
        if self.jitter < 0:
            raise ValueError(f"data.augment.jitter must be >= 0. Received: {self.jitter}")

    def build(self, in_channels: int) -> v2.Transform:
        """The torchvision v2 transform (colour transforms leave masks alone by design of v2)."""
        steps: list[v2.Transform] = []
        if self.flips in (True, "horizontal"):
            steps.append(v2.RandomHorizontalFlip())
        if self.flips in (True, "vertical"):
            steps.append(v2.RandomVerticalFlip())
        if self.rot90:
            steps.append(RandomRot90())
        if self.elastic > 0:
            # Pixels pulled in from outside the crop get the ignore label: they never teach anything.
            fill = {tv_tensors.Image: 0.0, tv_tensors.Mask: IGNORE_INDEX}
            warp = v2.ElasticTransform(self.elastic_alpha, self.elastic_sigma, fill=fill)
            steps.append(v2.RandomApply([warp], p=self.elastic))
        if self.jitter > 0:
            j = self.jitter
            colour = {"saturation": j, "hue": min(j / 4, 0.5)} if in_channels == 3 else {}
            steps.append(v2.ColorJitter(brightness=j, contrast=j, **colour))
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


__all__ = ["Augmentation", "RandomRot90", "TrainCrops", "WholeImages"]
