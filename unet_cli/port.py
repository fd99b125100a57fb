"""``unet port SRC DST``: move weights between every format both frameworks use, and prove the move.

Formats come from the extensions: Lightning ``.ckpt``, state-dict ``.pt``, canonical
``.safetensors``, Keras ``.keras`` and ``.weights.h5``; a name without an extension (``my-unet/``)
is a hub folder (``config.json``, ``model.safetensors``, a ``README.md`` card with hub metadata and
the run's figures when the source is a training run's, and ``model.keras`` with ``--with-keras``). A Keras model this project did not build
(auto-named layers) is matched against the plan by order, kind and shape. The spec comes from the
source file, or from ``--preset``/``--spec`` where the source carries none (both must agree when
both exist).

Models from elsewhere (``unet port --sources`` lists them): a state dict written by
milesial/Pytorch-UNet or MONAI's ``BasicUNet`` (``.pth``/``.pt``) is recognised by its key names and
its spec inferred from the tensor shapes, with no flags (``--from NAME`` forces a layout). When the
source can run (MONAI installed, or the class the user names with ``--source-model
pkg.module:factory``), the port is proven against the source itself as well; otherwise the output
says what was not proven. ``--to NAME`` writes the reverse: a file the source's own code loads.

Any other plain U-Net is read from its graph: a state dict (``.pth``, ``.pt``, ``.pkl``, ``.bin``,
or a checkpoint dict wrapping one) with ``--source-model MODULE:CLASS --source-args JSON`` (MODULE
importable, or a file ``path/to/unet.py``), a Keras builder with its ``.weights.h5``, and with no
flags a TorchScript file, a ``torch.export`` ``.pt2`` or an ``.onnx`` model. Each is proven against
the source itself at two sizes where it takes more than one. The reverse of a state dict is
``unet port weights.safetensors back.pth --source-model MODULE:CLASS``: the class's own keys,
loaded strictly by it and run against the twin before the file lands.

The result is written to a temporary file next to DST, reloaded, checked tensor by tensor
(bit-exact) and run against the other framework on random input (or, for a port a torch source
proves into a file that is no Keras file, against the source only); only then is it renamed to
DST. On any failure nothing is left at DST.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from unet_cli.common import add_spec_arguments, non_negative_int, positive_int, spec_from_args

HELP = (
    "port weights between .ckpt, .pt, .safetensors, .keras, .weights.h5 and hub folders (verified)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", type=Path, nargs="?", help="source weights")
    parser.add_argument(
        "dst",
        type=Path,
        nargs="?",
        help="destination; its extension picks the format (none: a hub folder)",
    )
    parser.add_argument(
        "--sources", action="store_true", help="list the layouts from elsewhere and exit"
    )
    parser.add_argument(
        "--from",
        dest="from_source",
        metavar="NAME",
        help="read SRC as this layout (default: recognised from its key names)",
    )
    parser.add_argument(
        "--to", metavar="NAME", help="write DST in this layout, for the source project's own code"
    )
    parser.add_argument(
        "--source-model",
        metavar="MODULE:FACTORY",
        help="the source's own class or builder (pkg.module:Class or path/to/unet.py:Class): any "
        "plain U-Net's state dict (or a Keras builder's .weights.h5) is read through its graph, "
        "and the port proven against it; with SRC this project's weights and DST a state dict "
        "(.pth, .pt, .pkl, .bin), DST gets the class's own keys",
    )
    parser.add_argument(
        "--source-args", metavar="JSON", help="keyword arguments of --source-model, a JSON object"
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
    if args.sources:
        from unet_bridge.sources import listing

        print(listing())
        return 0
    if args.src is None or args.dst is None:
        raise ValueError("SRC and DST are required (or --sources to list the layouts)")
    if args.from_source and args.to:
        raise ValueError("--from reads a layout and --to writes one; give one of them")
    if args.source_args and not args.source_model:
        raise ValueError("--source-args needs --source-model")
    if args.to:
        return _run_to(args)
    if args.source_model and not args.from_source and _back_to_class(args):
        return _run_back(args)
    from unet_bridge import find_metrics, format_of, port
    from unet_bridge.formats import HUB_FOLDER, suffix_of
    from unet_bridge.parity import check_finite
    from unet_bridge.reads import fixed_size
    from unet_bridge.sources import read_any
    from unet_runtime import check_destination
    from unet_spec.sizes import check_size, model_size, preset_name

    src: Path = args.src
    dst: Path = args.dst
    src_suffix, dst_suffix = suffix_of(src), suffix_of(dst)
    if format_of(dst).read is None:
        raise ValueError(
            f"{dst}: a {format_of(dst).description} is a deployment artefact, not a weight "
            f"file; write it with `unet export {src} {dst}`"
        )
    src_folder, dst_folder = format_of(src).folder, format_of(dst).folder
    if not (src.is_dir() if src_folder else src.is_file()):
        raise FileNotFoundError(f"{src}: no such {'folder' if src_folder else 'file'}")
    if dst.exists() and dst.resolve() == src.resolve():
        raise ValueError(f"{dst}: the destination is the source file; choose another path")
    hub = dst_suffix == HUB_FOLDER
    if args.with_keras and not hub:
        raise ValueError(f"--with-keras: {dst} is not a hub folder (give a name with no extension)")
    check_destination(dst, folder_ok=dst_folder)
    source, read = read_any(
        src, spec=spec_from_args(args), from_source=args.from_source,
        source_model=args.source_model, source_args=args.source_args,
    )  # fmt: skip
    weights, spec, reference, note = read
    check_finite(weights, what=str(src))
    size: int | None = args.size
    if size is not None:
        check_size(spec, size)
    if (dst_suffix == ".keras" or args.with_keras) and size is None:
        size = fixed_size(reference and reference.keras_model) or model_size(spec)
    # A hub folder's card carries the run's figures when the source is a training run's weights.
    options = (
        {
            "with_keras": args.with_keras,
            "metrics": find_metrics(src),
            "source": str(src),
            "name": dst.name,
        }  # fmt: skip
        if hub
        else None
    )
    result = port(
        weights, spec, dst, input_size=size, verify=not args.no_verify, seed=args.seed,
        options=options, reference=reference,
    )  # fmt: skip
    if not result.ok:
        print(f"unet port: verification failed, nothing written: {result.summary}")
        return 1
    if source is not None:
        print(f"{src}: {note}")
    name = preset_name(spec)
    what = f"preset {name!r}" if name else "a custom spec"
    kinds = [("hub folder" if s == HUB_FOLDER else s) for s in (src_suffix, dst_suffix)]
    print(f"{src} ({kinds[0]}) -> {dst} ({kinds[1]}): {len(weights)} tensors, {what}")
    print(f"verified: {result.summary}" if not args.no_verify else result.summary)
    if source is not None and reference is None and not args.no_verify:
        print(_not_proven(source, spec))
    return 0


def _not_proven(source, spec) -> str:
    hint = source.runnable_hint(spec) if source.runnable_hint is not None else ""
    return (
        "not proven: that the twins compute what the source's own code computes (only its "
        "weights were given; what was proven is the mapping's reload, bit-exact, and the twins "
        "against each other)" + (f"; to prove it, name the source's class: {hint}" if hint else "")
    )


def _back_to_class(args: argparse.Namespace) -> bool:
    """A state-dict destination, the class named and SRC this project's own weights: the reverse,
    to the class's own keys (a state dict from elsewhere as SRC is the forward port)."""
    from unet_bridge.formats import suffix_of
    from unet_bridge.sources import STATE_SUFFIXES, own_state_dict

    if args.src is None or args.dst is None or suffix_of(args.dst) not in STATE_SUFFIXES:
        return False
    return suffix_of(args.src) not in STATE_SUFFIXES or own_state_dict(args.src)


def _run_back(args: argparse.Namespace) -> int:
    """Weights into a state dict under the named class's own keys, loaded strictly by the class
    and run against the twin before it lands."""
    from unet_bridge import RejectedError
    from unet_bridge.parity import check_finite
    from unet_bridge.port import write_source
    from unet_bridge.sources import module_source, read_any
    from unet_runtime import atomic_path, check_destination

    src: Path = args.src
    dst: Path = args.dst
    if dst.exists() and dst.resolve() == src.resolve():
        raise ValueError(f"{dst}: the destination is the source file; choose another path")
    check_destination(dst)
    weights, spec, _, _ = read_any(src, spec=spec_from_args(args))[1]
    check_finite(weights, what=str(src))
    source = module_source(args.source_model, args.source_args)
    what = f"{src} -> {dst} ({source.description.replace('state dict of ', '')}'s own keys)"
    if args.no_verify:
        source.check_spec(spec)
        with atomic_path(dst) as tmp:
            source.write(weights, spec, tmp)
        print(f"{what}: {len(weights)} tensors, not verified")
        return 0
    try:
        result = write_source(weights, spec, dst, source, seed=args.seed)
    except RejectedError as rejected:
        print(f"unet port: verification failed, nothing written: {rejected.result.summary}")
        return 1
    print(f"{what}: {len(weights)} tensors")
    print(f"verified: {result.summary}")
    return 0


def _run_to(args: argparse.Namespace) -> int:
    """``--to NAME``: canonical weights written in a source project's own layout."""
    from unet_bridge import format_of, sources
    from unet_bridge.parity import check_finite
    from unet_bridge.sources import read_any
    from unet_runtime import check_destination

    src: Path = args.src
    dst: Path = args.dst
    source = sources.get_source(args.to)
    if not sources.matches_suffix(source, dst):
        raise ValueError(f"{dst}: {source.name} files end in {', '.join(source.suffixes)}")
    if not (src.is_dir() if format_of(src).folder else src.is_file()):
        raise FileNotFoundError(f"{src}: no such file")
    if dst.exists() and dst.resolve() == src.resolve():
        raise ValueError(f"{dst}: the destination is the source file; choose another path")
    check_destination(dst)
    weights, spec, _, _ = read_any(src, spec=spec_from_args(args))[1]
    check_finite(weights, what=str(src))
    reference = None
    if args.source_model:
        from unet_bridge.sources._torch import user_module

        if source.reference_from_module is None:
            raise ValueError(f"--source-model: the {source.name} layout cannot run a named module")
        module, call = user_module(args.source_model, args.source_args)

        def reference(file):
            return source.reference_from_module(module, file, call)

    if args.no_verify:
        if source.check_spec is not None:
            source.check_spec(spec)
        from unet_runtime import atomic_path

        with atomic_path(dst) as tmp:
            source.write(weights, spec, tmp)
        print(f"{src} -> {dst} ({source.name} layout): {len(weights)} tensors, not verified")
        return 0
    from unet_bridge import RejectedError
    from unet_bridge.port import write_source

    try:
        result = write_source(weights, spec, dst, source, reference, seed=args.seed)
    except RejectedError as rejected:
        print(f"unet port: verification failed, nothing written: {rejected.result.summary}")
        return 1
    print(f"{src} -> {dst} ({source.name} layout): {len(weights)} tensors")
    print(f"verified: {result.summary}")
    return 0
