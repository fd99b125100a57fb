"""Reading images as model input: one reader for training data, inference and the CLI.

Pillow reads PNG, JPEG, BMP, GIF and WebP; TIFF goes through ``tifffile`` (8-, 16- and 32-bit,
multi-page, OME-TIFF), with Pillow as the fallback for single-page TIFFs whose compression needs a
codec that ``tifffile`` lacks. A multi-page TIFF is a *volume*: each slice is one sample, named
``<volume>#<slice>`` (:func:`slice_name`), read on its own so a volume never needs to fit in memory.
Pillow and tifffile are imported inside the functions, keeping ``import unet_data`` down to numpy.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

# ITU-R 601 luma, the weights of Pillow's own "L" conversion.
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
#: Files read by ``tifffile`` (compared in lower case).
TIFF_SUFFIXES = (".tif", ".tiff")
#: Pillow modes read as one grey channel (alpha, where a mode has one, is not a channel); every
#: other mode is read as RGB: palette, CMYK, YCbCr, LAB, HSV, RGBX and the modes with alpha.
_GREY_MODES = ("1", "L", "LA", "La", "I", "F")
#: Pillow modes that carry an alpha channel (a palette image may too: its ``transparency``).
_ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")


class ImageInfo(NamedTuple):
    """What a file's header says: size, channels as read (alpha is not one), slices (1 unless a
    multi-page volume), mode, and whether the file holds an alpha channel that reading drops or
    composites (:func:`read_array`)."""

    height: int
    width: int
    channels: int
    slices: int
    mode: str
    alpha: bool = False


def mode_channels(mode: str) -> int:
    """Channels an image of Pillow ``mode`` is read with: 1 for grey modes (16-bit and float
    included), 3 for every other (alpha dropped or composited, palettes and other colour spaces
    converted to RGB)."""
    return 1 if mode in _GREY_MODES or mode.startswith("I;") else 3


def has_alpha(img: Any) -> bool:
    """Whether a Pillow image carries alpha (a palette image through its ``transparency``)."""
    return img.mode in _ALPHA_MODES or (img.mode == "P" and "transparency" in img.info)


def is_tiff(path: str | Path) -> bool:
    return Path(path).suffix.lower() in TIFF_SUFFIXES


def slice_name(path: str | Path, index: int | None) -> str:
    """The sample name of slice ``index`` of a volume (``vol.tif#3``), or the path itself."""
    return str(path) if index is None else f"{path}#{index}"


def open_image(path: str | Path, load: bool = True, data: bytes | None = None) -> Any:
    """Open ``path`` with Pillow and decode it (a truncated file fails here, not later in a worker);
    ``load=False`` reads the header only; ``data`` gives the file's bytes (``path`` then only names it).

    Raises:
        FileNotFoundError: No such file.
        ValueError: Not a readable image.
    """
    from PIL import Image

    path = Path(path)
    if data is None and not path.is_file():
        raise FileNotFoundError(f"{path}: no such image")
    try:
        img = Image.open(path if data is None else io.BytesIO(data))
        if load:
            img.load()
    except Exception as err:  # Pillow raises OSError, SyntaxError, ValueError... for bad files
        raise ValueError(f"{path}: cannot read image ({type(err).__name__}: {err})") from None
    return img


# -- TIFF -----------------------------------------------------------------------------------------
class _TiffLayout(NamedTuple):
    height: int
    width: int
    channels: int
    slices: int
    page_shape: tuple[int, ...]  # the series' axes stored as separate pages
    page_axes: str
    sample_axis: int | None  # axis of the in-page samples (S), or None


def _tiff_layout(tif: Any, path: Path) -> _TiffLayout:
    try:
        return _layout_of(tif, path)
    except ValueError:
        raise
    except Exception as err:  # an odd or damaged file: name it, in one line
        raise ValueError(f"{path}: cannot read image ({type(err).__name__}: {err})") from None


def _layout_of(tif: Any, path: Path) -> _TiffLayout:
    series = tif.series[0]
    key = series.keyframe
    axes, shape = series.axes, tuple(series.shape)
    n_page = len(axes) - len(key.axes)
    page_axes, page_shape = axes[:n_page], shape[:n_page]
    if axes[n_page:] != key.axes or math.prod(page_shape) != len(series.pages):
        raise ValueError(f"{path}: unsupported TIFF layout (axes {axes}, shape {shape})")
    if "Y" not in key.axes or "X" not in key.axes:
        raise ValueError(f"{path}: TIFF pages without Y and X axes ({key.axes})")
    height, width = key.shape[key.axes.index("Y")], key.shape[key.axes.index("X")]
    sample_axis = key.axes.index("S") if "S" in key.axes else None
    in_page = key.shape[sample_axis] if sample_axis is not None else 1
    across = page_shape[page_axes.index("C")] if "C" in page_axes else 1
    if in_page > 1 and across > 1:
        raise ValueError(f"{path}: channels both within and across TIFF pages (axes {axes})")
    slices = math.prod(s for a, s in zip(page_axes, page_shape, strict=True) if a != "C")
    return _TiffLayout(height, width, max(in_page, across), slices, page_shape, page_axes,
                       sample_axis)  # fmt: skip


def _open_tiff(path: Path, data: bytes | None = None) -> Any:
    import tifffile

    if data is None and not path.is_file():
        raise FileNotFoundError(f"{path}: no such image")
    try:
        return tifffile.TiffFile(path if data is None else io.BytesIO(data))
    except Exception as err:
        raise ValueError(f"{path}: cannot read image ({type(err).__name__}: {err})") from None


def tiff_slice(path: Path, index: int | None, data: bytes | None = None) -> np.ndarray | None:
    """Slice ``index`` as ``(H, W)`` or ``(H, W, C)``; ``None`` when a single-page TIFF needs a
    codec tifffile lacks (Pillow reads it then)."""
    with _open_tiff(path, data) as tif:
        layout = _tiff_layout(tif, path)
        k = 0 if index is None else index
        if not 0 <= k < layout.slices:
            raise ValueError(f"{path}: no slice {k} (the volume has {layout.slices})")
        if index is None and layout.slices > 1:
            raise ValueError(f"{path}: a volume of {layout.slices} slices; read it slice by slice")
        # The slice's position among the page axes, then one page per channel (C across pages).
        other = [s for a, s in zip(layout.page_axes, layout.page_shape, strict=True) if a != "C"]
        pos = list(np.unravel_index(k, other)) if other else []
        channels = layout.page_shape[layout.page_axes.index("C")] if "C" in layout.page_axes else 1
        pages = tif.series[0].pages
        planes = []
        for c in range(channels):
            full, it = [], iter(pos)
            for a in layout.page_axes:
                full.append(c if a == "C" else int(next(it)))
            page = int(np.ravel_multi_index(full, layout.page_shape)) if full else 0
            try:
                planes.append(pages[page].asarray())
            except Exception as err:
                if layout.slices == 1 and "imagecodecs" in str(err):
                    return None
                raise ValueError(
                    f"{path}: cannot read image ({type(err).__name__}: {err})"
                ) from None
    arr = planes[0] if channels == 1 else np.stack(planes, axis=-1)
    if layout.sample_axis is not None and layout.sample_axis != arr.ndim - 1:
        arr = np.moveaxis(arr, layout.sample_axis, -1)  # planar (S, Y, X) pages
    return arr


def image_info(path: str | Path) -> ImageInfo:
    """Size, channels and slices from the header, without decoding the pixels.

    Raises:
        FileNotFoundError: No such file.
        ValueError: Not a readable image header.
    """
    path = Path(path)
    if is_tiff(path):
        with _open_tiff(path) as tif:
            layout = _tiff_layout(tif, path)
        return ImageInfo(layout.height, layout.width, layout.channels, layout.slices, "tiff")
    img = open_image(path, load=False)
    return ImageInfo(img.height, img.width, mode_channels(img.mode), 1, img.mode, has_alpha(img))


def read_array(
    path: str | Path,
    index: int | None = None,
    data: bytes | None = None,
    background: Sequence[int] | None = None,
) -> tuple[np.ndarray, str]:
    """The pixels of an image (or of slice ``index`` of a volume): ``(H, W)`` or ``(H, W, C)``,
    and a mode (Pillow's after conversion, or ``"tiff"`` when tifffile read it).

    Every Pillow mode becomes grey (``L``, ``I``, ``I;16``, ``F``) or ``RGB``
    (:func:`mode_channels`): alpha is dropped, or composited on ``background`` (an RGB colour;
    its luma for grey images) when given; palettes, CMYK, YCbCr, LAB and HSV are converted.
    TIFFs are returned as stored.

    Raises:
        ValueError: A mode that cannot be converted (named with the file).
    """
    path = Path(path)
    if is_tiff(path):
        arr = tiff_slice(path, index, data)
        if arr is not None:
            return arr, "tiff"
    elif index is not None:
        raise ValueError(f"{path}: not a volume (only multi-page TIFFs have slices)")
    img = open_image(path, data=data)
    mode = img.mode
    try:
        return _as_grey_or_rgb(img, background)
    except Exception as err:  # Pillow's conversions raise ValueError, OSError, KeyError...
        raise ValueError(
            f"{path}: cannot read an image of mode {mode} as grey or RGB "
            f"({type(err).__name__}: {err})"
        ) from None


def _as_grey_or_rgb(img: Any, background: Sequence[int] | None) -> tuple[np.ndarray, str]:
    grey = mode_channels(img.mode) == 1
    if has_alpha(img):
        # Pillow converts "La" only to "LA", and palettes with transparency only through RGBA.
        img = img.convert("LA" if grey else "RGBA")
        if background is not None:
            arr = np.asarray(img).astype(np.float32)
            colour = np.asarray(background, np.float32).reshape(-1)
            if grey:
                colour = np.array([float(_LUMA @ colour) if colour.size == 3 else colour[0]])
            alpha = arr[..., -1:] / 255.0
            out = arr[..., :-1] * alpha + colour[: arr.shape[-1] - 1] * (1.0 - alpha)
            out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
            return (out[..., 0], "L") if grey else (out, "RGB")
        img = img.convert("L" if grey else "RGB")
    elif img.mode == "1":
        img = img.convert("L")
    elif not grey and img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img), img.mode


def read_image(
    path: str | Path,
    in_channels: int,
    convert: bool = False,
    index: int | None = None,
    data: bytes | None = None,
    background: Sequence[int] | None = None,
) -> np.ndarray:
    """Read ``path`` (or slice ``index`` of a volume) as ``(C, H, W)`` float32 scaled to [0, 1].

    Args:
        path: Image file of any Pillow mode (8-, 16-bit or float grey, RGB, palette, CMYK, ...;
            alpha dropped or composited, see :func:`read_array`); TIFF of any integer or float
            type, multi-page volumes slice by slice.
        in_channels: Channels the model expects.
        convert: Map grey and RGB (and TIFFs with 2 or 4 channels) onto each other when the
            channel count differs (luma for grey, repetition for RGB, a fourth channel dropped);
            otherwise a mismatch is an error.
        index: The slice of a multi-page TIFF volume.
        data: The file's bytes (streamed shards), ``path`` then only names it.
        background: RGB colour that alpha is composited on (default: alpha dropped).

    Integer TIFFs are scaled by their type's maximum (a 16-bit volume by 65535, whatever the
    values of one slice); other 16-bit images by 65535 when they exceed 255.

    Raises:
        FileNotFoundError: No such file.
        ValueError: Unreadable or truncated image, or a channel count other than ``in_channels``.
    """
    arr, mode = read_array(path, index, data, background)
    if mode == "tiff":
        if arr.dtype == np.bool_:
            scale = 1.0
        elif np.issubdtype(arr.dtype, np.integer):
            scale = float(np.iinfo(arr.dtype).max)
        else:
            scale = 1.0
    elif arr.dtype == np.uint8:
        scale = 255.0
    elif arr.dtype in (np.uint16, np.int32) or mode.startswith("I"):
        scale = 65535.0 if arr.max(initial=0) > 255 else 255.0
    else:
        scale = 1.0
    arr = arr.astype(np.float32) / scale
    arr = arr[None] if arr.ndim == 2 else np.moveaxis(arr, -1, 0)
    have = arr.shape[0]
    if have != in_channels:
        if not convert or have not in (1, 2, 3, 4) or in_channels not in (1, 3):
            hint = " (grey/RGB conversion was not asked for: --convert)" if have <= 4 else ""
            raise ValueError(
                f"{slice_name(path, index)}: image has {have} channel(s) ({mode}), the model "
                f"expects in_channels={in_channels}{hint}"
            )
        colour = arr[:3] if have >= 3 else np.repeat(arr[:1], 3, axis=0)
        arr = np.tensordot(_LUMA, colour, axes=1)[None] if in_channels == 1 else colour
    return np.ascontiguousarray(arr, dtype=np.float32)


__all__ = [
    "TIFF_SUFFIXES",
    "ImageInfo",
    "has_alpha",
    "image_info",
    "mode_channels",
    "is_tiff",
    "open_image",
    "read_array",
    "read_image",
    "slice_name",
    "tiff_slice",
]
