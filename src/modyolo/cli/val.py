"""``modyolo val``: P, R, mAP50, mAP50-95 of weights on a dataset split, with yolov5's flags.

Prints the per-class table and the speed split (pre-process, inference, NMS ms per image);
``--save-txt`` writes YOLO txt per image to ``runs/val/exp*/labels``, ``--save-json`` COCO-format
detections (image ids and category ids as ``modyolo.data.formats.coco.yolo_to_coco`` numbers
them), ``--coco-eval`` prints pycocotools' 12 numbers, ``--plots`` the curves, confusion matrix
and labelled images. When labels exist but the metrics are 0 the zero-metric diagnosis runs.
"""

from __future__ import annotations

import argparse

from modyolo.inference.val_run import validate_model


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", required=True, help="checkpoint .pt, model .yaml, or exported .onnx/.torchscript")
    p.add_argument("--cfg", default=None, help="model YAML, only for a bare state_dict in --weights")
    p.add_argument("--data", default="shapes", help="data YAML, or 'shapes' for the demo dataset")
    p.add_argument(
        "--img", "--imgsz", "--img-size", dest="imgsz", type=int, default=640, help="inference size (pixels)"
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--conf-thres", type=float, default=0.001)
    p.add_argument("--iou-thres", type=float, default=0.6)
    p.add_argument("--max-det", type=int, default=300)
    p.add_argument(
        "--task",
        default="val",
        choices=("val", "test", "speed"),
        help="val/test: that split; speed: timing at conf 0.25, iou 0.45, no json or plots",
    )
    p.add_argument("--device", default="cpu", help="cpu, 0, cuda:1, '' (auto)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--single-cls", action="store_true", help="treat every class as one")
    p.add_argument("--augment", action="store_true", help="test-time augmentation (flip + 2 scales)")
    p.add_argument("--verbose", action="store_true", help="per-class table even for many classes")
    p.add_argument("--save-txt", action="store_true", help="write YOLO txt per image to <run>/labels")
    p.add_argument("--save-conf", action="store_true", help="add confidences to --save-txt rows")
    p.add_argument("--save-json", action="store_true", help="write COCO-format detections JSON")
    p.add_argument("--coco-eval", action="store_true", help="run pycocotools on the detections (implies --save-json)")
    p.add_argument("--project", default="runs/val")
    p.add_argument("--name", default="exp")
    p.add_argument("--exist-ok", action="store_true", help="reuse project/name instead of incrementing")
    p.add_argument(
        "--plots", action=argparse.BooleanOptionalAction, default=True, help="save plots (--no-plots to skip)"
    )
    p.add_argument("--no-diagnose", dest="diagnose", action="store_false", help="skip the zero-metric diagnosis")
    p.add_argument(
        "--rect",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="rectangular batches (default for .pt and dynamic exports; their shapes depend on "
        "--batch-size). --no-rect letterboxes every image to a square --img, as a fixed-shape export "
        "is validated: the way to compare a .pt with its .onnx number for number",
    )


def run(args: argparse.Namespace) -> int:
    from modyolo.inference.predictor import load_model_for_cli

    model, names, meta = load_model_for_cli(args.weights, device=args.device, cfg=args.cfg)
    kwargs = {
        k: getattr(args, k)
        for k in (
            "data",
            "imgsz",
            "batch_size",
            "conf_thres",
            "iou_thres",
            "max_det",
            "task",
            "device",
            "workers",
            "single_cls",
            "augment",
            "verbose",
            "save_txt",
            "save_conf",
            "save_json",
            "coco_eval",
            "project",
            "name",
            "exist_ok",
            "plots",
            "diagnose",
            "cfg",
            "rect",
        )
    }
    validate_model(model, names, meta, **kwargs)
    return 0
