"""DataLoaders for DetectionDataset: seeded workers, persistent workers, DDP sampling.

Reproducibility: the DataLoader's ``generator`` is seeded from ``seed + rank``; torch derives
each worker's seed from it, and ``seed_worker`` turns that into the dataset's numpy Generator
(and seeds ``random``/``np.random`` for any library code), so the same seed gives the same
batches. OpenCV threading is switched off inside workers: with one process per core its
thread pool only oversubscribes the CPU.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, get_worker_info

from .dataset import DetectionDataset


def seed_worker(worker_id: int) -> None:
    """worker_init_fn: per-worker RNGs from torch's per-worker seed (itself from the loader's generator)."""
    import cv2

    cv2.setNumThreads(0)
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
    info = get_worker_info()
    if info is not None and hasattr(info.dataset, "rng"):
        info.dataset.rng = np.random.default_rng(torch.initial_seed())


def create_dataloader(
    sources: str | Path | Iterable[str | Path],
    img_size: int,
    batch_size: int,
    stride: int,
    hyp: Mapping[str, float] | None = None,
    augment: bool = False,
    cache: str | None = None,
    rect: bool = False,
    workers: int = 2,
    shuffle: bool = False,
    seed: int = 0,
    rank: int = -1,
    world_size: int = 1,
    prefix: str = "",
    fraction: float = 1.0,
    single_cls: bool = False,
    pad: float = 0.0,
    names=None,
    nc: int | None = None,
    persistent: bool = True,
    progress: bool = True,
) -> tuple[DataLoader, DetectionDataset]:
    """Build a DetectionDataset and its DataLoader.

    ``rank != -1`` uses a DistributedSampler over ``world_size`` replicas (call
    ``loader.sampler.set_epoch(epoch)`` each epoch). ``rect`` keeps the aspect-sorted order
    (shuffling would break the per-batch shapes), as yolov5 does.
    Batches are ``DetectionDataset.collate_fn`` outputs.
    """
    if rect and shuffle:
        shuffle = False  # rect batches need the sorted order
    dataset = DetectionDataset(
        sources,
        img_size=img_size,
        batch_size=batch_size,
        augment=augment,
        hyp=hyp,
        rect=rect,
        cache=cache,
        single_cls=single_cls,
        stride=stride,
        pad=pad,
        prefix=prefix,
        fraction=fraction,
        seed=seed,
        names=names,
        nc=nc,
        progress=progress,
    )
    batch_size = min(batch_size, len(dataset))
    workers = max(0, min(os.cpu_count() or 1, workers))
    sampler = None
    if rank != -1:
        sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed)
    generator = torch.Generator()
    generator.manual_seed(seed + max(rank, 0))
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        collate_fn=DetectionDataset.collate_fn,
        worker_init_fn=seed_worker,
        generator=generator,
        persistent_workers=persistent and workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        drop_last=False,
    )
    return loader, dataset


class Throughput:
    """Images per second for progress bars: ``rate = meter.update(n_images)`` (smoothed)."""

    def __init__(self, smoothing: float = 0.9) -> None:
        self.smoothing = smoothing
        self.rate = 0.0
        self._t = time.perf_counter()
        self.total = 0

    def update(self, n: int) -> float:
        now = time.perf_counter()
        dt, self._t = now - self._t, now
        self.total += n
        if dt > 0:
            inst = n / dt
            self.rate = inst if self.rate == 0 else self.smoothing * self.rate + (1 - self.smoothing) * inst
        return self.rate

    def postfix(self) -> str:
        """A tqdm postfix such as ``'152.3 img/s'``."""
        return f"{self.rate:.1f} img/s"
