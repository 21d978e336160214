"""Pictures of a training run: results.png, labels.png and training-batch mosaics."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from modyolo.engine.loggers import read_results


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window; chosen here, not at import time
    import matplotlib.pyplot as plt

    return plt


def plot_results(csv_path: Path, out: Path | None = None) -> Path | None:
    """Loss and metric curves from results.csv (one panel per column)."""
    data = read_results(csv_path)
    if not data or "epoch" not in data:
        return None
    plt = _pyplot()
    keys = [k for k in data if k != "epoch" and not k.startswith("lr")]
    cols = 5
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        ax.plot(data["epoch"], data[key], marker=".", linewidth=1.5)
        ax.set_title(key, fontsize=10)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    fig.tight_layout()
    out = out or csv_path.with_name("results.png")
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_labels(labels: Sequence[np.ndarray], names: Sequence[str], out: Path) -> Path:
    """Class histogram and box centre / size distributions of the training labels.

    labels: per image ``ndarray[n, 5]`` (cls, cx, cy, w, h), normalised.
    """
    plt = _pyplot()
    all_labels = (
        np.concatenate([lb for lb in labels if len(lb)], 0) if any(len(lb) for lb in labels) else np.zeros((0, 5))
    )
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    counts = np.bincount(all_labels[:, 0].astype(int), minlength=len(names))
    axes[0].bar(range(len(names)), counts, color="tab:blue")
    axes[0].set_xticks(range(len(names)), [str(n) for n in names], rotation=90 if len(names) > 10 else 0)
    axes[0].set_ylabel("instances")
    axes[0].set_title(f"{len(all_labels)} boxes in {len(labels)} images")
    axes[1].hist2d(all_labels[:, 1], all_labels[:, 2], bins=40, range=[[0, 1], [0, 1]], cmap="Blues")
    axes[1].set_xlabel("x")
    axes[1].set_ylabel("y")
    axes[1].set_title("box centres")
    axes[2].hist2d(all_labels[:, 3], all_labels[:, 4], bins=40, range=[[0, 1], [0, 1]], cmap="Blues")
    axes[2].set_xlabel("width")
    axes[2].set_ylabel("height")
    axes[2].set_title("box sizes (fraction of image)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def batch_mosaic(
    imgs: torch.Tensor, targets: torch.Tensor, names: Sequence[str], max_images: int = 16, max_side: int = 1280
) -> np.ndarray:
    """A grid of a training batch with its boxes drawn. imgs: uint8 or 0-1 float ``[B, 3, H, W]``;
    targets: ``[N, 6]`` (image, cls, cx, cy, w, h) normalised. Returns an RGB ``uint8`` array."""
    imgs = imgs[:max_images].detach().cpu().float()
    if imgs.max() <= 1.0:
        imgs = imgs * 255
    b, _, h, w = imgs.shape
    ncol = math.ceil(math.sqrt(b))
    nrow = math.ceil(b / ncol)
    scale = min(1.0, max_side / max(ncol * w, nrow * h))
    th, tw = int(h * scale), int(w * scale)
    grid = np.full((nrow * th, ncol * tw, 3), 114, dtype=np.uint8)
    t = targets.detach().cpu().numpy()
    for i in range(b):
        tile = np.ascontiguousarray(imgs[i].permute(1, 2, 0).numpy().astype(np.uint8))
        tile = cv2.resize(tile, (tw, th)) if scale < 1 else tile
        for _, c, cx, cy, bw, bh in t[t[:, 0] == i]:
            x1, y1 = int((cx - bw / 2) * tw), int((cy - bh / 2) * th)
            x2, y2 = int((cx + bw / 2) * tw), int((cy + bh / 2) * th)
            color = _color(int(c))
            cv2.rectangle(tile, (x1, y1), (x2, y2), color, 1)
            label = names[int(c)] if int(c) < len(names) else str(int(c))
            cv2.putText(tile, label, (x1, max(y1 - 2, 8)), cv2.FONT_HERSHEY_SIMPLEX, 0.35, color, 1, cv2.LINE_AA)
        r, col = divmod(i, ncol)
        grid[r * th : (r + 1) * th, col * tw : (col + 1) * tw] = tile
    return grid


def _color(i: int) -> tuple[int, int, int]:
    palette = [
        (255, 56, 56),
        (72, 249, 10),
        (0, 194, 255),
        (255, 157, 151),
        (146, 204, 23),
        (26, 147, 52),
        (0, 212, 187),
        (44, 153, 168),
        (52, 69, 147),
        (100, 115, 255),
        (255, 149, 200),
        (255, 178, 29),
    ]
    return palette[i % len(palette)]


def save_rgb(img: np.ndarray, path: Path) -> Path:
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return path
