"""Validation time per image (pre-process / inference / NMS) and mAP, modyolo next to yolov5; JSON.

1. modyolo: ``modyolo.eval.validator.validate`` on the demo shapes val split (rect batches, pad
   0.5, conf 0.001, IoU 0.6, as yolov5's val.py) -> speed split and P, R, mAP50, mAP50-95.
2. yolov5 7.0.14 (when importable): ``yolov5.models.yolo.Model`` built from the same model YAML,
   loaded with the same state_dict (the parameter names match), fused. Its forward on one batch
   is compared with ours (max abs difference), then both post-processing pipelines run on the
   SAME model outputs for every batch: ours (``non_max_suppression`` + ``scale_boxes`` +
   ``DetectionMetrics``) and yolov5's val.py path (its ``non_max_suppression`` + ``scale_boxes`` +
   ``process_batch`` + ``ap_per_class``). Reported: NMS + metrics ms per image for each and the
   mAPs both compute (goal: agreement within 0.005, ours no slower).

Without ``--weights`` a yolov5n is trained for ``--epochs`` on the shapes train split first
(AdamW, lr 0.001: SGD barely moves in a few epochs), so the mAPs compared are
not all zero.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_val.py [--weights best.pt] [--epochs 8] [--imgsz 320]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch


def train_weights(epochs: int, imgsz: int, project: Path) -> Path:
    from modyolo.api import train

    r = train(
        data="shapes",
        cfg="yolov5n.yaml",
        epochs=epochs,
        imgsz=imgsz,
        batch_size=16,
        workers=2,
        optimizer="AdamW",
        lr_scale=0.1,
        noplots=True,
        verbose=False,
        project=str(project),
    )
    return r.best if r.best and r.best.is_file() else r.last


def modyolo_val(model, names, loader, device) -> dict:
    from modyolo.eval.validator import validate

    t = time.perf_counter()
    r = validate(model, loader, names=names, conf_thres=0.001, iou_thres=0.6, progress=False, device=device)
    m = r.metrics
    return {
        "seconds": time.perf_counter() - t,
        "ms_per_image": r.speed,
        **{k: round(float(m[k]), 5) for k in ("precision", "recall", "mAP50", "mAP50-95")},
    }


def collect_outputs(model, loader) -> list[tuple]:
    """Our model's inference output per batch, with what post-processing needs."""
    out = []
    with torch.inference_mode():
        for imgs, targets, paths, shapes in loader:
            x = imgs.float() / 255
            out.append((model(x)[0].float(), targets, shapes, x.shape[2:], x[:1]))
    return out


def ours_postprocess(batches: list[tuple], nc: int) -> tuple[dict, float]:
    from modyolo.eval.boxes import scale_boxes, xywh2xyxy
    from modyolo.eval.metrics import DetectionMetrics
    from modyolo.eval.nms import non_max_suppression

    t = time.perf_counter()
    tracker = DetectionMetrics(nc)
    for pred, targets, shapes, (h, w), _ in batches:
        dets = non_max_suppression(pred, 0.001, 0.6, multi_label=True, max_det=300)
        lab_px = xywh2xyxy(targets[:, 2:] * torch.tensor((w, h, w, h)))
        all_d, all_l = [], []
        for si, det in enumerate(dets):
            sel = targets[:, 0] == si
            d = det.clone()
            d[:, :4] = scale_boxes((h, w), d[:, :4], shapes[si][0], shapes[si][1])
            lab = torch.cat((targets[sel, 1:2], scale_boxes((h, w), lab_px[sel], shapes[si][0], shapes[si][1])), 1)
            all_d.append(d)
            all_l.append(lab)
        tracker.update(all_d, all_l)
    m = tracker.compute()
    return m, time.perf_counter() - t


def yolov5_postprocess(batches: list[tuple], nc: int) -> tuple[dict, float]:
    import yolov5.utils.general as general
    from yolov5.utils.general import non_max_suppression, scale_boxes, xywh2xyxy
    from yolov5.utils.metrics import ap_per_class
    from yolov5.val import process_batch

    # yolov5's NMS gives up on a batch after 0.5 + 0.05 * batch seconds of wall time, which on a
    # busy CPU silently drops whole batches of detections; freeze its clock so mAPs are comparable
    general.time = types.SimpleNamespace(time=lambda: 0.0)
    iouv = torch.linspace(0.5, 0.95, 10)
    t = time.perf_counter()
    stats = []
    for pred, targets, shapes, (h, w), _ in batches:
        targets = targets.clone()
        targets[:, 2:] *= torch.tensor((w, h, w, h))
        preds = non_max_suppression(pred, 0.001, 0.6, labels=[], multi_label=True, agnostic=False, max_det=300)
        for si, p in enumerate(preds):  # val.py's per-image loop
            labels = targets[targets[:, 0] == si, 1:]
            nl, npr = labels.shape[0], p.shape[0]
            shape = shapes[si][0]
            correct = torch.zeros(npr, 10, dtype=torch.bool)
            if npr == 0:
                if nl:
                    stats.append((correct, *torch.zeros((2, 0)), labels[:, 0]))
                continue
            predn = p.clone()
            scale_boxes((h, w), predn[:, :4], shape, shapes[si][1])
            if nl:
                tbox = xywh2xyxy(labels[:, 1:5])
                scale_boxes((h, w), tbox, shape, shapes[si][1])
                correct = process_batch(predn, torch.cat((labels[:, 0:1], tbox), 1), iouv)
            stats.append((correct, p[:, 4], p[:, 5], labels[:, 0]))
    stats = [torch.cat(x, 0).cpu().numpy() for x in zip(*stats)]
    _, _, p, r, _, ap, _ = ap_per_class(*stats, plot=False, names=dict(enumerate(range(nc))))
    ap50, ap = ap[:, 0], ap.mean(1)
    m = {"precision": p.mean(), "recall": r.mean(), "mAP50": ap50.mean(), "mAP50-95": ap.mean()}
    return m, time.perf_counter() - t


def yolov5_model(model_yaml: dict, state: dict, nc: int):
    os.environ.setdefault("ULTRALYTICS_SKIP_REQUIREMENTS_CHECKS", "1")
    threads = torch.get_num_threads()
    from yolov5.models.yolo import Model

    torch.set_num_threads(threads)  # yolov5 changes thread settings at import
    logging.getLogger("yolov5").setLevel(logging.WARNING)  # its INFO layer table would mix into the JSON
    m = Model({k: v for k, v in model_yaml.items() if k != "yaml_file"}, nc=nc)
    m.load_state_dict(state, strict=True)
    return m.fuse().eval()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default="", help="modyolo checkpoint; default: train a yolov5n first")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    if not hasattr(np, "trapz"):  # yolov5 7.0.14's ap uses np.trapz, removed in numpy 2.4
        np.trapz = np.trapezoid

    from modyolo.data.dataset_yaml import load_data_config
    from modyolo.data.loader import create_dataloader
    from modyolo.engine.checkpoint import inference_state_dict, load_checkpoint
    from modyolo.inference.predictor import load_model

    tmp = tempfile.TemporaryDirectory()
    weights = Path(args.weights) if args.weights else train_weights(args.epochs, args.imgsz, Path(tmp.name))
    data = load_data_config("shapes")
    model, names, meta = load_model(weights)
    loader, dataset = create_dataloader(
        data.val,
        args.imgsz,
        args.batch_size,
        meta["stride"],
        rect=True,
        pad=0.5,
        workers=0,
        names=data.names,
        nc=data.nc,
        persistent=False,
        progress=False,
    )
    report = {
        "weights": str(weights),
        "images": len(dataset),
        "imgsz": args.imgsz,
        "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "modyolo_validate": modyolo_val(model, names, loader, torch.device("cpu")),
    }
    batches = collect_outputs(model, loader)
    n = len(dataset)
    reps = []
    for _ in range(3):
        m_ours, t_ours = ours_postprocess(batches, len(names))
        reps.append(t_ours)
    report["modyolo_nms_metrics_ms_per_image"] = round(1e3 * min(reps) / n, 3)
    report["modyolo_map"] = {k: round(float(m_ours[k]), 5) for k in ("precision", "recall", "mAP50", "mAP50-95")}
    try:
        import yolov5  # noqa: F401
    except Exception as e:  # not installed, or broken by its dependencies
        report["yolov5"] = f"not importable: {type(e).__name__}: {e}"
    else:
        ckpt = load_checkpoint(weights)
        y5 = yolov5_model(ckpt["model_yaml"], inference_state_dict(ckpt), len(names))
        with torch.inference_mode():
            x = batches[0][4]
            report["forward_max_abs_diff_vs_yolov5"] = float((y5(x)[0] - model(x)[0]).abs().max())
        reps = []
        for _ in range(3):
            m_y5, t_y5 = yolov5_postprocess(batches, len(names))
            reps.append(t_y5)
        report["yolov5_nms_metrics_ms_per_image"] = round(1e3 * min(reps) / n, 3)
        report["yolov5_map"] = {k: round(float(m_y5[k]), 5) for k in ("precision", "recall", "mAP50", "mAP50-95")}
        report["map_abs_diff"] = {
            k: round(abs(report["modyolo_map"][k] - report["yolov5_map"][k]), 5) for k in ("mAP50", "mAP50-95")
        }
    json.dump(report, sys.stdout, indent=2)
    print()
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
