"""The ``unet`` command.

Each subcommand lives in its own module with ``HELP``, ``add_arguments(parser)`` and ``run(args)``;
modules import PyTorch or Keras only inside ``run``, so ``unet summary`` stays fast and light.
Errors in the user's input (``ValueError``, ``FileNotFoundError``, ``OSError``) become one line on
stderr and exit code 2; so does a framework that is not installed (the line names the extra:
``pip install 'unet-twins[torch]'``, ``[keras]`` or ``[onnx]``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from unet_runtime import keep_freed_memory
from unet_runtime.quiet import quiet_frameworks

SUBCOMMANDS = {
    "summary": "unet_cli.summary",
    "port": "unet_cli.port",
    "parity": "unet_cli.parity",
    "predict": "unet_cli.predict",
    "export": "unet_cli.export",
    "data": "unet_cli.data",
}

#: The install extra that brings each framework module (the top-level import name).
EXTRAS = {
    "torch": ("PyTorch", "torch"),
    "torchvision": ("PyTorch", "torch"),
    "lightning": ("PyTorch", "torch"),
    "torchmetrics": ("PyTorch", "torch"),
    "tensorflow": ("TensorFlow and Keras", "keras"),
    "keras": ("TensorFlow and Keras", "keras"),
    "h5py": ("TensorFlow and Keras", "keras"),
    "ai_edge_litert": ("TensorFlow and Keras", "keras"),
    "onnx": ("ONNX", "onnx"),
    "onnxruntime": ("onnxruntime", "onnx"),
    "onnxscript": ("ONNX", "onnx"),
    "litdata": ("PyTorch", "torch"),
    "huggingface_hub": ("huggingface_hub", "torch"),
}


def missing_extra(err: ModuleNotFoundError) -> str | None:
    """The one-line message for a missing framework, or ``None`` for any other missing module."""
    top = (err.name or "").split(".")[0]
    if top not in EXTRAS:
        return None
    what, extra = EXTRAS[top]
    return f"this command needs {what} ({top} is not installed): pip install 'unet-twins[{extra}]'"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's usage dump is noise for a one-line error
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="unet", description="U-Net twins in PyTorch and Keras from one spec.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, module_name in SUBCOMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:
                raise
            continue
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # a bad option (one line, code 2) or --help: a code, as below
        return exit_.code if isinstance(exit_.code, int) else 2
    keep_freed_memory()  # the process setting every entry point makes (docs/architecture.md)
    quiet_frameworks()  # the frameworks' start-up noise off (unet_runtime.quiet), warnings kept
    try:
        return int(args._run(args) or 0)
    except ModuleNotFoundError as err:
        message = missing_extra(err)
        if message is None:
            raise
        print(f"unet {args.command}: error: {message}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, OSError, KeyError) as err:
        message = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
        print(f"unet {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"unet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
