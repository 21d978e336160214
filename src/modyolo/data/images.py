"""Decode image files and resize them for training; the one place pixels enter the pipeline.

Images are BGR uint8 ``[h, w, 3]`` (OpenCV order; the dataset turns them into RGB tensors).
JPEGs without an EXIF rotation are decoded with simplejpeg when it is installed (bundled
libjpeg-turbo, ~10% faster than cv2 and never multithreaded); everything else, and any JPEG
simplejpeg refuses, goes through ``cv2.imread``, which applies EXIF orientation.

Pixel limit: an image over ``MODYOLO_MAX_PIXELS`` (default 100 million, e.g. 10000x10000; a
20000x20000 PNG decodes to 1.2 GB) is refused per file from its header, before decoding
(:func:`check_pixels`); raise the variable to accept larger images.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from collections.abc import Iterator

import cv2
import numpy as np

try:  # optional fast decoder (pip install simplejpeg); cv2 is the fallback
    import simplejpeg
except ImportError:  # pragma: no cover - depends on the environment
    simplejpeg = None

JPEG_SUFFIXES = (".jpg", ".jpeg", ".jpe")
DEFAULT_MAX_PIXELS = 100_000_000
_PIL_LIMIT_LOCK = threading.Lock()  # header_size swaps PIL's global limit; verify reads headers in threads


class ImageTooLarge(ValueError):
    """An image whose header declares more pixels than ``MODYOLO_MAX_PIXELS``."""


def max_pixels() -> int:
    """The per-image pixel limit: ``MODYOLO_MAX_PIXELS`` or :data:`DEFAULT_MAX_PIXELS`."""
    raw = os.environ.get("MODYOLO_MAX_PIXELS", "")
    try:
        return int(float(raw)) if raw else DEFAULT_MAX_PIXELS
    except ValueError:
        raise ValueError(f"MODYOLO_MAX_PIXELS={raw!r} is not a number; unset it or give e.g. 4e8") from None


PIL_WARN_PIXELS = 89_478_485  # PIL's default MAX_IMAGE_PIXELS: it warns above, and refuses above twice that


@contextlib.contextmanager
def pil_limit_lifted() -> Iterator[None]:
    """PIL's own decompression-bomb limit off (ours, :func:`check_pixels`, has been applied already)."""
    from PIL import Image

    with _PIL_LIMIT_LOCK:
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = limit


def header_size(path: str) -> tuple[int, int] | None:
    """(w, h) from the file's header without decoding the pixels, or None when PIL cannot read it."""
    from PIL import Image

    with pil_limit_lifted():  # our own limit applies to the size read here, not PIL's
        try:
            with Image.open(path) as im:
                return im.size
        except Exception:  # noqa: BLE001 - not an image PIL knows: the decoder reports it
            return None


def check_pixels(path: str, size: tuple[int, int] | None = None) -> None:
    """Raise ImageTooLarge when the image (``size`` = (w, h), read from the header if None) is over the limit."""
    size = size or header_size(path)
    limit = max_pixels()
    if size is not None and size[0] * size[1] > limit:
        raise ImageTooLarge(
            f"{size[0]}x{size[1]} = {size[0] * size[1]:,} pixels is over the limit of {limit:,}; "
            "resize it, or raise MODYOLO_MAX_PIXELS to accept it"
        )


def decode_jpeg(buf: bytes | np.ndarray) -> np.ndarray:
    """JPEG bytes -> BGR uint8 ``[h, w, 3]`` (no EXIF handling: callers store upright images)."""
    if simplejpeg is not None:
        try:
            return simplejpeg.decode_jpeg(buf, colorspace="BGR")
        except ValueError:  # e.g. CMYK or lossless JPEG: let libjpeg via OpenCV try
            pass
    img = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError("cannot decode JPEG bytes")
    return img


def encode_jpeg(img: np.ndarray, quality: int = 95) -> bytes:
    """BGR uint8 ``[h, w, 3]`` -> JPEG bytes (4:4:4 with simplejpeg: no chroma blur of small objects)."""
    if simplejpeg is not None:
        return simplejpeg.encode_jpeg(
            np.ascontiguousarray(img), quality=quality, colorspace="BGR", colorsubsampling="444"
        )
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def read_image(path: str, exif_rotated: bool = False) -> np.ndarray:
    """Decode an image file to BGR uint8 ``[h, w, 3]``, EXIF rotation applied.

    Raises OSError naming the file when it cannot be decoded (it passed verification, so this
    means it changed on disk since).
    """
    if simplejpeg is not None and not exif_rotated and path.lower().endswith(JPEG_SUFFIXES):
        try:
            with open(path, "rb") as f:
                return decode_jpeg(f.read())
        except ValueError:
            pass
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise OSError(f"cannot decode image {path}; it may have changed since the dataset was verified")
    return img


def resized_shape(h0: int, w0: int, img_size: int) -> tuple[int, int]:
    """(h, w) after scaling the long side to ``img_size`` (yolov5's load_image rounding)."""
    r = img_size / max(h0, w0)
    if r == 1:
        return h0, w0
    return min(math.ceil(h0 * r), img_size), min(math.ceil(w0 * r), img_size)


def resize_long_side(img: np.ndarray, img_size: int, augment: bool) -> np.ndarray:
    """Scale so the long side is ``img_size`` (aspect kept).

    Linear interpolation when augmenting or enlarging (fast), area when shrinking for
    validation (no aliasing), as yolov5 does.
    """
    h0, w0 = img.shape[:2]
    h, w = resized_shape(h0, w0, img_size)
    if (h, w) == (h0, w0):
        return img
    interp = cv2.INTER_LINEAR if (augment or h > h0) else cv2.INTER_AREA
    return cv2.resize(img, (w, h), interpolation=interp)
