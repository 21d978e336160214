"""yolov7-tiny vs yolov5n side by side on the shapes set, each with its own recipe (and with modyolo's).

Same data, image size, batch, epochs and seed. ``--recipe own`` (the default): yolov5n trains with
yolov5's scratch-low hyp and SGD, yolov7-tiny with yolov7's hyp.scratch.tiny (paste_in included)
and SGD; each loss follows its head (yolov5's; yolov7's OTA for IDetect). ``--recipe auto``: both
with ``modyolo train``'s default recipe (``--optimizer auto``). Each run is trained by the Trainer
(its steady-state img/s, first epoch excluded); then one ``compare`` over all finished runs
validates them and times every inference format of every run round-robin in one process
(``--format auto``: the fastest valid format is the "best path"). Prints one JSON line and a
Markdown table: P, R, mAP50, mAP50-95, params, GFLOPs@imgsz, train img/s, best-path latency.

    python benchmarks/v7_vs_v5.py --epochs 30 --img 160 --batch 16 --workers 2 --recipe own auto
    python benchmarks/v7_vs_v5.py --epochs 30 --img 320 --batch 32 --device 0
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import torch

MODELS = ("yolov5n.yaml", "yolov7-tiny.yaml")
OWN_HYP = {"yolov5n.yaml": "scratch-low", "yolov7-tiny.yaml": "hyp.scratch.tiny.yaml"}


def _settings(cfg: str, recipe: str) -> dict:
    """The recipe's TrainConfig fields for ``cfg``: yolov5's/yolov7's own hyp with SGD, or modyolo's auto."""
    if recipe == "own":
        return {"hyp": OWN_HYP[cfg], "optimizer": "SGD"}
    return {}  # modyolo train's defaults: the hyp left out, --optimizer auto


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="shapes")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--img", type=int, default=320)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--recipe", nargs="+", choices=("own", "auto"), default=["own"])
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
    trained = {}
    with tempfile.TemporaryDirectory() as tmp:
        project = args.project or tmp
        for recipe in args.recipe:
            for cfg in MODELS:
                name = f"{cfg.split('.')[0]}-{recipe}"
                t0 = time.perf_counter()
                config = TrainConfig.from_dict(
                    dict(
                        data=args.data,
                        cfg=cfg,
                        epochs=args.epochs,
                        imgsz=args.img,
                        batch_size=args.batch,
                        seed=args.seed,
                        device=args.device,
                        workers=args.workers,
                        noplots=True,
                        project=project,
                        name=name,
                        verbose=False,
                        **_settings(cfg, recipe),
                    )
                )
                result = train(config)  # steady-state img/s from the trainer
                trained[name] = (recipe, result, time.perf_counter() - t0)
        # one comparison of every finished run: validation, and all formats timed round-robin
        compared = compare(
            runs=[r.best or r.last for _, r, _ in trained.values()],
            names=list(trained),
            data=args.data,
            train={"imgsz": args.img},
            protocol=protocol,
            project=project,
            name="compare",
            samples=0,
            report=False,
            verbose=False,
        )
        rows = []
        for r in compared.results:
            recipe, result, wall = trained[r.name]
            if r.status != "ok":
                raise SystemExit(f"{r.name}: {r.error}")
            rows.append(
                {
                    "model": r.name,
                    "recipe": recipe,
                    "hyp": _settings(f"{r.name.rsplit('-', 1)[0]}.yaml", recipe).get("hyp", "default (auto)"),
                    "P": r.precision,
                    "R": r.recall,
                    "mAP50": r.map50,
                    "mAP50-95": r.map50_95,
                    "params": r.params,
                    "gflops": r.gflops,
                    "train_img_s": result.train_images_per_s,
                    "latency_ms": r.latency_best.median_ms if r.latency_best else None,
                    "latency_path": r.best_format or r.latency_best_error,
                    "wall_s": wall,
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
        "latency": protocol.describe(),
    }
    print(json.dumps({"meta": meta, "rows": rows}))
    print(
        "\n| model (hyp) | P | R | mAP50 | mAP50-95 | params (M) | GFLOPs@%d | train img/s | latency ms (path) |"
        % args.img
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        latency = f"{r['latency_ms']:.2f} ({r['latency_path']})" if r["latency_ms"] else r["latency_path"]
        print(
            f"| {r['model']} ({r['hyp']}) | {r['P']:.3f} | {r['R']:.3f} | {r['mAP50']:.3f} | {r['mAP50-95']:.3f} | "
            f"{r['params'] / 1e6:.2f} | {r['gflops']:.3f} | {r['train_img_s']:.0f} | {latency} |"
        )


if __name__ == "__main__":
    main()
