"""``modyolo detect``: run a detector on images, folders, globs, ``.txt`` lists or videos.

Flags and printing only; the run (what is written to ``runs/detect/exp*``) is
:func:`modyolo.inference.detect_run.run_detect`. One line per image
(``image 3/10 path: 2 circle, 1 square, 12.3ms``), a progress bar over the files on a terminal,
then the speed and where the results went.
"""

from __future__ import annotations

import argparse
import dataclasses


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", required=True, help="checkpoint .pt, model .yaml, or exported .onnx/.torchscript")
    p.add_argument("--cfg", default=None, help="model YAML, only for a bare state_dict in --weights")
    p.add_argument("--source", required=True, help="image, folder, glob, .txt list of paths, or video file")
    p.add_argument(
        "--img", "--imgsz", "--img-size", dest="imgsz", type=int, default=640, help="inference size (pixels)"
    )
    p.add_argument("--conf-thres", type=float, default=0.25)
    p.add_argument("--iou-thres", type=float, default=0.45)
    p.add_argument("--max-det", type=int, default=1000)
    p.add_argument("--device", default="cpu", help="cpu, 0, cuda:1, '' (auto)")
    p.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "fp32", "bf16"),
        help=".pt models: auto = bf16 + channels_last on CPUs with native bf16, else fp32",
    )
    p.add_argument("--classes", type=int, nargs="+", help="keep only these class ids, e.g. --classes 0 2")
    p.add_argument("--agnostic-nms", action="store_true", help="suppress across classes")
    p.add_argument("--augment", action="store_true", help="test-time augmentation (flip + 2 scales)")
    p.add_argument("--save-txt", action="store_true", help="write YOLO txt labels")
    p.add_argument("--save-conf", action="store_true", help="add confidences to --save-txt rows")
    p.add_argument("--save-crop", action="store_true", help="save each detection's crop")
    p.add_argument("--nosave", action="store_true", help="do not write annotated images/videos")
    p.add_argument("--line-thickness", type=int, default=3, help="box line width (pixels)")
    p.add_argument("--hide-labels", action="store_true")
    p.add_argument("--hide-conf", action="store_true")
    p.add_argument("--vid-stride", type=int, default=1, help="use every N-th video frame")
    p.add_argument("--project", default="runs/detect")
    p.add_argument("--name", default="exp")
    p.add_argument("--exist-ok", action="store_true", help="reuse project/name instead of incrementing")


def run(args: argparse.Namespace) -> int:
    from modyolo.inference.detect_run import DetectOptions, run_detect

    opts = DetectOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(DetectOptions)})
    summary = run_detect(opts)
    for line in summary.lines():
        print(line)
    return 0 if summary.n_done else 1
