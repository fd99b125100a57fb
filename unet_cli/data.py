"""``unet data``: what a data folder holds, and packing it as streaming shards (LitData).

``unet data pairs ROOT`` says which images and masks a training run would pair, and how (the line
``train.py fit`` prints), without training: the layouts of :func:`unet_data.find_dataset`, with the
keys of ``data.files`` as options (``--images``, ``--masks``, ``--valid``, ``--unpaired``).

``unet data pack FOLDER OUT`` writes a folder dataset as streaming shards. Images and masks stay
encoded (the files' own PNG/JPEG/TIFF bytes), so the shards are no larger than the source; no spec
is needed. Train from them with ``unet_train.streaming.StreamingDataModule`` (a local path or an
``s3://`` URL). A folder of ``images/`` and ``masks/`` keeps a validation share
(``--val-fraction``) as ``OUT/val``. Bad input is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from unet_cli.common import byte_size, fraction, non_negative_int, positive_int

HELP = "pack a folder of images and masks into streaming shards (LitData)"


PAIRS_HELP = "say which images and masks of a data folder (or pairs list) train, and how"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, parser_class=type(parser))
    pairs = sub.add_parser("pairs", help=PAIRS_HELP, description=PAIRS_HELP)
    pairs.add_argument("root", type=Path, help="a data folder, a pairs CSV or a datalist JSON")
    for key, what in (("images", "the images"), ("masks", "the masks"),
                      ("valid", "valid-region masks (a field of view)")):  # fmt: skip
        pairs.add_argument(
            f"--{key}", help=f"data.files.{key}: {what}, a folder or a name pattern with {{stem}}"
        )
    pairs.add_argument(
        "--unpaired", choices=("error", "skip"), default="error",
        help="data.files.unpaired: refuse unpaired files (default) or leave them out",
    )  # fmt: skip
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
    if args.action == "pairs":
        return _pairs(args)
    from unet_train.streaming import pack

    counts = pack(args.folder, args.out, args.shard_size, args.workers, args.val_fraction,
                  args.seed)  # fmt: skip
    for split, n in counts.items():
        print(f"{args.out / split}: {n} samples")
    return 0


def _pairs(args: argparse.Namespace) -> int:
    from unet_data import Layout, find_dataset

    layout = Layout(args.images, args.masks, args.valid, args.unpaired)
    found = find_dataset(args.root, layout)
    for line in [found.line, *found.notes]:
        print(line)
    if found.num_classes is not None:
        print(f"classes: {found.num_classes} ({', '.join(found.class_names or [])})")
    for split, pairs in found.splits.items():
        groups = {p.group for p in pairs if p.group is not None}
        extra = f", {len(groups)} groups" if groups else ""
        print(f"{split}: {len(pairs)} pairs{extra}, e.g. {pairs[0].image} ↔ {pairs[0].mask}"
              if pairs else f"{split}: no pairs")  # fmt: skip
    return 0
