"""Score each test-time-augmentation view of a trained run on its validation images, and their mean.

    python benchmarks/tta_views.py runs/isbi2012/version_2 ../shared/data/isbi2012 --last 5

Prints the pixel error of each of the 8 views (quarter turns × mirror), of the averaged
probabilities (what ``--tta`` does) and of a majority vote. A model that is invariant to the views
scores them alike; TTA can only beat the identity view when the views' errors are comparable.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from unet_bridge import load_predictor
from unet_data import find_pairs, read_mask
from unet_data.images import read_image
from unet_infer import TTA_TRANSFORMS, labels_from_probs
from unet_runtime import keep_freed_memory, machine_line


def main() -> None:
    keep_freed_memory()  # the process setting every entry point makes (docs/architecture.md)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", type=Path, help="a run folder holding model.safetensors")
    p.add_argument("data", type=Path, help="a folder with images/ and masks/")
    p.add_argument("--last", type=int, default=5, help="score the last N pairs (the tail split)")
    p.add_argument("--encoding", default="binary", help="mask encoding (see unet_data)")
    args = p.parse_args()
    predictor = load_predictor(args.run / "model.safetensors", "torch")
    spec = predictor.spec
    views = TTA_TRANSFORMS["d4"]
    probs: dict[tuple[int, bool], list[np.ndarray]] = {v: [] for v in views}
    truth = []
    for image_path, mask_path in find_pairs(args.data)[-args.last :]:
        image = read_image(image_path, spec.in_channels)
        truth.append(read_mask(mask_path, spec.num_classes, args.encoding))
        for rot, flip in views:
            x = image[..., ::-1] if flip else image
            out = predictor.predict(np.ascontiguousarray(np.rot90(x, rot, axes=(-2, -1))))
            out = np.rot90(out, -rot, axes=(-2, -1))
            probs[(rot, flip)].append(out[..., ::-1] if flip else out)

    def error(labels: list[np.ndarray]) -> float:
        return float(np.mean([(lab != t).mean() for lab, t in zip(labels, truth, strict=True)]))

    print(machine_line())
    for rot, flip in views:
        labels = [labels_from_probs(q, spec.head) for q in probs[(rot, flip)]]
        print(f"view: {90 * rot:3d}°{' mirrored' if flip else '         '}  {error(labels):.4f}")
    n = len(truth)
    mean = [np.mean([probs[v][i] for v in views], axis=0) for i in range(n)]
    print(
        f"averaged probabilities (--tta)  {error([labels_from_probs(m, spec.head) for m in mean]):.4f}"
    )
    votes = [
        np.mean([labels_from_probs(probs[v][i], spec.head) for v in views], axis=0)
        for i in range(n)
    ]
    if spec.num_classes == 2:
        print(
            f"majority vote                   {error([(v > 0.5).astype(int) for v in votes]):.4f}"
        )


if __name__ == "__main__":
    main()
