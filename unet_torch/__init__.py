"""PyTorch side: ``UNet(spec)``, canonical-weight adapters and the reader of torch U-Nets built
elsewhere (``read_torch_graph``; training lives in submodules)."""

from unet_torch._imports import check_import_order

check_import_order()

from unet_torch.adapters import canonical_state, float64_reference, load_canonical  # noqa: E402
from unet_torch.graph import read_torch_graph  # noqa: E402
from unet_torch.model import UNet, probabilities  # noqa: E402

__all__ = [
    "UNet",
    "canonical_state",
    "float64_reference",
    "load_canonical",
    "probabilities",
    "read_torch_graph",
]
