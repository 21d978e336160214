"""``modyolo data verify|show``: check a dataset's labels, or see what the model sees.

    modyolo data verify --data data.yaml [--split train] [--no-cache] [--strict]
    modyolo data show --data shapes --hyp hyp.yaml [--img 320] [--n 16] [--out samples.png]

``show`` writes a PNG grid of augmented training samples (mosaic, warp, HSV, flips, mixup,
copy-paste as the hyp says) with their boxes and class names.

``verify`` checks every split of the data YAML (train, val and test when present; ``--split``
for one) and prints each split's summary and per-file problems. Exit code: 1 when any file is
corrupt (it would be skipped in training) or a split has no usable image; 0 otherwise. With
``--strict`` also 1 when labels had to be fixed (clipped, zero-area or duplicate boxes dropped)
or an image has no label file: for CI checks of a curated dataset.

Flags and printing only: the work is :mod:`modyolo.data.inspect_run`.
"""

from __future__ import annotations

import argparse
import logging


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("verify", "show"))
    parser.add_argument("--data", required=True, help="data YAML, or 'shapes' for the demo dataset")
    parser.add_argument(
        "--split",
        default=None,
        choices=("train", "val", "test"),
        help="verify: one split (default: every split in the data YAML); show: default train",
    )
    parser.add_argument(
        "--hyp", default=None, help="show: hyp YAML or shipped name (scratch-low, ...) with yolov5 augmentation keys"
    )
    parser.add_argument("--img", type=int, default=640, help="show: image size")
    parser.add_argument("--n", type=int, default=16, help="show: number of samples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-augment", action="store_true", help="show: letterboxed samples, no augmentation")
    parser.add_argument("--out", default="samples.png", help="show: output PNG")
    parser.add_argument("--no-cache", action="store_true", help="verify: ignore and rewrite the label cache")
    parser.add_argument(
        "--strict", action="store_true", help="verify: also exit 1 when labels were fixed or images lack a label file"
    )


def run(args: argparse.Namespace) -> int:
    from modyolo.data.inspect_run import verify_dataset, write_preview

    if args.action == "verify":
        verdicts = verify_dataset(args.data, args.split, use_cache=not args.no_cache, strict=args.strict)
        for verdict in verdicts:
            print("\n".join(verdict.lines))
        return 1 if any(v.failed for v in verdicts) else 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    path, n = write_preview(
        args.data, args.out, load_hyp(args.hyp), args.split, args.img, args.n, args.seed, not args.no_augment
    )
    print(f"wrote {path} ({n} samples)")
    return 0


def load_hyp(path: str | None) -> dict:
    """Augmentation settings as training reads them: a hyp YAML or a shipped name
    (``scratch-low``...), validated the same way; {} (the loader's defaults) when none is given."""
    if not path:
        return {}
    from modyolo.engine.hyp import load_hyp as load_training_hyp

    return load_training_hyp(path).to_dict()
