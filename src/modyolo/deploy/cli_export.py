"""``modyolo export``: weights -> ONNX / TorchScript files with metadata, checked against PyTorch.

    modyolo export --weights runs/train/exp/weights/best.pt --include onnx torchscript --img 640
"""

from __future__ import annotations

import argparse

from modyolo.deploy.export import FORMATS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", required=True, help="modyolo checkpoint (.pt) to export")
    parser.add_argument("--cfg", default=None, help="model YAML, only for a bare state_dict .pt")
    parser.add_argument("--include", nargs="+", default=["onnx"], choices=sorted(FORMATS),
                        help="formats to write (default: onnx)")
    parser.add_argument("--img", "--imgsz", "--img-size", dest="imgsz", nargs="+", type=int, default=[640],
                        help="input size: one value (square) or H W; multiples of the model stride")
    parser.add_argument("--batch-size", type=int, default=1, help="fixed batch size (default 1)")
    parser.add_argument("--dynamic", action="store_true", help="dynamic batch, height and width")
    parser.add_argument("--simplify", action="store_true", help="simplify the ONNX graph with onnxslim")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17; 18 with --dynamo)")
    parser.add_argument("--dynamo", action="store_true",
                        help="use torch.onnx's dynamo exporter (slower; needs onnxscript) instead of the "
                             "TorchScript-based one")
    parser.add_argument("--nms", action="store_true", help="append NMS to the graph (not available yet)")
    parser.add_argument("--out-dir", default=None, help="output folder (default: next to the weights)")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip running the exported files against PyTorch after writing them")


def run(args: argparse.Namespace) -> int:
    from modyolo.deploy.export import export

    if len(args.imgsz) > 2:
        raise ValueError(f"--img takes one size or H W, got {args.imgsz}")
    if args.nms:
        raise ValueError("--nms: an exported NMS graph is not available yet; export without it and NMS runs "
                         "after the model in `modyolo val` / `modyolo detect`")
    imgsz = args.imgsz[0] if len(args.imgsz) == 1 else tuple(args.imgsz)
    paths = export(args.weights, include=args.include, imgsz=imgsz, batch_size=args.batch_size,
                   dynamic=args.dynamic, simplify=args.simplify, opset=args.opset, out_dir=args.out_dir,
                   cfg=args.cfg, dynamo=args.dynamo, verify=not args.no_verify)
    checked = "" if args.no_verify else ", outputs checked against PyTorch"
    for fmt, path in paths.items():
        print(f"{fmt}: {path} ({path.stat().st_size / 1e6:.1f} MB{checked})")
    first = next(iter(paths.values()))
    print(f"use it: modyolo val --weights {first} --data DATA.yaml | modyolo detect --weights {first} --source IMAGES")
    return 0
