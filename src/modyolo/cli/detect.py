"""``modyolo detect``: run a detector on images, folders, globs, ``.txt`` lists or videos.

Writes to ``runs/detect/exp*``: annotated images (same file name) or videos (``<stem>.mp4``, or
``.avi`` with MJPG for ``.avi`` sources), YOLO txt labels (``labels/<stem>.txt``, ``<stem>_<frame>``
for video frames) and, with ``--save-crop``, ``crops/<class>/<stem>.jpg``. One log line per image
(``image 3/10 path: 2 circle, 1 square, 12.3ms``) and a progress bar over the files.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

LOGGER = logging.getLogger("modyolo.eval.detect")


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


class VideoSink:
    """Writes annotated frames of one source video; opened lazily at the first frame's size."""

    def __init__(self, dest_dir: Path, source: str, fps: float) -> None:
        stem, suffix = Path(source).stem, Path(source).suffix.lower()
        # MJPG in .avi is always available in OpenCV builds; mp4v for everything else, as yolov5
        self.path = dest_dir / (f"{stem}.avi" if suffix == ".avi" else f"{stem}.mp4")
        self.fourcc = "MJPG" if suffix == ".avi" else "mp4v"
        self.fps = fps if fps and fps > 0 else 30.0
        self.writer = None

    def write(self, frame: np.ndarray) -> None:
        import cv2

        if self.writer is None:
            h, w = frame.shape[:2]
            self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, (w, h))
            if not self.writer.isOpened():
                raise OSError(
                    f"cannot open a {self.fourcc} video writer for {self.path}; use --nosave or "
                    "convert the source to images"
                )
        self.writer.write(frame)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None


def _video_fps(path: str) -> float:
    import cv2

    cap = cv2.VideoCapture(path)
    fps = cap.get(cv2.CAP_PROP_FPS) if cap.isOpened() else 0.0
    cap.release()
    return float(fps or 0.0)


def run(args: argparse.Namespace) -> int:
    import cv2

    from modyolo.inference.predictor import check_imgsz, load_model_for_cli, predict_image, select_device
    from modyolo.inference.results import Result
    from modyolo.inference.sources import iter_source, list_sources
    from modyolo.logs import attach_run_log
    from modyolo.paths import increment_path

    device = select_device(args.device)
    model, names, meta = load_model_for_cli(args.weights, device=device, cfg=args.cfg)
    if meta["format"] != "backend":  # eager PyTorch: the precision/layout that pays here
        from modyolo.deploy.fast_torch import fast_model

        model = fast_model(model, args.precision, device)
    imgsz = check_imgsz(args.imgsz, meta["stride"]) if meta["dynamic"] else tuple(meta["imgsz"])
    files = list_sources(args.source)  # fail fast, before a run folder is made, when nothing matches
    save_dir = increment_path(Path(args.project) / args.name, exist_ok=args.exist_ok)
    attach_run_log(save_dir)
    if args.save_txt:
        (save_dir / "labels").mkdir(parents=True, exist_ok=True)
    sinks: dict[str, VideoSink] = {}
    totals = np.zeros(3)
    n_done, n_bad = 0, 0
    bar = tqdm(total=len(files), unit="file", disable=not sys.stderr.isatty())
    last_index = 0
    try:
        for frame in iter_source(files, vid_stride=args.vid_stride):
            if frame.index != last_index:
                bar.update(frame.index - last_index)
                last_index = frame.index
            if frame.image is None:
                n_bad += 1
                LOGGER.warning("%s: skipped, %s", frame.describe(), frame.error)
                continue
            det, speed = predict_image(
                model,
                frame.image,
                imgsz=imgsz,
                stride=meta["stride"],
                device=device,
                conf=args.conf_thres,
                iou=args.iou_thres,
                classes=args.classes,
                agnostic=args.agnostic_nms,
                max_det=args.max_det,
                auto=meta["dynamic"],
                augment=args.augment,
            )
            result = Result.from_detections(det, frame.path, frame.image, frame.image.shape[:2], names, speed)
            totals += (speed["preprocess"], speed["inference"], speed["nms"])
            n_done += 1
            stem = Path(frame.path).stem if frame.kind != "array" else frame.path
            txt_stem = f"{stem}_{frame.frame}" if frame.kind == "video" else stem
            if args.save_txt:
                result.save_txt(save_dir / "labels" / f"{txt_stem}.txt", args.save_conf)
            if args.save_crop:
                result.save_crops(save_dir / "crops", txt_stem)
            if not args.nosave:
                annotated = result.plot(args.line_thickness, args.hide_labels, args.hide_conf)
                if frame.kind == "video":
                    if frame.path not in sinks:
                        sinks[frame.path] = VideoSink(save_dir, frame.path, _video_fps(frame.path))
                    sinks[frame.path].write(annotated)
                else:
                    dest = save_dir / Path(frame.path).name
                    if not cv2.imwrite(str(dest), annotated):
                        dest = dest.with_suffix(".jpg")  # a source format OpenCV cannot write (e.g. .gif)
                        cv2.imwrite(str(dest), annotated)
            tqdm.write(f"{frame.describe()}: {result.summary()}, {speed['inference']:.1f}ms")
    finally:
        bar.close()
        for sink in sinks.values():
            sink.close()
    if n_done:
        t = tuple(totals / n_done)
        print(
            f"Speed: {t[0]:.1f}ms pre-process, {t[1]:.1f}ms inference, {t[2]:.1f}ms NMS per image "
            f"(--img {imgsz if isinstance(imgsz, int) else 'x'.join(map(str, imgsz))})"
        )
    if n_bad:
        LOGGER.warning("%d input(s) could not be read and were skipped (listed above)", n_bad)
    saved = []
    if args.save_txt:
        saved.append(f"{len(list((save_dir / 'labels').glob('*.txt')))} labels saved to {save_dir / 'labels'}")
    print(f"Results saved to {save_dir}" + (f" ({'; '.join(saved)})" if saved else ""))
    return 0 if n_done else 1
