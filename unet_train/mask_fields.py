"""How a data module's masks become class ids: its mask fields as one value.

The folder and streaming data modules take them as one group of keys (``data.masks.encoding``,
``data.masks.value_map``, ``data.masks.ignore_value``, ``data.masks.palette``; the flat keys of
older configs are read into it, :mod:`unet_train.settings`) and give :func:`unet_data.read_mask`
its keyword arguments from it, together with the task's classes (given, or measured from the
masks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from unet_data import MaskEncoding


@dataclass(frozen=True)
class MaskFields:
    """How the masks are read (``data.masks``; see :func:`unet_data.read_mask`).

    Args:
        encoding: ``auto`` (measured from the masks), ``index`` (class ids), ``binary`` (0/255;
            JPEG or other noisy masks are thresholded between their two levels) or ``palette``
            (one class per colour).
        value_map: Raw mask value → class id (e.g. ``{0: 1, 255: 0}`` to make white class 0).
        ignore_value: Raw mask value whose pixels are ignored in the loss and the metrics (e.g.
            CamVid's void, 11).
        palette: RGB colour of each class, for colour masks (measured when not given: the
            colours of the masks in colour order).
    """

    encoding: MaskEncoding = "auto"
    value_map: dict[int, int] | None = None
    ignore_value: int | None = None
    palette: list[list[int]] | None = None

    @property
    def needs_palette(self) -> bool:
        """Colour masks whose colours are not given (they are measured from the masks)."""
        return self.encoding == "palette" and self.palette is None

    def read_options(self, num_classes: int, snap: bool = False) -> dict[str, Any]:
        """:func:`~unet_data.read_mask`'s keyword arguments for a task of ``num_classes``;
        ``snap``: lossy masks' values go to the nearest level (measured, not a key: the survey's
        ``snap``)."""
        return {"num_classes": num_classes, "encoding": self.encoding, "value_map": self.value_map,
                "ignore_value": self.ignore_value, "palette": self.palette,
                "snap": snap}  # fmt: skip


__all__ = ["MaskFields"]
