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
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

import numpy as np


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
    from modyolo.data.dataset_yaml import load_data_config

    cfg = load_data_config(args.data)
    splits = [args.split] if args.split else (["train", "val", "test"] if args.action == "verify" else ["train"])
    for split in splits:
        if args.split and not getattr(cfg, split):
            raise ValueError(f"{cfg.source}: key '{split}': no such split")
    if args.action == "verify":
        data_logger = logging.getLogger("modyolo.data")
        level = data_logger.level
        data_logger.setLevel(logging.ERROR)  # the report is printed below instead
        try:
            results = [
                _verify(split, getattr(cfg, split), cfg.nc, not args.no_cache, args.strict)
                for split in splits
                if getattr(cfg, split)
            ]
        finally:
            data_logger.setLevel(level)  # in-process callers (tests, api) keep their logging
        return 1 if any(results) else 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return _show(args, getattr(cfg, splits[0]), cfg.names)


def _verify(split: str, sources, nc: int, use_cache: bool, strict: bool) -> int:
    """Print one split's report; 1 when something is wrong (see the module docstring), else 0."""
    from modyolo.data.formats.yolo import list_image_files
    from modyolo.data.verify import scan

    try:
        files = list_image_files(sources)
    except FileNotFoundError as e:
        print(f"{split}: {e}")
        return 1
    report = scan(files, nc, use_cache=use_cache, progress=False)
    problems = []
    if report.n_corrupt:
        problems.append(f"{report.n_corrupt} corrupt file(s) would be skipped")
    if not report.records:
        problems.append("no usable image")
    if strict and report.n_fixed:
        problems.append(f"{report.n_fixed} label file(s) needed fixes (--strict)")
    if strict and report.n_missing_labels:
        problems.append(f"{report.n_missing_labels} image(s) without a label file (--strict)")
    verdict = "FAIL: " + "; ".join(problems) if problems else "ok"
    print(f"{split}: {report.summary()} -> {verdict}")
    for m in report.messages:
        print(f"  {m}")
    return 1 if problems else 0


def load_hyp(path: str | None) -> dict:
    """Augmentation settings as training reads them: a hyp YAML or a shipped name
    (``scratch-low``...), validated the same way; {} (the loader's defaults) when none is given."""
    if not path:
        return {}
    from modyolo.engine.hyp import load_hyp as load_training_hyp

    return load_training_hyp(path).to_dict()


def _show(args: argparse.Namespace, sources, names: list[str]) -> int:
    from modyolo.data.dataset import DetectionDataset

    ds = DetectionDataset(
        sources, img_size=args.img, augment=not args.no_augment, hyp=load_hyp(args.hyp), seed=args.seed, names=names
    )
    idx = np.random.default_rng(args.seed).choice(len(ds), size=min(args.n, len(ds)), replace=False)
    grid = draw_grid([ds[int(i)] for i in idx], names)
    import cv2

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), grid):
        raise ValueError(f"cannot write {out}; give --out a .png path in a writable folder")
    print(f"wrote {out} ({len(idx)} samples)")
    return 0


def draw_grid(samples, names: list[str], tile: int = 320) -> np.ndarray:
    """BGR grid of ``(img CHW RGB uint8, labels [n, 6], path, shapes)`` samples with boxes drawn."""
    import cv2

    cols = math.ceil(math.sqrt(len(samples)))
    rows = math.ceil(len(samples) / cols)
    grid = np.full((rows * tile, cols * tile, 3), 255, np.uint8)
    for k, (img, labels, _, _) in enumerate(samples):
        im = np.ascontiguousarray(img.numpy().transpose(1, 2, 0)[..., ::-1])
        h, w = im.shape[:2]
        r = tile / max(h, w)
        im = cv2.resize(im, (int(w * r), int(h * r)))
        for _, c, cx, cy, bw, bh in labels.numpy():
            x1, y1 = int((cx - bw / 2) * w * r), int((cy - bh / 2) * h * r)
            x2, y2 = int((cx + bw / 2) * w * r), int((cy + bh / 2) * h * r)
            colour = tuple(int(v) for v in np.random.default_rng(int(c)).integers(0, 255, 3))
            cv2.rectangle(im, (x1, y1), (x2, y2), colour, 2)
            label = names[int(c)] if int(c) < len(names) else str(int(c))
            cv2.putText(im, label, (x1 + 2, max(y1 - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1, cv2.LINE_AA)
        y0, x0 = (k // cols) * tile, (k % cols) * tile
        grid[y0 : y0 + im.shape[0], x0 : x0 + im.shape[1]] = im
    return grid
