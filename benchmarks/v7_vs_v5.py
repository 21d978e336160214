"""yolov7-tiny vs yolov5n side by side on the shapes set, each with its own recipe.

Same data, image size, batch, epochs and seed; yolov5n trains with yolov5's scratch-low hyp and
yolov5's loss, yolov7-tiny with yolov7's hyp.scratch.tiny and its OTA loss (chosen by its IDetect
head). Each variant is trained by the Trainer (its steady-state img/s, first epoch excluded),
then validated and timed by ``compare`` on the finished run. Prints one JSON line and a markdown table: P, R, mAP50,
mAP50-95, params, GFLOPs@imgsz, train img/s, and latency on the best inference path (the faster of
fused PyTorch and ONNX Runtime, batch 1).

    python benchmarks/v7_vs_v5.py --epochs 30 --img 320 --batch 32 --device 0
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import torch

VARIANTS = (("yolov5n.yaml", "scratch-low"), ("yolov7-tiny.yaml", "hyp.scratch.tiny.yaml"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="shapes")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--img", type=int, default=320)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--latency-runs", type=int, default=50)
    ap.add_argument("--project", default=None, help="where the runs go (default: a temporary folder)")
    args = ap.parse_args()

    from modyolo.api import train
    from modyolo.data.dataset_yaml import load_data_config
    from modyolo.data.formats.yolo import list_image_files
    from modyolo.engine.config import TrainConfig
    from modyolo.tools.compare import compare
    from modyolo.tools.latency import LatencyProtocol

    n_train = len(list_image_files(load_data_config(args.data).train))
    device = "cpu" if args.device == "cpu" else f"cuda:{args.device}" if args.device.isdigit() else args.device
    protocol = LatencyProtocol(imgsz=args.img, warmup=10, runs=args.latency_runs, device=device)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        project = args.project or tmp
        for cfg, hyp in VARIANTS:
            name = cfg.split(".")[0]
            t0 = time.perf_counter()
            settings = dict(
                data=args.data,
                cfg=cfg,
                epochs=args.epochs,
                imgsz=args.img,
                batch_size=args.batch,
                hyp=hyp,
                seed=args.seed,
                device=args.device,
                workers=args.workers,
                noplots=True,
                project=project,
                name=name,
                verbose=False,
            )
            trained = train(TrainConfig.from_dict(settings))  # steady-state img/s from the trainer
            result = compare(
                runs=[trained.best or trained.last],
                data=args.data,
                train={"imgsz": args.img},
                protocol=protocol,
                project=project,
                name=f"{name}-compare",
                samples=0,
                report=False,
                verbose=False,
            )
            (r,) = result.results
            if r.status != "ok":
                raise SystemExit(f"{cfg}: {r.error}")
            paths = {k: v.median_ms for k, v in (("torch", r.latency_torch), ("onnx", r.latency_onnx)) if v}
            best = min(paths, key=paths.get)
            rows.append(
                {
                    "model": name,
                    "hyp": hyp,
                    "P": r.precision,
                    "R": r.recall,
                    "mAP50": r.map50,
                    "mAP50-95": r.map50_95,
                    "params": r.params,
                    "gflops": r.gflops,
                    "train_img_s": trained.train_images_per_s,
                    "latency_ms": paths[best],
                    "latency_path": best,
                    "wall_s": time.perf_counter() - t0,
                }
            )
    meta = {
        "data": args.data,
        "train_images": n_train,
        "epochs": args.epochs,
        "img": args.img,
        "batch": args.batch,
        "seed": args.seed,
        "device": torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu",
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
    }
    print(json.dumps({"meta": meta, "rows": rows}))
    print(
        "\n| model (hyp) | P | R | mAP50 | mAP50-95 | params (M) | GFLOPs@%d | train img/s | latency ms (path) |"
        % args.img
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} ({r['hyp']}) | {r['P']:.3f} | {r['R']:.3f} | {r['mAP50']:.3f} | {r['mAP50-95']:.3f} | "
            f"{r['params'] / 1e6:.2f} | {r['gflops']:.1f} | {r['train_img_s']:.0f} | "
            f"{r['latency_ms']:.2f} ({r['latency_path']}) |"
        )


if __name__ == "__main__":
    main()
