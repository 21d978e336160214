"""Loader throughput (images/s) and cache memory, mosaic on, 2 workers; prints JSON.

    OMP_NUM_THREADS=1 python benchmarks/bench_loader.py [--data shapes] [--epochs 2]

For each image size (320, 640) and cache mode (none, ram, encoded) it builds the training
loader, runs one warm-up epoch (worker start, page cache) and times ``--epochs`` more. When
yolov5 (pip package yolov5==7.0.14) is importable, its ``LoadImagesAndLabels`` is timed on the
same images with the same hyp, batch size and workers, side by side.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

import torch
from torch.utils.data import DataLoader

from modyolo.data.augment import DEFAULT_AUG
from modyolo.data.dataset_yaml import load_data_config
from modyolo.data.loader import create_dataloader


def _time(loader, epochs: int) -> tuple[float, int]:
    for _ in loader:  # warm-up epoch
        pass
    n, t0 = 0, time.perf_counter()
    for _ in range(epochs):
        for batch in loader:
            n += batch[0].shape[0]
    return n / (time.perf_counter() - t0), n


def bench_modyolo(train, size: int, cache: str | None, args) -> dict:
    loader, ds = create_dataloader(
        train,
        size,
        args.batch,
        32,
        hyp=DEFAULT_AUG,
        augment=True,
        cache=cache,
        workers=args.workers,
        shuffle=True,
        seed=0,
        progress=False,
    )
    ips, n = _time(loader, args.epochs)
    mem = ds.cache.nbytes if ds.cache is not None else 0
    del loader
    return {"images_per_s": round(ips, 1), "cache_bytes": mem, "images": n}


def bench_yolov5(train, size: int, cache: str | None, args) -> dict:
    from yolov5.utils.dataloaders import LoadImagesAndLabels

    ds = LoadImagesAndLabels(
        [str(p) for p in train],
        size,
        args.batch,
        augment=True,
        hyp=dict(DEFAULT_AUG),
        cache_images=cache or False,
        stride=32,
    )
    loader = DataLoader(
        ds,
        batch_size=args.batch,
        shuffle=True,
        num_workers=args.workers,
        collate_fn=LoadImagesAndLabels.collate_fn,
        persistent_workers=True,
        generator=torch.Generator().manual_seed(0),
    )
    ips, n = _time(loader, args.epochs)
    return {"images_per_s": round(ips, 1), "images": n}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default="shapes")
    ap.add_argument("--sizes", type=int, nargs="+", default=[320, 640])
    ap.add_argument("--caches", nargs="+", default=["none", "ram", "encoded"])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cfg = load_data_config(args.data)
    out: dict = {
        "data": str(cfg.source),
        "batch": args.batch,
        "workers": args.workers,
        "mosaic": 1.0,
        "torch_threads": torch.get_num_threads(),
        "modyolo": {},
        "yolov5": {},
    }
    for size in args.sizes:
        for cache in args.caches:
            c = None if cache == "none" else cache
            out["modyolo"][f"{size}/{cache}"] = bench_modyolo(cfg.train, size, c, args)
            print(f"modyolo {size} {cache}: {out['modyolo'][f'{size}/{cache}']}", file=sys.stderr)
    try:
        import yolov5.utils.dataloaders  # noqa: F401
    except Exception as e:  # absent or broken install: say so, keep our figures
        out["yolov5"] = f"skipped: yolov5 not importable ({type(e).__name__}: {e})"
    else:
        for size in args.sizes:
            for cache in ("none", "ram"):
                out["yolov5"][f"{size}/{cache}"] = bench_yolov5(
                    cfg.train, size, None if cache == "none" else cache, args
                )
                print(f"yolov5 {size} {cache}: {out['yolov5'][f'{size}/{cache}']}", file=sys.stderr)
    for size in args.sizes:
        m = out["modyolo"]
        if f"{size}/ram" in m and f"{size}/encoded" in m:
            out.setdefault("encoded_vs_ram", {})[str(size)] = {
                "memory_ratio": round(m[f"{size}/encoded"]["cache_bytes"] / max(m[f"{size}/ram"]["cache_bytes"], 1), 3),
                "speed_ratio": round(m[f"{size}/encoded"]["images_per_s"] / m[f"{size}/ram"]["images_per_s"], 3),
            }
        if isinstance(out["yolov5"], dict) and f"{size}/none" in out["yolov5"] and f"{size}/none" in m:
            out.setdefault("speedup_vs_yolov5", {})[str(size)] = round(
                m[f"{size}/none"]["images_per_s"] / out["yolov5"][f"{size}/none"]["images_per_s"], 2
            )
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
