"""One detection run: a source (images, folders, globs, ``.txt`` lists, videos) through a model
into ``runs/detect/exp*``; what ``modyolo detect`` calls.

Writes annotated images (same file name) or videos (``<stem>.mp4``, or ``.avi`` with MJPG for
``.avi`` sources), YOLO txt labels (``labels/<stem>.txt``, ``<stem>_<frame>`` for video frames)
and, with ``save_crop``, ``crops/<class>/<stem>.jpg``. One line per image
(``image 3/10 path: 2 circle, 1 square, 12.3ms``) goes to ``echo``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

LOGGER = logging.getLogger("modyolo.eval.detect")  # the name detect's warnings have always used


@dataclass
class DetectOptions:
    """The settings of one run; field names are ``modyolo detect``'s flag destinations."""

    weights: str
    source: str
    cfg: str | None = None
    imgsz: int = 640
    conf_thres: float = 0.25
    iou_thres: float = 0.45
    max_det: int = 1000
    device: str = "cpu"
    precision: str = "auto"  # .pt models: auto | fp32 | bf16 (see modyolo.deploy.fast_torch)
    classes: list[int] | None = None
    agnostic_nms: bool = False
    augment: bool = False
    save_txt: bool = False
    save_conf: bool = False
    save_crop: bool = False
    nosave: bool = False
    line_thickness: int = 3
    hide_labels: bool = False
    hide_conf: bool = False
    vid_stride: int = 1
    project: str = "runs/detect"
    name: str = "exp"
    exist_ok: bool = False


@dataclass
class DetectSummary:
    """What a run did. ``speed``: mean (pre-process, inference, NMS) ms per image, None if no image ran."""

    save_dir: Path
    n_done: int
    n_bad: int
    imgsz: int | tuple[int, ...]
    speed: tuple[float, float, float] | None
    n_labels: int | None  # label files written (save_txt), else None

    def lines(self) -> list[str]:
        """The closing report ``modyolo detect`` prints."""
        out = []
        if self.speed is not None:
            t, size = self.speed, self.imgsz
            out.append(
                f"Speed: {t[0]:.1f}ms pre-process, {t[1]:.1f}ms inference, {t[2]:.1f}ms NMS per image "
                f"(--img {size if isinstance(size, int) else 'x'.join(map(str, size))})"
            )
        saved = f" ({self.n_labels} labels saved to {self.save_dir / 'labels'})" if self.n_labels is not None else ""
        out.append(f"Results saved to {self.save_dir}{saved}")
        return out


class VideoSink:
    """Writes annotated frames of one source video; opened lazily at the first frame's size."""

    def __init__(self, dest_dir: Path, source: str, fps: float) -> None:
        stem, suffix = Path(source).stem, Path(source).suffix.lower()
        # MJPG in .avi is always available in OpenCV builds; mp4v for everything else, as yolov5
        self.path = dest_dir / (f"{stem}.avi" if suffix == ".avi" else f"{stem}.mp4")
        self.fourcc = "MJPG" if suffix == ".avi" else "mp4v"
        self.fps = fps if fps and fps > 0 else 30.0
        self.writer: Any = None  # a cv2.VideoWriter once the first frame gives the size

    def write(self, frame: np.ndarray) -> None:
        import cv2

        if self.writer is None:
            h, w = frame.shape[:2]
            self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter.fourcc(*self.fourcc), self.fps, (w, h))
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


def run_detect(opts: DetectOptions, echo: Callable[[str], object] = tqdm.write) -> DetectSummary:
    """Load ``opts.weights``, detect on every frame of ``opts.source``, save what ``opts`` asks.

    echo: receives the one-line report of each image (default: above the progress bar, which
    shows only on a terminal). Unreadable inputs are skipped with a warning, never a crash.
    """
    from modyolo.inference.predictor import check_imgsz, load_model_for_cli, predict_image, select_device
    from modyolo.inference.results import Result
    from modyolo.inference.sources import iter_source, list_sources
    from modyolo.logs import attach_run_log
    from modyolo.paths import increment_path

    device = select_device(opts.device)
    model, names, meta = load_model_for_cli(opts.weights, device=device, cfg=opts.cfg)
    if meta["format"] != "backend":  # eager PyTorch: the precision/layout that pays here
        from modyolo.deploy.fast_torch import fast_model

        model = fast_model(model, opts.precision, device)
    imgsz = check_imgsz(opts.imgsz, meta["stride"]) if meta["dynamic"] else tuple(meta["imgsz"])
    files = list_sources(opts.source)  # fail fast, before a run folder is made, when nothing matches
    save_dir = increment_path(Path(opts.project) / opts.name, exist_ok=opts.exist_ok)
    attach_run_log(save_dir)
    if opts.save_txt:
        (save_dir / "labels").mkdir(parents=True, exist_ok=True)
    sinks: dict[str, VideoSink] = {}
    totals = np.zeros(3)
    n_done, n_bad = 0, 0
    bar = tqdm(total=len(files), unit="file", disable=not sys.stderr.isatty())
    last_index = 0
    try:
        for frame in iter_source(files, vid_stride=opts.vid_stride):
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
                conf=opts.conf_thres,
                iou=opts.iou_thres,
                classes=opts.classes,
                agnostic=opts.agnostic_nms,
                max_det=opts.max_det,
                auto=meta["dynamic"],
                augment=opts.augment,
            )
            result = Result.from_detections(det, frame.path, frame.image, frame.image.shape[:2], names, speed)
            totals += (speed["preprocess"], speed["inference"], speed["nms"])
            n_done += 1
            _save(opts, result, frame, save_dir, sinks)
            echo(f"{frame.describe()}: {result.summary()}, {speed['inference']:.1f}ms")
    finally:
        bar.close()
        for sink in sinks.values():
            sink.close()
    if n_bad:
        LOGGER.warning("%d input(s) could not be read and were skipped (listed above)", n_bad)
    mean = totals / max(n_done, 1)
    return DetectSummary(
        save_dir=save_dir,
        n_done=n_done,
        n_bad=n_bad,
        imgsz=imgsz,
        speed=(float(mean[0]), float(mean[1]), float(mean[2])) if n_done else None,
        n_labels=len(list((save_dir / "labels").glob("*.txt"))) if opts.save_txt else None,
    )


def _save(opts: DetectOptions, result, frame, save_dir: Path, sinks: dict[str, VideoSink]) -> None:
    """Write what ``opts`` asks for one frame: txt labels, crops, the annotated image or video frame."""
    import cv2

    stem = Path(frame.path).stem if frame.kind != "array" else frame.path
    txt_stem = f"{stem}_{frame.frame}" if frame.kind == "video" else stem
    if opts.save_txt:
        result.save_txt(save_dir / "labels" / f"{txt_stem}.txt", opts.save_conf)
    if opts.save_crop:
        result.save_crops(save_dir / "crops", txt_stem)
    if opts.nosave:
        return
    annotated = result.plot(opts.line_thickness, opts.hide_labels, opts.hide_conf)
    if frame.kind == "video":
        if frame.path not in sinks:
            sinks[frame.path] = VideoSink(save_dir, frame.path, _video_fps(frame.path))
        sinks[frame.path].write(annotated)
        return
    dest = save_dir / Path(frame.path).name
    if not cv2.imwrite(str(dest), annotated):
        dest = dest.with_suffix(".jpg")  # a source format OpenCV cannot write (e.g. .gif)
        cv2.imwrite(str(dest), annotated)
