"""How a data module's masks become class ids: its mask fields as one value.

The config keys stay flat (``data.mask_encoding``, ``data.value_map``, ``data.ignore_value``,
``data.palette``: the user's names); the folder and streaming data modules gather them into one
:class:`MaskFields` and give :func:`unet_data.read_mask` its keyword arguments from it, together
with the task's classes (given, or measured from the masks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from unet_data import MaskEncoding


@dataclass(frozen=True)
class MaskFields:
    """The mask fields of a data module (see :func:`unet_data.read_mask`).

    Attributes:
        encoding: ``data.mask_encoding``: ``auto``, ``index``, ``binary`` (0/255) or ``palette``.
        value_map: ``data.value_map``: raw mask value → class id.
        ignore_value: ``data.ignore_value``: raw mask value whose pixels are ignored.
        palette: ``data.palette``: RGB colour of each class, for colour masks.
    """

    encoding: MaskEncoding = "auto"
    value_map: dict[int, int] | None = None
    ignore_value: int | None = None
    palette: list[list[int]] | None = None
    #: Measured, not a key: lossy masks' values go to the nearest level (the survey's ``snap``).
    snap: bool = False

    @property
    def needs_palette(self) -> bool:
        """Colour masks whose colours are not given (they are measured from the masks)."""
        return self.encoding == "palette" and self.palette is None

    def read_options(self, num_classes: int) -> dict[str, Any]:
        """:func:`~unet_data.read_mask`'s keyword arguments for a task of ``num_classes``."""
        return {"num_classes": num_classes, "encoding": self.encoding, "value_map": self.value_map,
                "ignore_value": self.ignore_value, "palette": self.palette,
                "snap": self.snap}  # fmt: skip


__all__ = ["MaskFields"]
