"""``modyolo profile``: the flags, then :mod:`modyolo.tools.profile`, which says what it does."""

from __future__ import annotations

import argparse

from modyolo.tools.profile import format_per_layer, per_layer_profile


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cfg", required=True, help="model YAML (a path or a shipped name like yolov5s.yaml)")
    parser.add_argument("--img", "--imgsz", type=int, default=640, help="image size for GFLOPs and timing")
    parser.add_argument("--nc", type=int, default=None, help="override the number of classes")
    parser.add_argument("--per-layer", action="store_true", help="time each layer (batch 1, eval mode)")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per layer with --per-layer")
    parser.add_argument("--fuse", action="store_true", help="fold BN into convs before timing")


def run(args: argparse.Namespace) -> int:
    from modyolo.nn.model import DetectionModel

    model = DetectionModel(args.cfg, nc=args.nc)
    model.info(args.img, verbose=True)
    if args.per_layer:
        if args.fuse:
            model.fuse()
        print()
        print(format_per_layer(per_layer_profile(model, args.img, args.runs)))
    return 0
