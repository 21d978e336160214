"""Inputs for ``modyolo detect`` and ``Detector.predict``: images, folders, globs, lists, videos.

``iter_source(source)`` yields ``Frame`` records one at a time (a video is never loaded whole).
A frame that cannot be read still comes out, with ``image=None`` and ``error`` saying why, so the
caller reports it per file and goes on: bad input is never silently dropped and never a crash.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modyolo.data.formats.yolo import IMG_FORMATS

VID_FORMATS = ("asf", "avi", "gif", "m4v", "mkv", "mov", "mp4", "mpeg", "mpg", "ts", "wmv", "webm")


@dataclass
class Frame:
    """One input picture.

    ``image``: BGR ``uint8 [h, w, 3]`` or None when unreadable (then ``error`` says why);
    ``index``/``total``: position among the listed files (1-based); for videos ``frame`` is the
    1-based frame number and ``frames`` the frame count the container reports (0 if unknown).
    """

    path: str
    image: np.ndarray | None
    index: int
    total: int
    kind: str = "image"  # "image" | "video" | "array"
    frame: int = 0
    frames: int = 0
    error: str = ""

    def describe(self) -> str:
        """The log-line prefix yolov5 prints: ``image 3/10 path`` or ``video 1/1 (5/30) path``."""
        if self.kind == "video":
            return f"video {self.index}/{self.total} ({self.frame}/{self.frames}) {self.path}"
        return f"image {self.index}/{self.total} {self.path}"


def _suffix(path: str) -> str:
    return path.rsplit(".", 1)[-1].lower() if "." in os.path.basename(path) else ""


def _expand_one(item: str, where: str) -> list[str]:
    p = Path(os.path.expanduser(item))
    if any(ch in item for ch in "*?["):
        found = sorted(glob.glob(os.path.expanduser(item), recursive=True))
        if not found:
            raise FileNotFoundError(f"{where}: glob {item!r} matches no file")
        return [f for f in found if os.path.isfile(f)]
    if p.is_dir():
        return sorted(str(f) for f in p.iterdir() if f.is_file() and _suffix(f.name) in IMG_FORMATS + VID_FORMATS)
    if p.is_file() and p.suffix.lower() == ".txt":
        out = []
        for line in p.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                q = Path(os.path.expanduser(line))
                out.append(str(q if q.is_absolute() else (p.parent / q)))  # relative to the list file
        return out
    if p.is_file():
        return [str(p)]
    raise FileNotFoundError(
        f"{where}: {item!r} does not exist; give an image, a folder, a glob, a .txt list of paths or a video file"
    )


def list_sources(source: str | Path | Sequence[str | Path]) -> list[str]:
    """Expand ``source`` to the ordered list of files it names (images and videos).

    A file listed explicitly (directly or in a ``.txt``) is kept even when its suffix is unknown
    or it is missing, so ``iter_source`` can report it instead of ignoring it.
    """
    items = [source] if isinstance(source, (str, Path)) else list(source)
    files: list[str] = []
    for item in items:
        files.extend(_expand_one(str(item), "--source"))
    if not files:
        raise FileNotFoundError(
            f"--source {source}: no images or videos found (image suffixes: "
            f"{', '.join(IMG_FORMATS)}; video: {', '.join(VID_FORMATS)})"
        )
    return files


def _read_image(path: str) -> tuple[np.ndarray | None, str]:
    import cv2

    from modyolo.data.images import ImageTooLarge, check_pixels

    if not os.path.isfile(path):
        return None, "file not found"
    try:
        check_pixels(path)  # a 20000x20000 PNG is refused from its header, not decoded (3 GB)
    except ImageTooLarge as e:
        return None, str(e)
    try:
        img = cv2.imread(path, cv2.IMREAD_COLOR)
    except cv2.error as e:  # some corrupt files make OpenCV raise rather than return None
        return None, f"OpenCV cannot decode it ({e})"
    if img is None:
        return None, "not a readable image (corrupt, truncated or unsupported format)"
    return img, ""


def _iter_video(path: str, index: int, total: int, vid_stride: int) -> Iterator[Frame]:
    import cv2

    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        yield Frame(path, None, index, total, "video", error="cannot open video (unsupported codec or corrupt)")
        return
    frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    n = 0
    try:
        while True:
            ok = cap.grab()
            if not ok:
                break
            n += 1
            if (n - 1) % vid_stride:
                continue
            ok, img = cap.retrieve()
            if not ok or img is None:
                yield Frame(path, None, index, total, "video", n, frames, error=f"frame {n} cannot be decoded")
                continue
            yield Frame(path, img, index, total, "video", n, frames)
    finally:
        cap.release()
    if n == 0:
        yield Frame(path, None, index, total, "video", error="video has no readable frames")


def iter_source(
    source: str | Path | Sequence[str | Path] | np.ndarray | Sequence[np.ndarray], vid_stride: int = 1
) -> Iterator[Frame]:
    """Frames of ``source``: a path (image, folder, glob, ``.txt`` list, video), a list of paths,
    or in-memory BGR ``uint8 [h, w, 3]`` arrays (named ``image0``, ``image1``, ...)."""
    if isinstance(source, np.ndarray):
        source = [source]
    if isinstance(source, (list, tuple)) and source and all(isinstance(s, np.ndarray) for s in source):
        for i, arr in enumerate(source):
            ok = arr.ndim == 3 and arr.shape[2] == 3 and arr.dtype == np.uint8
            err = "" if ok else f"expected a BGR uint8 [h, w, 3] array, got {arr.dtype} {tuple(arr.shape)}"
            yield Frame(f"image{i}", arr if ok else None, i + 1, len(source), "array", error=err)
        return
    files = list_sources(source)  # type: ignore[arg-type]
    for i, path in enumerate(files, 1):
        if _suffix(path) in VID_FORMATS:
            yield from _iter_video(path, i, len(files), vid_stride)
        else:
            img, err = _read_image(path)
            yield Frame(path, img, i, len(files), "image", error=err)
