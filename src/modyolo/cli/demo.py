"""``modyolo demo``: the flags, then :mod:`modyolo.tools.demo`, which says what it does."""

from __future__ import annotations

import argparse
import os
import time

from modyolo.tools.demo import _load, _seed_settings, build_hyp, build_variants, load_demo_config


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, help="demo settings YAML (default: the shipped cfg/demo.yaml)")
    p.add_argument("--epochs", type=int, default=None, help="override the config's epochs")
    p.add_argument("--img", "--imgsz", dest="imgsz", type=int, default=None, help="override the image size")
    p.add_argument("--project", default=None)
    p.add_argument("--name", default=None)
    p.add_argument("--quiet", action="store_true", help="no per-batch progress bars")


def run(args: argparse.Namespace) -> int:
    from modyolo.data.dataset_yaml import load_data_config
    from modyolo.tools.compare import compare
    from modyolo.tools.latency import LatencyProtocol

    t0 = time.time()
    cfg = load_demo_config(args.config)
    train = dict(cfg.get("train") or {})
    if args.epochs is not None:
        train["epochs"] = args.epochs
    if args.imgsz is not None:
        train["imgsz"] = args.imgsz
    train["hyp"] = build_hyp(cfg)
    models, names = build_variants(cfg)
    print(
        f"modyolo demo: {', '.join(names)} on the embedded '{cfg.get('data', 'shapes')}' dataset, "
        f"{train.get('epochs')} epochs at {train.get('imgsz')} px (settings: {cfg['_path']})"
    )
    print(f"step 1/3: dataset ({os.cpu_count()} CPU cores here)")
    data = load_data_config(cfg.get("data", "shapes"))
    print(f"  {data.source}")
    print("step 2/3: train, validate, export and time each variant")
    lat = cfg.get("latency") or {}
    protocol = LatencyProtocol(
        imgsz=int(train.get("imgsz", 640)),
        warmup=int(lat.get("warmup", 10)),
        runs=int(lat.get("runs", 30)),
        layout=str(lat.get("layout", "auto")),
        threads=int(lat.get("threads", 0)),
    )
    result = compare(
        models,
        data=str(data.source),
        train=train,
        protocol=protocol,
        project=args.project or cfg.get("project", "runs/compare"),
        name=args.name or cfg.get("name", "demo"),
        samples=int(cfg.get("samples", 4)),
        names=names,
        verbose=not args.quiet,
        title="modyolo demo: YOLOv5n vs MobileNetV2 vs ResNet18 backbones",
        **_seed_settings(cfg),
    )
    minutes = (time.time() - t0) / 60
    print(f"step 3/3: report written\n\nmodyolo demo finished in {minutes:.1f} min (load average {_load()}).")
    print(f"report: {result.files.get('html', '(not written, see errors.log)')}")
    print(f"table:  {result.files['md']}  {result.files['csv']}")
    return 0 if all(r.status == "ok" for r in result.results) else 1
