"""Image caches: ``ram`` (resized uint8 arrays), ``disk`` (.npy next to the images), ``encoded``
(resized images as compressed bytes in RAM, decoded per sample).

Why ``encoded``: a raw cache holds ~10x the JPEG size (a 640x480 image is 921,600 B raw,
117,218 B as JPEG q95), so it often does not fit; decoding a JPEG costs ~1.2 ms, about 3% of a
CPU training step. Codecs measured on a 2-core x86 CPU: JPEG q95 7.9x
smaller than raw, 1.2 ms decode; WebP q95 9.8x, 4.6 ms; PNG only ~2x and 7.6 ms. So
``encoded`` uses JPEG q95 (4:4:4); ``encoded-png`` is the lossless choice (batches identical to
``ram`` at ~half its memory). An image whose file is already a JPEG of the resized size is
stored as its file bytes, so it loses nothing.

All RAM caches keep one contiguous numpy buffer plus offsets: DataLoader workers forked after
the cache is built read it copy-on-write without copying (no per-image Python objects whose
refcounts would dirty the pages).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from .images import decode_jpeg, encode_jpeg

LOGGER = logging.getLogger("modyolo.data")
CACHE_MODES = ("ram", "disk", "encoded", "encoded-png")
SAFETY = 0.8  # refuse a cache needing more than this fraction of what is available


class CacheTooLarge(ValueError):
    """The cache would not fit in memory or on disk."""


def available_memory() -> int:
    """Bytes of memory available to new allocations (psutil if installed, else /proc/meminfo)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 62  # unknown platform: do not refuse


def gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


class PackedImages:
    """Many images in one uint8 buffer: ``offsets[i]:offsets[i+1]`` holds image i's bytes."""

    def __init__(self, buffer: np.ndarray, offsets: np.ndarray, shapes: np.ndarray) -> None:
        self.buffer, self.offsets, self.shapes = buffer, offsets, shapes  # shapes: int32 [N, 2] (h, w)

    @property
    def nbytes(self) -> int:
        return int(self.buffer.nbytes + self.offsets.nbytes + self.shapes.nbytes)

    def view(self, i: int) -> np.ndarray:
        return self.buffer[self.offsets[i] : self.offsets[i + 1]]


class ImageCache:
    """Base: ``get(i)`` returns the resized BGR image ``[h, w, 3]`` of image i."""

    mode = "none"
    nbytes = 0

    def get(self, i: int) -> np.ndarray:
        raise NotImplementedError


class RamCache(ImageCache):
    """Resized uint8 arrays, preallocated exactly from the verified shapes (no 2x peak)."""

    mode = "ram"

    def __init__(self, shapes_hw: Sequence[tuple[int, int]], load: Callable[[int], np.ndarray], progress) -> None:
        sizes = np.array([h * w * 3 for h, w in shapes_hw], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        buf = np.empty(int(offsets[-1]), np.uint8)
        for i in progress(range(len(sizes))):
            img = load(i)
            if img.shape[:2] != tuple(shapes_hw[i]):
                raise RuntimeError(f"image {i} decoded to {img.shape[:2]}, expected {shapes_hw[i]}")
            buf[offsets[i] : offsets[i + 1]] = img.reshape(-1)
        self.packed = PackedImages(buf, offsets, np.asarray(shapes_hw, np.int32))
        self.nbytes = self.packed.nbytes

    def get(self, i: int) -> np.ndarray:
        h, w = self.packed.shapes[i]
        img = self.packed.view(i).reshape(h, w, 3)
        img.flags.writeable = False  # a view into the shared buffer: in-place augmentation must copy
        return img


class EncodedCache(ImageCache):
    """Resized images as compressed bytes (JPEG q95 or PNG) in one buffer, decoded per sample."""

    def __init__(
        self, shapes_hw: Sequence[tuple[int, int]], encode: Callable[[int], bytes], codec: str, progress
    ) -> None:
        self.mode = "encoded" if codec == "jpeg" else f"encoded-{codec}"
        self.codec = codec
        n = len(shapes_hw)
        chunks = [np.frombuffer(encode(i), np.uint8) for i in progress(range(n))]
        offsets = np.concatenate([[0], np.cumsum([len(c) for c in chunks])]).astype(np.int64)
        buf = np.concatenate(chunks) if chunks else np.zeros(0, np.uint8)
        self.packed = PackedImages(buf, offsets, np.asarray(shapes_hw, np.int32).reshape(n, 2))
        self.nbytes = self.packed.nbytes

    def get(self, i: int) -> np.ndarray:
        data = self.packed.view(i)
        img = decode_jpeg(data) if self.codec == "jpeg" else cv2.imdecode(data, cv2.IMREAD_COLOR)
        h, w = (int(v) for v in self.packed.shapes[i])
        if img.shape[:2] != (h, w):
            # The original file bytes of an image that training enlarges are stored as they are
            # (smaller than the enlarged re-encode, and exact); enlarge after decoding, with
            # the interpolation load_image uses for enlarging.
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
        return img


def encode_image(img: np.ndarray, codec: str) -> bytes:
    if codec == "jpeg":
        return encode_jpeg(img, 95)
    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 1])  # level 1: fast, nearly as small
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


class DiskCache(ImageCache):
    """Resized images as ``<image file>.<h>x<w><interp>.npy`` next to the images.

    The name carries the size and interpolation, so caches for different ``img_size`` or
    train/val coexist and a stale one is never read.
    """

    mode = "disk"

    def __init__(self, npy_files: Sequence[str], load: Callable[[int], np.ndarray], progress) -> None:
        self.files = list(npy_files)
        self.load = load
        total = 0
        for i in progress(range(len(self.files))):
            f = self.files[i]
            if not os.path.isfile(f):
                try:
                    tmp = f"{f}.{os.getpid()}.tmp.npy"
                    np.save(tmp, load(i))
                    os.replace(tmp, f)
                except OSError as e:
                    raise OSError(
                        f"cannot write disk cache file {f} ({e}); use --cache ram/encoded "
                        f"or make the image folder writable"
                    ) from e
            total += os.path.getsize(f)
        self.disk_bytes = total

    def get(self, i: int) -> np.ndarray:
        """The cached image; a damaged or hand-edited .npy is decoded again from the image and rewritten."""
        f = self.files[i]
        try:
            img = np.load(f, allow_pickle=False)
            if img.ndim != 3 or img.dtype != np.uint8:
                raise ValueError(f"holds a {img.dtype} array of shape {img.shape}, not an image")
            return img
        except (OSError, ValueError, EOFError) as e:
            LOGGER.warning("disk cache file %s is damaged (%s); decoding the image again and rewriting it", f, e)
        img = self.load(i)
        tmp = f"{f}.{os.getpid()}.tmp.npy"
        try:
            np.save(tmp, img)
            os.replace(tmp, f)
        except OSError:  # read-only now: serve the decoded image, the warning above repeats next time
            Path(tmp).unlink(missing_ok=True)
        return img


def estimate_bytes(
    mode: str, shapes_hw: Sequence[tuple[int, int]], sample_encode: Callable[[int], bytes] | None
) -> int:
    """Bytes a cache will need: exact for raw modes, extrapolated from <= 16 samples for encoded."""
    raw = np.array([h * w * 3 for h, w in shapes_hw], dtype=np.int64)
    if not mode.startswith("encoded") or sample_encode is None or len(raw) == 0:
        return int(raw.sum())
    idx = np.unique(np.linspace(0, len(raw) - 1, min(16, len(raw))).astype(int))
    ratio = sum(len(sample_encode(int(i))) for i in idx) / max(int(raw[idx].sum()), 1)
    return int(raw.sum() * ratio * 1.1)  # 10% margin: the sample may be easier than the rest


def check_fits(mode: str, need: int, n: int, img_size: int, where: str | None = None) -> None:
    """Raise CacheTooLarge with the numbers and the alternatives when ``need`` does not fit."""
    if mode == "disk":
        free = shutil.disk_usage(where or ".").free
        what = f"free disk space at {where}"
    else:
        free = available_memory()
        what = "available memory"
    if need > SAFETY * free:
        raise CacheTooLarge(
            f"--cache {mode} needs about {gb(need)} for {n} images at {img_size} px but only {gb(free)} "
            f"of {what} ({int(SAFETY * 100)}% usable); use --cache encoded (about 1/8 of ram's size), "
            f"a smaller --img, or no cache"
        )


def build_cache(
    mode: str | None,
    im_files: Sequence[str],
    shapes_hw: Sequence[tuple[int, int]],
    load: Callable[[int], np.ndarray],
    img_size: int,
    interp_tag: str,
    raw_jpeg: Callable[[int], bytes | None] | None = None,
    prefix: str = "",
    progress_bar: bool = True,
) -> ImageCache | None:
    """Build the cache named by ``mode`` (None/"none"/False: no cache).

    ``load(i)`` returns the resized image i; ``shapes_hw[i]`` its (h, w). ``raw_jpeg(i)`` may
    return image i's file bytes when they already are a JPEG of that size (stored as is).
    """
    if mode in (None, False, "", "none"):
        return None
    if mode is True:
        mode = "ram"
    if mode not in CACHE_MODES:
        raise ValueError(f"unknown cache mode '{mode}'; choose one of none, {', '.join(CACHE_MODES)}")
    codec = "png" if mode == "encoded-png" else "jpeg"

    def encode(i: int) -> bytes:
        raw = raw_jpeg(i) if (raw_jpeg is not None and codec == "jpeg") else None
        return raw if raw is not None else encode_image(load(i), codec)

    need = estimate_bytes(mode, shapes_hw, encode if mode.startswith("encoded") else None)
    check_fits(mode, need, len(im_files), img_size, str(Path(im_files[0]).parent) if im_files else None)

    def progress(it):
        if not progress_bar:
            return it
        from tqdm import tqdm

        return tqdm(it, desc=f"{prefix}Caching images ({mode})", leave=False)

    if mode == "ram":
        cache: ImageCache = RamCache(shapes_hw, load, progress)
    elif mode == "disk":
        files = [f"{f}.{h}x{w}{interp_tag}.npy" for f, (h, w) in zip(im_files, shapes_hw)]
        cache = DiskCache(files, load, progress)
        LOGGER.info("%sdisk cache: %s in .npy files next to the images", prefix, gb(cache.disk_bytes))
        return cache
    else:
        cache = EncodedCache(shapes_hw, encode, codec, progress)
    raw = int(sum(h * w * 3 for h, w in shapes_hw))
    LOGGER.info(
        "%s%s cache: %s in RAM for %d images (%.1f%% of raw %s)",
        prefix,
        mode,
        gb(cache.nbytes),
        len(im_files),
        100 * cache.nbytes / max(raw, 1),
        gb(raw),
    )
    return cache
