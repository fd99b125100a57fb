"""Training crop sizes from the spec's valid sizes and the images: chosen when not given, and every
refusal naming ``data.crop_size`` with sizes that would work.

A training crop is an input size the spec takes (:meth:`unet_spec.Plan.check_size`) whose output,
the loss's target, fits inside every training image (the input may reach past the image: it is
mirror-padded, the paper's overlap-tile strategy). Nothing here computes a shape: the plan does.
"""

from __future__ import annotations

from collections.abc import Sequence

from unet_spec import UNetSpec
from unet_spec.plan import Layout

#: The largest crop chosen when ``data.crop_size`` is not given: big enough for every level of a
#: depth-4 U-Net to see context, small enough for a CPU batch of a few crops.
CROP_LIMIT = 256


def fitting_crops(spec: UNetSpec, max_target: int, limit: int | None = None) -> list[int]:
    """Valid input sizes whose output fits ``max_target`` pixels per side (and, when given, at most
    ``limit``), largest first."""
    plan = spec.plan()
    # An output never exceeds its input, and the halo (input minus output) is the same at every
    # valid size: the largest candidate is the target plus the halo of the smallest valid size.
    smallest = plan.nearest_valid_size(1, direction="up")
    halo = max(plan.layout(smallest).halo)
    hi = max_target + halo if limit is None else min(limit, max_target + halo)
    found = []
    for size in plan.valid_sizes(smallest, hi):
        if max(plan.layout(size).output_size) <= max_target:
            found.append(size)
    return found[::-1]


def _listing(sizes: Sequence[int], count: int = 6) -> str:
    shown = ", ".join(str(s) for s in sizes[:count])
    return shown + (", …" if len(sizes) > count else "")


def check_crop(spec: UNetSpec, crop_size: int, side: int | None = None) -> Layout:
    """The layout of ``crop_size`` when the spec takes it (before any image is read when ``side``
    is ``None``).

    Args:
        spec: The model's spec.
        crop_size: ``data.crop_size``.
        side: The smallest training image's side, when known: the refusal then lists the crop
            sizes whose target fits it.

    Raises:
        ValueError: A size the spec does not take: one line naming ``data.crop_size``, the spec's
            reason and its nearest valid sizes.
    """
    try:
        return spec.plan().check_size(crop_size)
    except ValueError as err:
        fits = (
            f"; valid crop sizes for these images: {_listing(fitting_crops(spec, side))}"
            if side is not None
            else ""
        )
        raise ValueError(
            f"data.crop_size {crop_size} is not a valid input size for this spec ({err}){fits} "
            "(or leave data.crop_size unset)"
        ) from None


def training_layout(
    spec: UNetSpec,
    crop_size: int | None,
    sizes: Sequence[tuple[int, int]],
    names: Sequence[str],
) -> Layout:
    """The layout of the training crop: ``crop_size`` checked, or chosen when ``None`` (the largest
    valid size up to :data:`CROP_LIMIT` whose output fits every image).

    Args:
        spec: The model's spec.
        crop_size: ``data.crop_size``, or ``None``.
        sizes: Height and width of each training image.
        names: The images' names (for the messages).

    Raises:
        ValueError: A crop size the spec does not take, or whose training target is larger than an
            image; images too small for any crop of this spec. Each names ``data.crop_size`` (or
            the spec) and the sizes that would work.
    """
    if not sizes:
        raise ValueError("no training images")
    i = min(range(len(sizes)), key=lambda k: min(sizes[k]))
    small_h, small_w = sizes[i]
    side = min(small_h, small_w)
    what = (
        f"image {names[i]} ({small_h}×{small_w})"
        if len(sizes) > 1
        else f"image {small_h}×{small_w}"
    )
    if crop_size is None:
        fits = fitting_crops(spec, side, CROP_LIMIT) or fitting_crops(spec, side)
        if not fits:
            raise ValueError(
                f"the smallest {what} is too small for this spec: no valid input size has an "
                f"output of at most {side} pixels; train a shallower spec (model.spec.depth) or "
                "one with padding: same"
            )
        return spec.plan().check_size(fits[0])
    layout = check_crop(spec, crop_size, side)
    oh, ow = layout.output_size
    if oh > small_h or ow > small_w:
        fits = fitting_crops(spec, side)
        target = "" if (oh, ow) == layout.input_size else f" (its training target is {oh}×{ow})"
        bound = f"up to {side}" if not target else f"with a target up to {side}"
        listed = (
            f"valid crop sizes for this spec {bound}: {_listing(fits)}"
            if fits
            else (
                "no valid crop size of this spec fits it; train a shallower spec (model.spec.depth)"
            )
        )
        raise ValueError(
            f"data.crop_size {crop_size} > {what}{target}; {listed} (or leave data.crop_size "
            "unset to choose the largest)"
        )
    return layout


__all__ = ["CROP_LIMIT", "check_crop", "fitting_crops", "training_layout"]
