"""``unet port SRC DST``: move weights between every format both frameworks use, and prove the move.

Formats come from the extensions: Lightning ``.ckpt``, state-dict ``.pt``, canonical
``.safetensors``, Keras ``.keras`` and ``.weights.h5``; a name without an extension (``my-unet/``)
is a hub folder (``config.json``, ``model.safetensors``, a ``README.md`` card with hub metadata and
the run's figures when the source is a training run's, and ``model.keras`` with ``--with-keras``). A Keras model this project did not build
(auto-named layers) is matched against the plan by order, kind and shape. The spec comes from the
source file, or from ``--preset``/``--spec`` where the source carries none (both must agree when
both exist).

The result is written to a temporary file next to DST, reloaded, checked tensor by tensor
(bit-exact) and run against the other framework on random input; only then is it renamed to DST.
On any failure nothing is left at DST.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from unet_cli.common import add_spec_arguments, non_negative_int, positive_int, spec_from_args

HELP = (
    "port weights between .ckpt, .pt, .safetensors, .keras, .weights.h5 and hub folders (verified)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", type=Path, help="source weights")
    parser.add_argument(
        "dst", type=Path, help="destination; its extension picks the format (none: a hub folder)"
    )
    add_spec_arguments(parser)
    parser.add_argument(
        "--size",
        type=positive_int,
        help="input size of a written .keras model (default: the preset's)",
    )
    parser.add_argument(
        "--with-keras",
        action="store_true",
        help="a hub folder destination also gets model.keras (verified with it)",
    )
    parser.add_argument("--no-verify", action="store_true", help="skip the reload and parity check")
    parser.add_argument(
        "--seed", type=non_negative_int, default=0, help="seed of the check's random input"
    )


def run(args: argparse.Namespace) -> int:
    import unet_bridge as cf
    from unet_bridge.formats import HUB_FOLDER
    from unet_runtime import check_destination

    src: Path = args.src
    dst: Path = args.dst
    src_suffix, dst_suffix = cf.suffix_of(src), cf.suffix_of(dst)
    if cf.format_of(dst).read is None:
        raise ValueError(
            f"{dst}: a {cf.format_of(dst).description} is a deployment artefact, not a weight "
            f"file; write it with `unet export {src} {dst}`"
        )
    src_folder, dst_folder = cf.format_of(src).folder, cf.format_of(dst).folder
    if not (src.is_dir() if src_folder else src.is_file()):
        raise FileNotFoundError(f"{src}: no such {'folder' if src_folder else 'file'}")
    if dst.exists() and dst.resolve() == src.resolve():
        raise ValueError(f"{dst}: the destination is the source file; choose another path")
    hub = dst_suffix == HUB_FOLDER
    if args.with_keras and not hub:
        raise ValueError(f"--with-keras: {dst} is not a hub folder (give a name with no extension)")
    check_destination(dst, folder_ok=dst_folder)
    weights, spec, source_model = cf.load_any_weights(src, spec_from_args(args))
    cf.check_finite(weights, what=str(src))
    size: int | None = args.size
    if size is not None:
        cf.check_size(spec, size)
    if (dst_suffix == ".keras" or args.with_keras) and size is None:
        size = cf.fixed_size(source_model) or cf.model_size(spec)
    # A hub folder's card carries the run's figures when the source is a training run's weights.
    options = (
        {"with_keras": args.with_keras, "metrics": cf.find_metrics(src), "source": str(src)}
        if hub
        else None
    )
    result = cf.port(
        weights, spec, dst, input_size=size, source_model=source_model,
        verify=not args.no_verify, seed=args.seed, options=options,
    )  # fmt: skip
    if not result.ok:
        print(f"unet port: verification failed, nothing written: {result.summary}")
        return 1
    name = cf.preset_name(spec)
    what = f"preset {name!r}" if name else "a custom spec"
    kinds = [("hub folder" if s == HUB_FOLDER else s) for s in (src_suffix, dst_suffix)]
    print(f"{src} ({kinds[0]}) -> {dst} ({kinds[1]}): {len(weights)} tensors, {what}")
    print(f"verified: {result.summary}" if not args.no_verify else result.summary)
    return 0
