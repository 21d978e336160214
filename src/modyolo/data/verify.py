"""Verify images and labels once, report per file, and cache the result next to the labels.

Every image is opened and its label file parsed before training, so a truncated JPEG or a
class id >= nc is found up front, reported with the file name, and the image skipped: it never
crashes an epoch and never vanishes silently. Fixable defects are fixed and counted: tiny
coordinate overshoots are clipped, duplicate rows and zero-area boxes dropped.

The result is cached as JSON (plain data, nothing unpickled) at ``<labels dir>.modyolo.cache``, keyed by
a hash of the image and label file names, sizes and mtimes plus ``nc``; a change to any of them
re-scans.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .formats.yolo import img2label_paths, read_label_rows
from .images import PIL_WARN_PIXELS, ImageTooLarge, check_pixels, header_size, pil_limit_lifted

LOGGER = logging.getLogger("modyolo.data")
CACHE_VERSION = 1
OVERSHOOT_TOL = 0.01  # normalised coordinates in [-tol, 1 + tol] are clipped; beyond is an error
MIN_IMAGE_SIDE = 2  # pixels; smaller images cannot hold a box


@dataclass
class ImageRecord:
    """One verified image: ``shape`` is (w, h) after EXIF rotation; ``labels: [n, 5]`` cls,cx,cy,w,h."""

    im_file: str
    shape: tuple[int, int]
    labels: np.ndarray
    exif_rotated: bool = False


@dataclass
class VerifyReport:
    """What a scan found. ``messages`` are per-file ("path: what was wrong/fixed")."""

    records: list[ImageRecord]
    n_found: int = 0
    n_backgrounds: int = 0
    n_missing_labels: int = 0
    n_corrupt: int = 0
    n_fixed: int = 0
    messages: list[str] = field(default_factory=list)
    cache_path: Path | None = None
    from_cache: bool = False

    def summary(self) -> str:
        """E.g. ``800 images, 12 backgrounds (4 without label file), 3 corrupt, 5 labels fixed``."""
        return (
            f"{self.n_found} images, {self.n_backgrounds} backgrounds "
            f"({self.n_missing_labels} without label file), {self.n_corrupt} corrupt, "
            f"{self.n_fixed} labels fixed"
        )


class CorruptFile(ValueError):
    """An image or label file that cannot be used; the message says why."""


def exif_size(img: Image.Image) -> tuple[tuple[int, int], bool]:
    """(w, h) as displayed (EXIF orientation 5-8 swap the sides) and whether EXIF rotates it."""
    w, h = img.size
    try:
        orientation = img.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - malformed EXIF is not fatal: the pixels are what count
        orientation = 1
    if orientation in (5, 6, 7, 8):
        return (h, w), True
    return (w, h), orientation not in (1, None)


def check_image(im_file: str) -> tuple[tuple[int, int], bool]:
    """Open, verify and (for JPEGs missing their end marker) fully decode one image.

    Returns ((w, h) after EXIF rotation, exif_rotated). Raises CorruptFile saying why.
    """
    size = header_size(im_file)
    try:
        check_pixels(im_file, size)  # from the header, before PIL or OpenCV decode anything
    except ImageTooLarge as e:
        raise CorruptFile(str(e)) from None
    if size is not None and size[0] * size[1] > PIL_WARN_PIXELS:  # within our limit (raised), over PIL's own
        with pil_limit_lifted():
            return _check_image(im_file)
    return _check_image(im_file)


def _check_image(im_file: str) -> tuple[tuple[int, int], bool]:
    try:
        with Image.open(im_file) as im:
            im.verify()  # header and structure; cheap
        with Image.open(im_file) as im:
            shape, rotated = exif_size(im)
            fmt = (im.format or "").lower()
    except Exception as e:
        raise CorruptFile(f"unreadable image ({type(e).__name__}: {e})") from e
    if shape[0] < MIN_IMAGE_SIDE or shape[1] < MIN_IMAGE_SIDE:
        raise CorruptFile(f"image size {shape[0]}x{shape[1]} is too small (< {MIN_IMAGE_SIDE} px)")
    if fmt in ("jpeg", "mpo"):
        with open(im_file, "rb") as f:
            f.seek(-2, os.SEEK_END)
            complete = f.read() == b"\xff\xd9"
        if not complete:  # a missing end marker: decode fully to see whether data is missing
            try:
                with Image.open(im_file) as im:
                    ImageOps.exif_transpose(im).load()
            except Exception as e:
                raise CorruptFile(f"truncated JPEG ({e}); re-export or delete the file") from e
    return shape, rotated


def parse_labels(rows: list[list[str]], nc: int | None, shape: tuple[int, int]) -> tuple[np.ndarray, list[str]]:
    """Check label rows; return (labels [n, 5] float32, fixes made). Raises CorruptFile.

    Rows of ``1 + 2k`` values (k >= 3) are polygons (yolov5 segment format) and become their
    bounding box. ``shape`` (w, h) is used to drop boxes under one pixel.
    """
    fixes: list[str] = []
    boxes = []
    for i, row in enumerate(rows, 1):
        n = len(row)
        try:
            vals = [float(v) for v in row]
        except ValueError as e:
            raise CorruptFile(f"line {i}: non-numeric value in {' '.join(row)!r}") from e
        if not all(np.isfinite(vals)):
            raise CorruptFile(f"line {i}: non-finite value in {' '.join(row)!r}")
        if n == 5:
            boxes.append(vals)
        elif n >= 7 and n % 2 == 1:
            xy = np.asarray(vals[1:]).reshape(-1, 2)
            (x1, y1), (x2, y2) = xy.min(0), xy.max(0)
            boxes.append([vals[0], (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1])
        else:
            raise CorruptFile(f"line {i}: {n} columns, expected 5 (cls cx cy w h)")
    if not boxes:
        return np.zeros((0, 5), np.float32), fixes
    lb = np.asarray(boxes, dtype=np.float64)
    cls = lb[:, 0]
    if (cls != np.round(cls)).any() or (cls < 0).any() or (nc is not None and (cls >= nc).any()):
        bad = cls[(cls != np.round(cls)) | (cls < 0) | ((cls >= nc) if nc is not None else False)]
        raise CorruptFile(f"class id {bad[0]:g} outside [0, {nc}) ; fix the label or 'nc'/'names' in the data YAML")
    xywh = lb[:, 1:]
    if (xywh < -OVERSHOOT_TOL).any() or (xywh > 1 + OVERSHOOT_TOL).any():
        worst = xywh[(xywh < -OVERSHOOT_TOL) | (xywh > 1 + OVERSHOOT_TOL)][0]
        raise CorruptFile(f"coordinate {worst:g} outside [0, 1]; labels must be normalised cx cy w h")
    # clip box edges (not the centre) so a box overshooting the border keeps its visible part
    xyxy = np.stack(
        [
            xywh[:, 0] - xywh[:, 2] / 2,
            xywh[:, 1] - xywh[:, 3] / 2,
            xywh[:, 0] + xywh[:, 2] / 2,
            xywh[:, 1] + xywh[:, 3] / 2,
        ],
        1,
    )
    clipped = xyxy.clip(0, 1)
    if not np.allclose(clipped, xyxy, atol=1e-6):
        fixes.append(f"{int((np.abs(clipped - xyxy) > 1e-6).any(1).sum())} box(es) clipped to the image")
    lb[:, 1:] = np.stack(
        [
            (clipped[:, 0] + clipped[:, 2]) / 2,
            (clipped[:, 1] + clipped[:, 3]) / 2,
            clipped[:, 2] - clipped[:, 0],
            clipped[:, 3] - clipped[:, 1],
        ],
        1,
    )
    w, h = shape
    keep = (lb[:, 3] * w >= 1) & (lb[:, 4] * h >= 1)
    if not keep.all():
        fixes.append(f"{int((~keep).sum())} zero-area box(es) dropped")
        lb = lb[keep]
    _, first = np.unique(np.round(lb, 6), axis=0, return_index=True)
    if len(first) < len(lb):
        fixes.append(f"{len(lb) - len(first)} duplicate row(s) dropped")
        lb = lb[np.sort(first)]
    return lb.astype(np.float32), fixes


def _verify_one(im_file: str, lb_file: str, nc: int | None) -> dict:
    """Plain-data verdict for one image, as stored in the JSON label cache."""
    try:
        shape, rotated = check_image(im_file)
    except CorruptFile as e:
        return {"corrupt": f"{im_file}: {e}; skipped"}
    if not Path(lb_file).is_file():
        return {"shape": shape, "labels": [], "rot": rotated, "missing": True}
    try:
        labels, fixes = parse_labels(read_label_rows(lb_file), nc, shape)
    except CorruptFile as e:
        return {"corrupt": f"{lb_file}: {e}; image skipped"}
    except (OSError, UnicodeDecodeError) as e:
        return {"corrupt": f"{lb_file}: unreadable label file ({e}); image skipped"}
    out = {"shape": shape, "labels": labels.tolist(), "rot": rotated}
    if fixes:
        out["fixed"] = f"{lb_file}: " + "; ".join(fixes)
    return out


def dataset_hash(im_files: Sequence[str], lb_files: Sequence[str], nc: int | None) -> str:
    """Hash of file names, sizes and modification times (and nc): cheap, and changes when any
    file does (size alone misses an edited class id, which keeps the length)."""
    h = hashlib.sha256(f"v{CACHE_VERSION};nc={nc}".encode())
    for f in (*im_files, *lb_files):
        try:
            st = os.stat(f)
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            stamp = "-"
        h.update(f"{f}:{stamp};".encode())
    return h.hexdigest()


def label_cache_path(lb_files: Sequence[str]) -> Path:
    """``.../labels/train.modyolo.cache`` for labels under ``.../labels/train/``: yolov5's place,
    its own name, so a yolov5 run on the same folder (which pickles its ``train.cache``) and this
    one do not overwrite each other's cache."""
    return Path(lb_files[0]).parent.with_suffix(".modyolo.cache")


def _load_cache(path: Path, key: str) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION or data.get("hash") != key:
        return None
    bad = next((f for f, r in (data.get("results") or {}).items() if not _valid_entry(r)), None)
    if not isinstance(data.get("results"), dict) or bad is not None:
        LOGGER.warning(
            "label cache %s is damaged (entry for %s is not what modyolo writes; edited by hand?); "
            "ignoring it and re-scanning the dataset",
            path,
            bad,
        )
        return None
    return data


def _valid_entry(r: object) -> bool:
    """A cache entry as :func:`_verify_one` writes it: a corrupt message, or shape [w, h] and labels [n][5]."""
    if not isinstance(r, dict):
        return False
    if "corrupt" in r:
        return isinstance(r["corrupt"], str)
    shape, labels = r.get("shape"), r.get("labels")
    num = (int, float)
    return (
        isinstance(shape, list)
        and len(shape) == 2
        and all(isinstance(v, int) and v > 0 for v in shape)
        and isinstance(labels, list)
        and all(isinstance(row, list) and len(row) == 5 and all(isinstance(v, num) for v in row) for row in labels)
    )


def _save_cache(path: Path, data: dict) -> None:
    tmp = path.with_suffix(f".cache.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
    except OSError as e:  # read-only dataset: fine, just slower next time
        LOGGER.warning("label cache not saved to %s (%s); the dataset will be re-scanned next time", path, e)
        tmp.unlink(missing_ok=True)


def scan(
    im_files: Sequence[str],
    nc: int | None,
    prefix: str = "",
    workers: int = 8,
    progress: bool = True,
    use_cache: bool = True,
) -> VerifyReport:
    """Verify ``im_files`` (or load the verified result from the label cache) and log a summary."""
    lb_files = img2label_paths(list(im_files))
    cache_path = label_cache_path(lb_files)
    key = dataset_hash(im_files, lb_files, nc)
    data = _load_cache(cache_path, key) if use_cache else None
    if data is not None and any(f not in data["results"] for f in im_files):
        LOGGER.warning("label cache %s lacks some images (edited by hand?); re-scanning the dataset", cache_path)
        data = None
    from_cache = data is not None
    if data is None:
        results: dict[str, dict] = {}
        with ThreadPoolExecutor(max(1, workers)) as pool:  # PIL releases the GIL while decoding
            it = pool.map(_verify_one, im_files, lb_files, [nc] * len(im_files))
            if progress:
                from tqdm import tqdm

                it = tqdm(it, total=len(im_files), desc=f"{prefix}Scanning {cache_path.with_suffix('')}", leave=False)
            for f, r in zip(im_files, it):
                results[f] = r
        data = {"version": CACHE_VERSION, "hash": key, "results": results}
        if use_cache:
            _save_cache(cache_path, data)
    report = _report_from(data["results"], im_files, cache_path, from_cache)
    LOGGER.info(
        "%s%s: %s%s", prefix, cache_path.with_suffix(""), report.summary(), " (from cache)" if from_cache else ""
    )
    for m in report.messages:
        LOGGER.warning("%s%s", prefix, m)
    return report


def _report_from(results: dict[str, dict], im_files: Sequence[str], cache_path: Path, from_cache: bool) -> VerifyReport:
    rep = VerifyReport(records=[], n_found=len(im_files), cache_path=cache_path, from_cache=from_cache)
    for f in im_files:
        r = results[f]
        if "corrupt" in r:
            rep.n_corrupt += 1
            rep.messages.append(r["corrupt"])
            continue
        labels = np.asarray(r["labels"], np.float32).reshape(-1, 5)
        rep.n_backgrounds += len(labels) == 0
        rep.n_missing_labels += bool(r.get("missing"))
        if "fixed" in r:
            rep.n_fixed += 1
            rep.messages.append(r["fixed"])
        rep.records.append(ImageRecord(f, tuple(r["shape"]), labels, bool(r.get("rot"))))
    return rep
