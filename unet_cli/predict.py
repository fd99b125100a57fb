"""``unet predict``: segment images of any size with either backend and write masks and overlays.

For every image ``NAME.ext`` the output folder receives ``NAME_mask.png`` (class ids; 0/255 for a
binary task), ``NAME_overlay.png`` (the image with the classes tinted) and, with ``--save-probs``,
``NAME_probs.npy`` (``(K, H, W)`` float32). An image that cannot be read or does not fit the model
is reported by name and skipped; the others are still processed, and the exit code is 2. Files
named as the masks of an image beside them (``x_mask.tif`` beside ``x.tif``: the mask name forms of
:data:`unet_data.MASK_FORMS`) are set aside, and said so.

Images go through the tiling engine and the label rule of validation (:mod:`unet_infer.tiling`), so
for the same weights and images the masks score what validation reports.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from unet_cli.common import (
    add_device_argument,
    add_spec_arguments,
    fraction,
    positive_int,
    spec_from_args,
)
from unet_data import image_files, split_masks
from unet_data.images import read_image
from unet_infer import TTA_MODES, labels_from_probs
from unet_infer.masks import encode_mask, npy_bytes, overlay, png_bytes
from unet_runtime import atomic_write_bytes

HELP = "segment images of any size (tiled as in validation) and write mask and overlay PNGs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", type=Path, help="image files or folders of images")
    from unet_bridge import BACKENDS, EXPORTS, weight_suffixes

    parser.add_argument(
        "--weights", type=Path, required=True,
        help=f"weights ({', '.join(weight_suffixes())}) or an exported artefact "
        f"({', '.join(EXPORTS)})",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, required=True, help="output folder (created if absent)")
    parser.add_argument(
        "--backend", choices=BACKENDS,
        help="torch or keras for weights; an exported artefact runs in its own runtime "
        "(default: the artefact's, else torch)",
    )  # fmt: skip
    add_device_argument(parser)
    parser.add_argument(
        "--tile", type=positive_int, help="input tile size (default: a valid size near 572/256)"
    )
    parser.add_argument(
        "--overlap", type=fraction, default=0.25, help="same padding: share of a tile blended"
    )
    parser.add_argument("--batch-size", type=positive_int, default=1, help="tiles per forward pass")
    parser.add_argument("--tta", action="store_true", help="test-time augmentation (--tta-mode)")
    parser.add_argument(
        "--tta-mode",
        choices=TTA_MODES,
        help="d4: the 8 flips and quarter turns; flips: the 4 flips; hflip: the image and its "
        "mirror image (scenes with an up and a down); default: the views the model was trained "
        "with (its training run's metrics.json), else d4",
    )
    parser.add_argument("--save-probs", action="store_true", help="also write NAME_probs.npy")
    parser.add_argument(
        "--convert",
        action="store_true",
        help="convert grey↔RGB (and drop alpha) when an image's channels differ from the model's",
    )
    add_spec_arguments(parser)


def _check_output_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(folder / ".unet-write-check", b"")
        (folder / ".unet-write-check").unlink()
    except OSError as err:
        raise OSError(
            f"{folder}: output folder cannot be written ({err.strerror or err})"
        ) from None


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from unet_bridge import backend_for, load_predictor, trained_views
    from unet_infer import check_tile

    if not args.weights.exists():
        raise FileNotFoundError(f"{args.weights}: no such weight file")
    backend = args.backend or backend_for(args.weights)
    if backend != "torch" and args.device != "cpu":
        print(
            f"unet predict: note: --device {args.device} is ignored by {backend}", file=sys.stderr
        )
    device = args.device if backend == "torch" else "cpu"
    predictor = load_predictor(args.weights, backend, spec_from_args(args), device)
    spec = predictor.spec
    if args.tile is not None:
        check_tile(spec, args.tile)
    if not 0 <= args.overlap < 1:
        raise ValueError(f"--overlap must be in [0, 1). Received: {args.overlap}")
    _check_output_folder(args.out)
    images, masks, forms = split_masks(image_files(args.images))
    if masks:
        # A folder of training data holds masks beside the images (x.tif and x_mask.tif).
        print(f"unet predict: note: skipped {len(masks)} mask file(s) ({', '.join(forms)} "
              "beside their images)", file=sys.stderr)  # fmt: skip
    if not images:
        raise ValueError("no images found in " + ", ".join(map(str, args.images)))

    tta = args.tta and (args.tta_mode or trained_views(args.weights))
    failed: list[str] = []
    bar = tqdm(images, desc="predict", unit="img", disable=None, file=sys.stderr)
    for path in bar:
        bar.set_postfix_str(path.name)
        try:
            image = read_image(path, spec.in_channels, args.convert)
            probs = predictor.predict(image, args.tile, args.overlap, args.batch_size, tta=tta)
            ids = labels_from_probs(probs, spec.head)
            mask = encode_mask(ids, spec.num_classes)
            atomic_write_bytes(args.out / f"{path.stem}_mask.png", png_bytes(mask))
            atomic_write_bytes(
                args.out / f"{path.stem}_overlay.png", png_bytes(overlay(image, ids))
            )
            if args.save_probs:
                atomic_write_bytes(args.out / f"{path.stem}_probs.npy", npy_bytes(probs))
        except (ValueError, OSError) as err:
            message = str(err) if str(path) in str(err) else f"{path}: {err}"
            tqdm.write(f"unet predict: error: {message}", file=sys.stderr)
            failed.append(str(path))
    bar.close()
    done = len(images) - len(failed)
    print(f"{done} of {len(images)} image(s) written to {args.out}", file=sys.stderr)
    if failed:
        print(f"unet predict: {len(failed)} image(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 2
    return 0
