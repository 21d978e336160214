"""Where a run's numbers go: ``results.csv`` and TensorBoard (rank 0 only)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np


class CSVLogger:
    """One row per epoch; columns fixed by the first row, like yolov5's results.csv."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.keys: list[str] | None = None
        if path.exists():  # a resumed run appends to its own file
            with path.open() as f:
                header = f.readline().strip()
            self.keys = [k.strip() for k in header.split(",")] if header else None

    def __call__(self, trainer: Any, epoch: int, row: dict[str, float]) -> None:
        if self.keys is None:
            self.keys = list(row)
            with self.path.open("w", newline="") as f:
                csv.writer(f).writerow(self.keys)
        with self.path.open("a", newline="") as f:
            csv.writer(f).writerow([_fmt(row.get(k, "")) for k in self.keys])


def _fmt(v: Any) -> Any:
    return f"{v:.6g}" if isinstance(v, float) else v


def read_results(path: Path) -> dict[str, np.ndarray]:
    """results.csv -> {column: values}."""
    with Path(path).open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {k.strip(): np.array([float(r[k]) if r[k] not in ("", None) else np.nan for r in rows]) for k in rows[0]}


class TensorBoardLogger:
    """Scalars per epoch and a few training-batch images. Quietly absent without tensorboard."""

    def __init__(self, log_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is a core dependency, but never fail a run for logging
            self.writer = None
            return
        self.writer = SummaryWriter(str(log_dir))

    def scalars(self, trainer: Any, epoch: int, row: dict[str, float]) -> None:
        if self.writer is None:
            return
        for k, v in row.items():
            if k != "epoch" and isinstance(v, (int, float)):
                self.writer.add_scalar(k, v, epoch)
        self.writer.flush()

    def image(self, tag: str, img_hwc: np.ndarray, step: int) -> None:
        if self.writer is not None:
            self.writer.add_image(tag, img_hwc, step, dataformats="HWC")

    def close(self, *_: Any) -> None:
        if self.writer is not None:
            self.writer.close()
