"""``unet data pack FOLDER OUT``: write a folder dataset as streaming shards (LitData).

Images and masks stay encoded (the files' own PNG/JPEG/TIFF bytes), so the shards are no larger
than the source; no spec is needed. Train from them with ``unet_train.streaming.StreamingDataModule``
(a local path or an ``s3://`` URL). A folder of ``images/`` and ``masks/`` keeps a validation
share (``--val-fraction``) as ``OUT/val``. Bad input is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from unet_cli.common import byte_size, fraction, non_negative_int, positive_int

HELP = "pack a folder of images and masks into streaming shards (LitData)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, parser_class=type(parser))
    pack = sub.add_parser("pack", help=HELP, description=HELP)
    pack.add_argument("folder", type=Path, help="images/ + masks/, or train/ val/ test/ folders")
    pack.add_argument("out", type=Path, help="new folder for the shards (OUT/train, OUT/val, ...)")
    pack.add_argument(
        "--shard-size", type=byte_size, default="256MB", help="bytes per shard (default: 256MB)"
    )
    pack.add_argument(
        "--workers", type=positive_int, default=1, help="packing processes (default: 1)"
    )
    pack.add_argument(
        "--val-fraction", type=fraction, default=0.2,
        help="share of an images/ + masks/ folder packed as OUT/val, drawn as the folder data "
        "module draws it (default: 0.2; 0: all in OUT/train)",
    )  # fmt: skip
    pack.add_argument(
        "--seed", type=non_negative_int, default=0, help="seed of that draw (default: 0)"
    )


def run(args: argparse.Namespace) -> int:
    from unet_train.streaming import pack

    counts = pack(args.folder, args.out, args.shard_size, args.workers, args.val_fraction,
                  args.seed)  # fmt: skip
    for split, n in counts.items():
        print(f"{args.out / split}: {n} samples")
    return 0
