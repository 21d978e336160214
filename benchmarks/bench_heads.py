"""Heads side by side on the shapes set: anchor-based, anchor-free, NMS-free, and ultralytics' yolo11n.

Every modyolo run is ``modyolo train`` with the default recipe (no recipe flags), from scratch,
same data, image size, batch, epochs, seed and workers, each in its own process. Per run it
prints (JSON, one object per line, then a Markdown table): the final epoch's P, R, mAP50,
mAP50-95 on the val split (EMA weights), steady-state train images/s (as ``modyolo train``
reports it: epochs after the first, validation excluded), and the end-to-end latency of one
image at batch 1 (``predict_image``: forward + post-processing, i.e. NMS where the head needs it,
letterbox excluded; conf 0.25, iou 0.45; median over the val images after a warm-up).

``ultralytics`` runs ``YOLO("yolo11n.yaml").train(...)`` with its own defaults from the ultralytics
package (a benchmark environment with ``polars``, which ultralytics needs to save its checkpoints;
``YOLO_OFFLINE=1``, plots off). Its train images/s is
``n_train * (epochs - 1) / (time of epochs 2..E)`` from its results.csv ``time`` column, which
includes its validation; its latency is measured the same way as modyolo's (its predictor is
not used: our ``predict_image`` with its model's raw output is not comparable, so its latency is
its own ``speed`` dict from ``model.val(batch=1)``: inference + postprocess).

    python benchmarks/bench_heads.py --epochs 30 --n-train 800 --n-val 200 --img 320 --device 0
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

MODYOLO = {
    "yolov5n": "yolov5n.yaml",
    "yolov5nu": "yolov5nu.yaml",
    "yolov8n": "yolov8n.yaml",
    "yolo11n": "yolo11n.yaml",
    "yolo11n-e2e": "yolo11n-e2e.yaml",
}
IMG_S = re.compile(r"\(([\d.]+) train img/s, steady state\)")


def modyolo_run(name: str, cfg: str, data: Path, work: Path, a: argparse.Namespace) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "modyolo",
        "train",
        "--data",
        str(data),
        "--cfg",
        cfg,
        "--epochs",
        str(a.epochs),
        "--img",
        str(a.img),
        "--batch",
        str(a.batch),
        "--device",
        a.device,
        "--workers",
        str(a.workers),
        "--seed",
        "0",
        "--noplots",
        "--project",
        str(work / "runs"),
        "--name",
        name,
        "--exist-ok",
    ]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode:
        return {"run": name, "error": (p.stdout + p.stderr)[-1500:]}
    rows = list(csv.DictReader((work / "runs" / name / "results.csv").open()))
    last = rows[-1]
    m = IMG_S.search(p.stdout + p.stderr)
    out = {
        "run": name,
        "cfg": cfg,
        "P": float(last["precision"]),
        "R": float(last["recall"]),
        "mAP50": float(last["mAP50"]),
        "mAP50-95": float(last["mAP50-95"]),
        "train_img_s": float(m.group(1)) if m else None,
        "wall_s": round(wall, 1),
    }
    out.update(latency(work / "runs" / name / "weights" / "best.pt", data, a))
    return out


def latency(weights: Path, data: Path, a: argparse.Namespace) -> dict:
    import cv2
    import torch

    from modyolo.inference.predictor import load_model, predict_image

    device = torch.device(f"cuda:{a.device}" if a.device.isdigit() else a.device)
    model, _, meta = load_model(weights, device=device)
    images = sorted((data.parent / "images" / "val").glob("*.jpg"))
    times, post = [], []
    for i, path in enumerate(images[:10] + images):
        img = cv2.imread(str(path))
        if device.type == "cuda":
            torch.cuda.synchronize()
        _, t = predict_image(model, img, imgsz=a.img, stride=meta["stride"], device=device, conf=0.25, iou=0.45)
        if i >= 10:
            times.append(t["inference"] + t["nms"])
            post.append(t["nms"])
    head = getattr(model, "head", None)
    return {
        "latency_ms": round(statistics.median(times), 2),
        "post_ms": round(statistics.median(post), 2),
        "nms": bool(getattr(head, "needs_nms", True)),
        "params": sum(p.numel() for p in model.parameters()),
    }


def ultralytics_run(data: Path, work: Path, a: argparse.Namespace) -> dict:
    code = f"""
import json, sys
from ultralytics import YOLO
m = YOLO("yolo11n.yaml")
r = m.train(data={str(data)!r}, epochs={a.epochs}, imgsz={a.img}, batch={a.batch}, device={a.device!r},
            workers={a.workers}, seed=0, plots=False, project={str(work / "ultra")!r}, name="yolo11n", exist_ok=True,
            verbose=False)
v = YOLO({str(work / "ultra" / "yolo11n" / "weights" / "best.pt")!r}).val(data={str(data)!r}, imgsz={a.img}, batch=1,
        device={a.device!r}, plots=False, verbose=False, conf=0.25, iou=0.45)
print("SPEED", json.dumps(v.speed))
"""
    env = dict(os.environ, YOLO_OFFLINE="1", ULTRALYTICS_SKIP_REQUIREMENTS_CHECKS="1")
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    res = work / "ultra" / "yolo11n" / "results.csv"
    if p.returncode or not res.is_file():
        return {"run": "ultralytics-yolo11n", "error": (p.stdout + p.stderr)[-1500:]}
    rows = [{k.strip(): v for k, v in r.items()} for r in csv.DictReader(res.open())]
    last = rows[-1]
    t = [float(r["time"]) for r in rows]
    speed = json.loads(p.stdout.split("SPEED", 1)[1].strip().splitlines()[0]) if "SPEED" in p.stdout else {}
    return {
        "run": "ultralytics-yolo11n",
        "cfg": "yolo11n.yaml (ultralytics)",
        "P": float(last["metrics/precision(B)"]),
        "R": float(last["metrics/recall(B)"]),
        "mAP50": float(last["metrics/mAP50(B)"]),
        "mAP50-95": float(last["metrics/mAP50-95(B)"]),
        "train_img_s": round(a.n_train * (len(t) - 1) / max(t[-1] - t[0], 1e-9), 1) if len(t) > 1 else None,
        "wall_s": round(wall, 1),
        "nms": True,
        "latency_ms": round(speed.get("inference", 0) + speed.get("postprocess", 0), 2) if speed else None,
        "post_ms": round(speed.get("postprocess", 0), 2) if speed else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--n-train", type=int, default=800)
    ap.add_argument("--n-val", type=int, default=200)
    ap.add_argument("--img", type=int, default=320)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--device", default="0")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--which", default="yolov5n,yolov5nu,yolo11n,yolo11n-e2e,ultralytics")
    ap.add_argument("--work", default="bench_heads_work")
    ap.add_argument("--out", default=None, help="also append the JSON lines to this file")
    a = ap.parse_args()
    from modyolo.data.synthetic import make_shapes_dataset

    work = Path(a.work).resolve()
    data = make_shapes_dataset(work / "shapes", n_train=a.n_train, n_val=a.n_val, seed=0)
    results = []
    for name in a.which.split(","):
        r = ultralytics_run(data, work, a) if name == "ultralytics" else modyolo_run(name, MODYOLO[name], data, work, a)
        results.append(r)
        line = json.dumps(r)
        print(line, flush=True)
        if a.out:
            with open(a.out, "a", encoding="utf-8") as f:
                f.write(line + "\n")
    print("| run | P | R | mAP50 | mAP50-95 | train img/s | latency ms (post ms) | NMS |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        if "error" in r:
            print(f"| {r['run']} | error | | | | | | |")
            continue
        print(
            f"| {r['run']} | {r['P']:.3f} | {r['R']:.3f} | {r['mAP50']:.3f} | {r['mAP50-95']:.3f} | "
            f"{r['train_img_s']} | {r['latency_ms']} ({r['post_ms']}) | {'yes' if r['nms'] else 'no'} |"
        )


if __name__ == "__main__":
    main()
