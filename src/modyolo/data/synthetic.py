"""The embedded demo dataset: seeded, generated locally, in YOLO format (no download).

Images hold a few filled shapes (circle, square, triangle, star, cross) of random colour, size
(10-40% of the short image side), rotation and some overlap, on noise, gradient or striped
backgrounds; image sizes and aspect ratios vary and about 8% of images hold no object. The
classes differ in outline, not colour, so a detector has to learn shape; objects are large so a
tiny model learns them in a few CPU minutes.

Every image is drawn from its own generator seeded by ``(seed, split, index)``, so the dataset is
identical across runs and machines for a seed and independent of generation order.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import yaml

SHAPES_VERSION = 1
CLASSES = ("circle", "square", "triangle", "star", "cross")
BACKGROUND_FRACTION = 0.08
DEFAULT_SPLITS = (400, 100)  # train, val images of the default demo dataset


def _polygon(cls: int, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """Outline of class ``cls`` with circumradius ``r`` rotated by ``angle``: float [k, 2] x, y."""
    if cls == 0:  # circle
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        rad = np.full_like(t, r)
    elif cls == 1:  # square
        t = np.arange(4) * np.pi / 2 + np.pi / 4
        rad = np.full(4, r)
    elif cls == 2:  # triangle
        t = np.arange(3) * 2 * np.pi / 3 - np.pi / 2
        rad = np.full(3, r)
    elif cls == 3:  # five-pointed star
        t = np.arange(10) * np.pi / 5 - np.pi / 2
        rad = np.where(np.arange(10) % 2 == 0, r, 0.45 * r)
    else:  # cross: a plus sign with arms a third of its width
        a = r / np.sqrt(1 + (1 / 3) ** 2)  # arm tip corner lies on the circumcircle
        b = a / 3
        pts = np.array(
            [[b, a], [b, b], [a, b], [a, -b], [b, -b], [b, -a], [-b, -a], [-b, -b], [-a, -b], [-a, b], [-b, b], [-b, a]]
        )
        t = np.arctan2(pts[:, 1], pts[:, 0])
        rad = np.hypot(pts[:, 0], pts[:, 1])
    t = t + angle
    return np.stack([cx + rad * np.cos(t), cy + rad * np.sin(t)], 1)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    kind = rng.integers(3)
    c1, c2 = rng.uniform(0, 255, 3).astype(np.float32), rng.uniform(0, 255, 3).astype(np.float32)
    if kind == 0:  # coloured noise
        img = c1 + rng.standard_normal((h, w, 3), np.float32) * rng.uniform(8, 30)
    elif kind == 1:  # linear gradient in a random direction
        a = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        s = xx * np.float32(np.cos(a)) + yy * np.float32(np.sin(a))
        s = (s - s.min()) / max(float(np.ptp(s)), 1.0)
        img = c1 + s[..., None] * (c2 - c1)
    else:  # sinusoidal stripes plus noise: texture that is not a shape
        a, period = rng.uniform(0, np.pi), rng.uniform(6, 40)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        s = 0.5 + 0.5 * np.sin(
            (xx * np.float32(np.cos(a)) + yy * np.float32(np.sin(a))) * np.float32(2 * np.pi / period)
        )
        img = c1 + s[..., None] * (c2 - c1) * 0.5 + rng.standard_normal((h, w, 3), np.float32) * 8
    return np.clip(img, 0, 255).astype(np.uint8)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def draw_shapes_image(rng: np.random.Generator, img_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """One image (BGR uint8 [h, w, 3]) and its labels ``[n, 5]`` cls, cx, cy, w, h normalised."""
    lo, hi = img_size
    w, h = (int(v) for v in rng.integers(lo, hi + 1, 2))
    img = _background(rng, h, w)
    labels: list[list[float]] = []
    boxes: list[np.ndarray] = []
    n_obj = 0 if rng.random() < BACKGROUND_FRACTION else int(rng.integers(1, 6))
    for _ in range(n_obj):
        cls = int(rng.integers(len(CLASSES)))
        for _try in range(10):  # resample until overlap with earlier shapes is moderate
            r = rng.uniform(0.05, 0.20) * min(w, h)  # circumradius: 10-40% of the short side
            cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
            pts = _polygon(cls, cx, cy, r, rng.uniform(0, 2 * np.pi))
            box = np.array([*pts.min(0), *pts.max(0)]).clip(0, [w, h, w, h])
            if all(_iou(box, b) < 0.3 for b in boxes):
                break
        else:
            continue
        region = img[int(box[1]) : int(box[3]) + 1, int(box[0]) : int(box[2]) + 1].reshape(-1, 3).mean(0)
        for _c in range(20):  # a colour that stands out from the background under it
            colour = rng.uniform(0, 255, 3)
            if np.abs(colour - region).sum() > 160:
                break
        cv2.fillPoly(img, [np.round(pts * 16).astype(np.int32)], colour.tolist(), cv2.LINE_AA, shift=4)
        boxes.append(box)
        labels.append(
            [cls, (box[0] + box[2]) / 2 / w, (box[1] + box[3]) / 2 / h, (box[2] - box[0]) / w, (box[3] - box[1]) / h]
        )
    return img, np.asarray(labels, np.float32).reshape(-1, 5)


def _generate(root: Path, n_train: int, n_val: int, seed: int, img_size: tuple[int, int]) -> None:
    for split_id, (split, n) in enumerate((("train", n_train), ("val", n_val))):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            rng = np.random.default_rng([seed, split_id, i])
            img, labels = draw_shapes_image(rng, img_size)
            stem = f"{split}_{i:05d}"
            cv2.imwrite(str(root / "images" / split / f"{stem}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
            rows = [f"{int(c)} {x:.6f} {y:.6f} {bw:.6f} {bh:.6f}" for c, x, y, bw, bh in labels]
            (root / "labels" / split / f"{stem}.txt").write_text("".join(r + "\n" for r in rows))


def _write_yaml(root: Path) -> Path:
    path = root / "shapes.yaml"
    cfg = {
        "path": str(root.resolve()),
        "train": "images/train",
        "val": "images/val",
        "nc": len(CLASSES),
        "names": dict(enumerate(CLASSES)),
    }
    tmp = path.with_suffix(f".yaml.{os.getpid()}.tmp")
    tmp.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    os.replace(tmp, path)  # the YAML appears last and atomically: it marks a complete dataset
    return path


def make_shapes_dataset(
    root: Path, n_train: int = 400, n_val: int = 100, seed: int = 0, img_size: tuple[int, int] = (256, 512)
) -> Path:
    """Generate the shapes dataset under ``root`` and return its data YAML path.

    ``img_size`` bounds each image side independently (so aspect ratios vary). Layout:
    ``root/images/{train,val}/*.jpg``, ``root/labels/{train,val}/*.txt``, ``root/shapes.yaml``.
    """
    root = Path(root)
    _generate(root, n_train, n_val, seed, img_size)
    return _write_yaml(root)


def ensure_shapes_dataset(root: Path, timeout_s: float = 300.0) -> Path:
    """The default demo dataset at ``root``, generated once even when several processes ask at once."""
    root = Path(root)
    yaml_path = root / "shapes.yaml"
    if yaml_path.is_file():
        return yaml_path
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    _generate(tmp, *DEFAULT_SPLITS, 0, (256, 512))
    try:
        os.rename(tmp, root)  # atomic; fails if another process got there first
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        deadline = time.monotonic() + timeout_s
        while not yaml_path.is_file():  # the other process is writing the YAML
            if time.monotonic() > deadline:
                raise RuntimeError(f"{root} exists but holds no shapes.yaml; delete the folder and retry") from None
            time.sleep(0.2)
        return yaml_path
    return _write_yaml(root)
