"""``unet predict``: segment images of any size with either backend and write masks and overlays.

For every image ``NAME.ext`` the output folder receives ``NAME_mask.png`` (class ids; 0/255 for a
binary task), ``NAME_overlay.png`` (the image with the classes tinted) and, with ``--save-probs``,
``NAME_probs.npy`` (``(K, H, W)`` float32). An image that cannot be read or does not fit the model
is reported by name and skipped; the others are still processed, and the exit code is 2.

Images go through the tiling engine and the label rule of validation (:mod:`unet_spec.tiling`), so
for the same weights and images the masks score what validation reports.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

from unet_cli.common import add_spec_arguments, spec_from_args
from unet_spec import UNetSpec, atomic_write_bytes
from unet_spec.images import read_image
from unet_spec.tiling import TTA_MODES, labels_from_probs

HELP = "segment images of any size (tiled as in validation) and write mask and overlay PNGs"

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp")

# Tints of classes 1, 2, ... in overlays (class 0 is background and stays untinted).
_PALETTE = np.array(
    [
        [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
        [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212],
    ],
    dtype=np.float32,
)  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", type=Path, help="image files or folders of images")
    parser.add_argument("--weights", type=Path, required=True, help=".safetensors, .pt or .ckpt")
    parser.add_argument("--out", type=Path, required=True, help="output folder (created if absent)")
    parser.add_argument("--backend", choices=("torch", "keras"), default="torch")
    parser.add_argument(
        "--device", default="cpu", help="torch backend: cpu or cuda (Keras places ops itself)"
    )
    parser.add_argument(
        "--tile", type=int, help="input tile size (default: a valid size near 572/256)"
    )
    parser.add_argument(
        "--overlap", type=float, default=0.25, help="same padding: share of a tile blended"
    )
    parser.add_argument("--batch-size", type=int, default=1, help="tiles per forward pass")
    parser.add_argument("--tta", action="store_true", help="test-time augmentation (--tta-mode)")
    parser.add_argument(
        "--tta-mode",
        choices=TTA_MODES,
        default="d4",
        help="d4: the 8 flips and quarter turns; flips: the 4 flips; hflip: the image and its "
        "mirror image (scenes with an up and a down)",
    )
    parser.add_argument("--save-probs", action="store_true", help="also write NAME_probs.npy")
    parser.add_argument(
        "--convert",
        action="store_true",
        help="convert grey↔RGB (and drop alpha) when an image's channels differ from the model's",
    )
    add_spec_arguments(parser)


# -- images ----------------------------------------------------------------------------------------
def encode_mask(ids: np.ndarray, num_classes: int) -> np.ndarray:
    """The mask as written: 0/255 for a binary task, class ids otherwise (8 or 16 bit)."""
    if num_classes <= 2:
        return (ids * 255).astype(np.uint8)
    return ids.astype(np.uint8 if num_classes <= 256 else np.uint16)


def decode_mask(mask: np.ndarray, num_classes: int) -> np.ndarray:
    """Class ids ``(H, W)`` int64 from a mask as :func:`encode_mask` writes it.

    Raises:
        ValueError: Values that :func:`encode_mask` never writes for ``num_classes``.
    """
    mask = np.asarray(mask)
    if num_classes <= 2:
        if not np.isin(mask, (0, 255)).all():
            raise ValueError(f"a binary mask holds only 0 and 255. Received: {np.unique(mask)[:8]}")
        return (mask // 255).astype(np.int64)
    if mask.max(initial=0) >= num_classes:
        raise ValueError(
            f"mask values must be class ids below {num_classes}. Received: max={mask.max()}"
        )
    return mask.astype(np.int64)


def overlay(image: np.ndarray, ids: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The image as RGB uint8 with every non-background class tinted."""
    base = image[:3] if image.shape[0] >= 3 else np.repeat(image[:1], 3, axis=0)
    rgb = np.clip(np.moveaxis(base, 0, -1), 0.0, 1.0) * 255.0
    fg = ids > 0
    tint = _PALETTE[(ids[fg] - 1) % len(_PALETTE)]
    rgb[fg] = (1 - alpha) * rgb[fg] + alpha * tint
    return rgb.round().astype(np.uint8)


def _png_bytes(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def expand_images(paths: list[Path]) -> list[Path]:
    """Files as given, folders replaced by their image files (sorted); missing paths kept so they
    are reported by name."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES))
        else:
            out.append(p)
    return out


def _check_output_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(folder / ".unet-write-check", b"")
        (folder / ".unet-write-check").unlink()
    except OSError as err:
        raise OSError(
            f"{folder}: output folder cannot be written ({err.strerror or err})"
        ) from None


# -- backends -------------------------------------------------------------------------------------
def load_backend(args: argparse.Namespace, spec: UNetSpec | None):
    """The predictor for ``--backend``, with weights from ``--weights`` checked against ``spec``."""
    path: Path = args.weights
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weight file")
    if path.suffix == ".safetensors":
        from unet_spec import load_weights

        weights, stored = load_weights(path, spec)
    elif path.suffix in (".pt", ".ckpt"):
        from unet_torch.io import load_any  # torch before Keras: see unet_keras._imports

        weights, stored = load_any(path, spec)
    else:
        raise ValueError(f"{path}: weights must be .safetensors, .pt or .ckpt")
    if args.backend == "torch":
        from unet_torch.predict import TorchPredictor

        return TorchPredictor(stored, weights, args.device)
    if args.device != "cpu":
        print(f"unet predict: note: --device {args.device} is ignored by Keras", file=sys.stderr)
    from unet_keras.predict import KerasPredictor

    return KerasPredictor(stored, weights)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from unet_spec.tiling import check_tile

    spec = spec_from_args(args)
    predictor = load_backend(args, spec)
    spec = predictor.spec
    if args.tile is not None:
        check_tile(spec, args.tile)
    if not 0 <= args.overlap < 1:
        raise ValueError(f"--overlap must be in [0, 1). Received: {args.overlap}")
    _check_output_folder(args.out)
    images = expand_images(args.images)
    if not images:
        raise ValueError("no images found in " + ", ".join(map(str, args.images)))

    failed: list[str] = []
    bar = tqdm(images, desc="predict", unit="img", disable=None, file=sys.stderr)
    for path in bar:
        bar.set_postfix_str(path.name)
        try:
            image = read_image(path, spec.in_channels, args.convert)
            probs = predictor.predict(
                image, args.tile, args.overlap, args.batch_size, tta=args.tta and args.tta_mode
            )
            ids = labels_from_probs(probs, spec.head)
            mask = encode_mask(ids, spec.num_classes)
            atomic_write_bytes(args.out / f"{path.stem}_mask.png", _png_bytes(mask))
            atomic_write_bytes(
                args.out / f"{path.stem}_overlay.png", _png_bytes(overlay(image, ids))
            )
            if args.save_probs:
                atomic_write_bytes(args.out / f"{path.stem}_probs.npy", _npy_bytes(probs))
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
