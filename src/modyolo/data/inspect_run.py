"""What ``modyolo data verify|show`` does: verify a dataset's splits, or draw augmented samples.

``verify_dataset`` checks every split of the data YAML (train, val and test when present, or
one) and returns each split's report lines and verdict: a split fails when any file is corrupt
(it would be skipped in training) or it has no usable image; with ``strict`` also when labels had
to be fixed (clipped, zero-area or duplicate boxes dropped) or an image has no label file.

``write_preview`` writes a PNG grid of training samples as the loader yields them (mosaic, warp,
HSV, flips, mixup, copy-paste as the augmentation settings say) with their boxes and class names.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modyolo.data.dataset_yaml import DataConfig, load_data_config

SPLITS = ("train", "val", "test")


@dataclass
class SplitVerdict:
    """One split's verification: ``lines`` (summary -> verdict, then the per-file problems)."""

    split: str
    failed: bool
    lines: list[str]


def _splits(cfg: DataConfig, split: str | None, default: tuple[str, ...]) -> list[str]:
    if split and not getattr(cfg, split):
        raise ValueError(f"{cfg.source}: key '{split}': no such split")
    return [split] if split else list(default)


def verify_dataset(
    data: str, split: str | None = None, use_cache: bool = True, strict: bool = False
) -> list[SplitVerdict]:
    """Verify ``split`` (default: every split the data YAML has) of ``data`` (a YAML or 'shapes').

    The per-file warnings the scan would log are kept quiet: they are in the verdicts' lines.
    """
    cfg = load_data_config(data)
    splits = _splits(cfg, split, SPLITS)
    data_logger = logging.getLogger("modyolo.data")
    level = data_logger.level
    data_logger.setLevel(logging.ERROR)  # the report is returned instead
    try:
        return [verify_split(s, getattr(cfg, s), cfg.nc, use_cache, strict) for s in splits if getattr(cfg, s)]
    finally:
        data_logger.setLevel(level)  # in-process callers (tests, api) keep their logging


def verify_split(split: str, sources: Any, nc: int, use_cache: bool, strict: bool) -> SplitVerdict:
    """One split's report; ``failed`` as the module docstring says."""
    from modyolo.data.formats.yolo import list_image_files
    from modyolo.data.verify import scan

    try:
        files = list_image_files(sources)
    except FileNotFoundError as e:
        return SplitVerdict(split, True, [f"{split}: {e}"])
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
    lines = [f"{split}: {report.summary()} -> {verdict}", *(f"  {m}" for m in report.messages)]
    return SplitVerdict(split, bool(problems), lines)


def write_preview(
    data: str,
    out: str | Path,
    hyp: dict,
    split: str | None = None,
    img_size: int = 640,
    n: int = 16,
    seed: int = 0,
    augment: bool = True,
) -> tuple[Path, int]:
    """Draw ``n`` seeded samples of ``split`` (default train) into a PNG at ``out``.

    hyp: augmentation settings by yolov5's hyp keys ({} = the loader's defaults).
    Returns ``(path written, samples drawn)``.
    """
    import cv2

    from modyolo.data.dataset import DetectionDataset

    cfg = load_data_config(data)
    sources = getattr(cfg, _splits(cfg, split, ("train",))[0])
    ds = DetectionDataset(sources, img_size=img_size, augment=augment, hyp=hyp, seed=seed, names=cfg.names)
    idx = np.random.default_rng(seed).choice(len(ds), size=min(n, len(ds)), replace=False)
    grid = draw_grid([ds[int(i)] for i in idx], cfg.names)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), grid):
        raise ValueError(f"cannot write {path}; give --out a .png path in a writable folder")
    return path, len(idx)


def draw_grid(samples: list, names: list[str], tile: int = 320) -> np.ndarray:
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
