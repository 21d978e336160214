"""``modyolo export``: weights -> ONNX / TorchScript / OpenVINO files with metadata, checked against PyTorch.

modyolo export --weights runs/train/exp/weights/best.pt --include onnx torchscript openvino --img 640
modyolo export --weights best.pt --include onnx openvino --nms          # detections out, no Python NMS
modyolo export --weights best.pt --int8 --data my.yaml --fraction 0.5   # + OpenVINO INT8, checked by mAP
"""

from __future__ import annotations

import argparse

from modyolo.deploy.export import FORMATS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", required=True, help="modyolo checkpoint (.pt) to export")
    parser.add_argument("--cfg", default=None, help="model YAML, only for a bare state_dict .pt")
    parser.add_argument(
        "--include", nargs="+", default=["onnx"], choices=sorted(FORMATS), help="formats to write (default: onnx)"
    )
    parser.add_argument(
        "--img",
        "--imgsz",
        "--img-size",
        dest="imgsz",
        nargs="+",
        type=int,
        default=[640],
        help="input size: one value (square) or H W; multiples of the model stride",
    )
    parser.add_argument("--batch-size", type=int, default=1, help="fixed batch size (default 1)")
    parser.add_argument("--dynamic", action="store_true", help="dynamic batch, height and width")
    parser.add_argument("--simplify", action="store_true", help="simplify the ONNX graph with onnxslim")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17; 18 with --dynamo)")
    parser.add_argument(
        "--dynamo",
        action="store_true",
        help="use torch.onnx's dynamo exporter (slower; needs onnxscript) instead of the TorchScript-based one",
    )
    parser.add_argument(
        "--nms",
        action="store_true",
        help="end the ONNX / OpenVINO graph in class-aware NMS: outputs detections[B,max_det,6] "
        "and num_dets[B]; conf/iou thresholds are graph inputs",
    )
    parser.add_argument(
        "--agnostic-nms",
        action="store_true",
        help="with --nms: suppress across classes (what val --single-cls and detect --agnostic-nms need; "
        "a one-class model is agnostic either way)",
    )
    parser.add_argument("--max-det", type=int, default=300, help="with --nms: detections per image (default 300)")
    parser.add_argument(
        "--int8",
        action="store_true",
        help="also write an OpenVINO INT8 model (<stem>_int8.xml), calibrated on --data's train "
        "images and validated beside the float model on its val split",
    )
    parser.add_argument("--data", default=None, help="with --int8: data YAML for calibration and the mAP check")
    parser.add_argument(
        "--fraction",
        type=float,
        default=1.0,
        help="with --int8: fraction of the train images used for calibration (at most 300)",
    )
    parser.add_argument(
        "--int8-max-drop",
        type=float,
        default=1.0,
        help="with --int8: refuse the INT8 model when mAP50-95 drops by more than this many points (default 1.0)",
    )
    parser.add_argument(
        "--int8-allow-drop",
        action="store_true",
        help="with --int8: keep the INT8 model despite a larger drop, with a warning",
    )
    parser.add_argument("--workers", type=int, default=2, help="with --int8: data loader workers")
    parser.add_argument("--out-dir", default=None, help="output folder (default: next to the weights)")
    parser.add_argument(
        "--no-verify", action="store_true", help="skip running the exported files against PyTorch after writing them"
    )


def run(args: argparse.Namespace) -> int:
    from modyolo.deploy.export import export

    if len(args.imgsz) > 2:
        raise ValueError(f"--img takes one size or H W, got {args.imgsz}")
    imgsz = args.imgsz[0] if len(args.imgsz) == 1 else tuple(args.imgsz)
    paths = export(
        args.weights,
        include=args.include,
        imgsz=imgsz,
        batch_size=args.batch_size,
        dynamic=args.dynamic,
        simplify=args.simplify,
        opset=args.opset,
        out_dir=args.out_dir,
        cfg=args.cfg,
        dynamo=args.dynamo,
        verify=not args.no_verify,
        nms=args.nms,
        max_det=args.max_det,
        agnostic_nms=args.agnostic_nms,
        int8=args.int8,
        data=args.data,
        fraction=args.fraction,
        int8_max_drop=args.int8_max_drop,
        int8_allow_drop=args.int8_allow_drop,
        workers=args.workers,
    )
    checked = "" if args.no_verify else ", outputs checked against PyTorch"
    for fmt, path in paths.items():
        size = path.stat().st_size + (path.with_suffix(".bin").stat().st_size if path.suffix == ".xml" else 0)
        note = ", checked by mAP50-95 on the val split" if fmt == "openvino_int8" else checked
        print(f"{fmt}: {path} ({size / 1e6:.1f} MB{note})")
        if fmt == "openvino_int8":
            from modyolo.deploy.backends import read_metadata

            print(f"  {read_metadata(path)['calibration']}")
    first = next(iter(paths.values()))
    print(f"use it: modyolo val --weights {first} --data DATA.yaml | modyolo detect --weights {first} --source IMAGES")
    return 0
