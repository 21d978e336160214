"""Compare NMS strategies at yolov5's validation settings; prints JSON.

Input imitates one 640-px validation image through a yolov5 head: 25,200 anchor rows, 80
classes, boxes clustered around a dozen objects, objectness and class scores spread so that about
21k (box, class) candidates survive conf 0.001 with multi-label on. Every strategy in
``modyolo.eval.nms.NMS_METHODS`` runs through the same ``non_max_suppression`` pipeline; the
report gives median/min ms per image and whether each returns exactly the detections of the
``batched`` reference (same rows, same order).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_nms.py [--repeats 15] [--images 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from modyolo.eval.nms import NMS_METHODS, non_max_suppression


def make_prediction(seed: int, rows: int = 25200, nc: int = 80, size: int = 640, objects: int = 12) -> torch.Tensor:
    """One image's fake head output ``[1, rows, 5 + nc]``, see the module docstring.

    10% of rows sit on one of ``objects`` objects (jittered boxes, high objectness, that object's
    class scoring high); the rest are background anchors spread over the image with low
    objectness and low class scores, as an early-epoch yolov5 model produces at conf 0.001.
    """
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(objects, 2, generator=g) * size
    sizes = 16 + torch.rand(objects, 2, generator=g) * 200
    labels = torch.randint(0, nc, (objects,), generator=g)
    pos = torch.rand(rows, generator=g) < 0.1
    owner = torch.randint(0, objects, (rows,), generator=g)
    xy = torch.where(
        pos[:, None],
        centres[owner] + torch.randn(rows, 2, generator=g) * sizes[owner] * 0.1,
        torch.rand(rows, 2, generator=g) * size,
    )
    wh = torch.where(
        pos[:, None],
        sizes[owner] * torch.exp(torch.randn(rows, 2, generator=g) * 0.15),
        8 + torch.rand(rows, 2, generator=g) * 120,
    )
    obj = torch.where(
        pos,
        torch.sigmoid(torch.randn(rows, generator=g) * 1.5 + 1),
        torch.sigmoid(torch.randn(rows, generator=g) * 2 - 4),
    )[:, None]
    cls = torch.sigmoid(torch.randn(rows, nc, generator=g) * 1.5 - 8.8)
    ip = pos.nonzero()[:, 0]
    cls[ip, labels[owner[ip]]] = torch.sigmoid(torch.randn(ip.shape[0], generator=g) + 1.5)
    return torch.cat((xy, wh, obj, cls), 1)[None]


def time_method(
    preds: list[torch.Tensor], method: str, repeats: int, **kw
) -> tuple[list[float], list[list[torch.Tensor]]]:
    times, outs = [], []
    for p in preds:  # warm-up, and the outputs for the equality check
        outs.append(non_max_suppression(p, method=method, **kw))
    for _ in range(repeats):
        t0 = time.perf_counter()
        for p in preds:
            non_max_suppression(p, method=method, **kw)
        times.append((time.perf_counter() - t0) * 1000 / len(preds))
    return times, outs


def same(a: list[list[torch.Tensor]], b: list[list[torch.Tensor]]) -> tuple[bool, int]:
    """(identical rows and order, number of detections present in only one of the two)."""
    identical, differ = True, 0
    for xa, xb in zip(a, b):
        xa, xb = xa[0], xb[0]
        if xa.shape != xb.shape or not torch.equal(xa, xb):
            identical = False
        ra = {tuple(r.tolist()) for r in xa}
        rb = {tuple(r.tolist()) for r in xb}
        differ += len(ra ^ rb)
    return identical, differ


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    preds = [make_prediction(s) for s in range(args.images)]
    kw = dict(conf_thres=0.001, iou_thres=0.6, multi_label=True, max_det=300)
    obj_ok = [(p[0, :, 4] > 0.001) for p in preds]
    candidates = [int(((p[0, m, 5:] * p[0, m, 4:5]) > 0.001).sum()) for p, m in zip(preds, obj_ok)]
    report = {
        "settings": {
            **kw,
            "rows": preds[0].shape[1],
            "nc": preds[0].shape[2] - 5,
            "images": args.images,
            "repeats": args.repeats,
            "threads": args.threads,
            "torch": torch.__version__,
        },
        "candidates_per_image": candidates,
        "methods": {},
    }
    _, reference = time_method(preds, "batched", 0, **kw)
    for method in NMS_METHODS:
        times, outs = time_method(preds, method, args.repeats, **kw)
        identical, differ = same(outs, reference)
        report["methods"][method] = {
            "median_ms_per_image": round(statistics.median(times), 2),
            "min_ms_per_image": round(min(times), 2),
            "identical_to_batched": identical,
            "detections_differing": differ,
            "kept_per_image": [int(o[0].shape[0]) for o in outs],
        }
    det_kw = dict(conf_thres=0.25, iou_thres=0.45, multi_label=False, max_det=1000)
    report["detect_settings"] = {
        m: round(statistics.median(time_method(preds, m, args.repeats, **det_kw)[0]), 3) for m in NMS_METHODS
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
