"""Augmentations driven by yolov5's hyp keys, as pure functions of (image, labels, rng).

Images are BGR uint8 ``[h, w, 3]`` numpy arrays; ``labels`` are float32 ``[n, 5]`` rows
``cls, x1, y1, x2, y2`` in pixels of that image unless a docstring says otherwise. Every random
draw comes from the ``rng: np.random.Generator`` passed in (never the global RNG), so a sample
is reproducible from the generator's state and independent of cache mode.

Semantics follow yolov5 (hyp keys ``hsv_h hsv_s hsv_v degrees translate scale shear perspective
flipud fliplr mosaic mixup copy_paste``, and yolov7's ``paste_in``, applied in the dataset through
:mod:`modyolo.data.paste_in`). The 4-image mosaic builds only
the part of yolov5's ``2s x 2s`` canvas that its warp reads (same pixels, less memory traffic).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import cv2
import numpy as np

PAD_VALUE = 114
AUG_KEYS = (
    "hsv_h",
    "hsv_s",
    "hsv_v",
    "degrees",
    "translate",
    "scale",
    "shear",
    "perspective",
    "flipud",
    "fliplr",
    "mosaic",
    "mixup",
    "copy_paste",
    "paste_in",
)
# yolov5's hyp.scratch-low.yaml values for the augmentation keys
DEFAULT_AUG = {
    "hsv_h": 0.015,
    "hsv_s": 0.7,
    "hsv_v": 0.4,
    "degrees": 0.0,
    "translate": 0.1,
    "scale": 0.5,
    "shear": 0.0,
    "perspective": 0.0,
    "flipud": 0.0,
    "fliplr": 0.5,
    "mosaic": 1.0,
    "mixup": 0.0,
    "copy_paste": 0.0,
    "paste_in": 0.0,  # yolov7's paste-in (data/paste_in.py); yolov5's files do not have it
}


def aug_params(hyp: Mapping[str, float] | None) -> dict[str, float]:
    """The augmentation keys of ``hyp`` (other keys ignored), missing ones from ``DEFAULT_AUG``."""
    out = dict(DEFAULT_AUG)
    if hyp:
        out.update({k: float(hyp[k]) for k in AUG_KEYS if k in hyp})
    return out


def letterbox(
    img: np.ndarray,
    new_shape: int | Sequence[int] = 640,
    auto: bool = False,
    scale_fill: bool = False,
    scaleup: bool = True,
    stride: int = 32,
    color: int = PAD_VALUE,
) -> tuple[np.ndarray, tuple[float, float], tuple[float, float]]:
    """Resize keeping aspect ratio and pad to ``new_shape`` (h, w).

    ``auto``: pad only to the next multiple of ``stride`` (minimum rectangle); ``scale_fill``:
    stretch to fill without padding; ``scaleup=False``: never enlarge (better val mAP).
    Returns (image, (w ratio, h ratio), (pad left, pad top)), the pad split evenly on both sides.
    """
    h0, w0 = img.shape[:2]
    if isinstance(new_shape, int):
        new_shape = (new_shape, new_shape)
    r = min(new_shape[0] / h0, new_shape[1] / w0)
    if not scaleup:
        r = min(r, 1.0)
    ratio = (r, r)
    new_unpad = (int(round(w0 * r)), int(round(h0 * r)))  # w, h
    dw, dh = new_shape[1] - new_unpad[0], new_shape[0] - new_unpad[1]
    if auto:
        dw, dh = dw % stride, dh % stride
    elif scale_fill:
        dw, dh = 0, 0
        new_unpad = (new_shape[1], new_shape[0])
        ratio = (new_shape[1] / w0, new_shape[0] / h0)
    dw, dh = dw / 2, dh / 2
    if (w0, h0) != new_unpad:
        img = cv2.resize(img, new_unpad, interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    if top or bottom or left or right:
        img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(color,) * 3)
    return img, ratio, (dw, dh)


def augment_hsv(img: np.ndarray, hgain: float, sgain: float, vgain: float, rng: np.random.Generator) -> None:
    """Random hue/saturation/value gains, in place, through 256-entry lookup tables (fast)."""
    if not (hgain or sgain or vgain):
        return
    r = rng.uniform(-1, 1, 3) * (hgain, sgain, vgain) + 1
    hue, sat, val = cv2.split(cv2.cvtColor(img, cv2.COLOR_BGR2HSV))
    x = np.arange(256, dtype=np.float64)
    lut_h = ((x * r[0]) % 180).astype(np.uint8)
    lut_s = np.clip(x * r[1], 0, 255).astype(np.uint8)
    lut_v = np.clip(x * r[2], 0, 255).astype(np.uint8)
    hsv = cv2.merge((cv2.LUT(hue, lut_h), cv2.LUT(sat, lut_s), cv2.LUT(val, lut_v)))
    cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR, dst=img)


def random_affine_matrix(
    rng: np.random.Generator, in_wh: tuple[int, int], out_wh: tuple[int, int], p: Mapping[str, float]
) -> tuple[np.ndarray, float]:
    """yolov5's random perspective: centre, perspective, rotate+scale, shear, translate.

    ``in_wh`` is the (w, h) of the image the matrix reads, ``out_wh`` the output size.
    Returns (M: float64 [3, 3] mapping input pixels to output pixels, the scale drawn).
    """
    C = np.eye(3)
    C[0, 2], C[1, 2] = -in_wh[0] / 2, -in_wh[1] / 2
    P = np.eye(3)
    P[2, 0] = rng.uniform(-p["perspective"], p["perspective"])
    P[2, 1] = rng.uniform(-p["perspective"], p["perspective"])
    R = np.eye(3)
    angle = rng.uniform(-p["degrees"], p["degrees"])
    s = rng.uniform(1 - p["scale"], 1 + p["scale"])
    R[:2] = cv2.getRotationMatrix2D(angle=angle, center=(0, 0), scale=s)
    S = np.eye(3)
    S[0, 1] = math.tan(rng.uniform(-p["shear"], p["shear"]) * math.pi / 180)
    S[1, 0] = math.tan(rng.uniform(-p["shear"], p["shear"]) * math.pi / 180)
    T = np.eye(3)
    T[0, 2] = rng.uniform(0.5 - p["translate"], 0.5 + p["translate"]) * out_wh[0]
    T[1, 2] = rng.uniform(0.5 - p["translate"], 0.5 + p["translate"]) * out_wh[1]
    return T @ S @ R @ P @ C, s


def warp_boxes(boxes: np.ndarray, M: np.ndarray, out_wh: tuple[int, int]) -> np.ndarray:
    """Transform ``boxes [n, 4] xyxy`` by M (all four corners) and take the enclosing boxes, clipped."""
    n = len(boxes)
    if n == 0:
        return boxes.reshape(0, 4).astype(np.float32)
    xy = np.ones((n * 4, 3))
    xy[:, :2] = boxes[:, [0, 1, 2, 3, 0, 3, 2, 1]].reshape(n * 4, 2)
    xy = xy @ M.T
    xy = (xy[:, :2] / xy[:, 2:3]).reshape(n, 8)
    x, y = xy[:, [0, 2, 4, 6]], xy[:, [1, 3, 5, 7]]
    new = np.stack([x.min(1), y.min(1), x.max(1), y.max(1)], 1)
    new[:, [0, 2]] = new[:, [0, 2]].clip(0, out_wh[0])
    new[:, [1, 3]] = new[:, [1, 3]].clip(0, out_wh[1])
    return new.astype(np.float32)


def box_candidates(
    box1: np.ndarray,
    box2: np.ndarray,
    wh_thr: float = 2,
    ar_thr: float = 100,
    area_thr: float = 0.1,
    eps: float = 1e-16,
) -> np.ndarray:
    """Keep boxes (``[n, 4]`` xyxy before/after augmentation) still > wh_thr px, > area_thr of
    their scaled original area and with aspect ratio < ar_thr: as yolov5's candidates."""
    w1, h1 = box1[:, 2] - box1[:, 0], box1[:, 3] - box1[:, 1]
    w2, h2 = box2[:, 2] - box2[:, 0], box2[:, 3] - box2[:, 1]
    ar = np.maximum(w2 / (h2 + eps), h2 / (w2 + eps))
    return (w2 > wh_thr) & (h2 > wh_thr) & (w2 * h2 / (w1 * h1 + eps) > area_thr) & (ar < ar_thr)


def _apply_boxes(labels: np.ndarray, M: np.ndarray, s: float, out_wh: tuple[int, int]) -> np.ndarray:
    if not len(labels):
        return labels
    new = warp_boxes(labels[:, 1:5], M, out_wh)
    keep = box_candidates(labels[:, 1:5] * s, new)
    out = labels[keep].copy()
    out[:, 1:5] = new[keep]
    return out


def _warp(src: np.ndarray, M: np.ndarray, dsize: tuple[int, int], perspective: bool) -> np.ndarray:
    """Warp by M (3x3) into ``dsize`` (w, h), bilinear, outside filled with the pad grey."""
    if perspective:
        return cv2.warpPerspective(src, M, dsize, borderValue=(PAD_VALUE,) * 3)
    return cv2.warpAffine(src, M[:2], dsize, borderValue=(PAD_VALUE,) * 3)


def random_perspective(
    img: np.ndarray, labels: np.ndarray, p: Mapping[str, float], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One random perspective/affine warp of an image (same size out); boxes transformed and
    filtered by ``box_candidates``."""
    h, w = img.shape[:2]
    M, s = random_affine_matrix(rng, (w, h), (w, h), p)
    if (np.eye(3) != M).any():
        img = _warp(img, M, (w, h), bool(p["perspective"]))
    return img, _apply_boxes(labels, M, s, (w, h))


def mosaic_layout(sizes: Sequence[tuple[int, int]], s: int, rng: np.random.Generator) -> list[tuple]:
    """Where 4 images (``sizes``: (h, w) each) go on yolov5's virtual ``2s x 2s`` mosaic canvas.

    Returns per image ``(x1a, y1a, x2a, y2a, x1b, y1b)``: the canvas rectangle it fills and the
    top-left of the crop of the image that fills it. The centre is uniform in [s/2, 3s/2].
    """
    xc, yc = (int(rng.uniform(s / 2, 3 * s / 2)) for _ in range(2))
    out = []
    for i, (h, w) in enumerate(sizes):
        if i == 0:  # top left
            x1a, y1a, x2a, y2a = max(xc - w, 0), max(yc - h, 0), xc, yc
            x1b, y1b = w - (x2a - x1a), h - (y2a - y1a)
        elif i == 1:  # top right
            x1a, y1a, x2a, y2a = xc, max(yc - h, 0), min(xc + w, 2 * s), yc
            x1b, y1b = 0, h - (y2a - y1a)
        elif i == 2:  # bottom left
            x1a, y1a, x2a, y2a = max(xc - w, 0), yc, xc, min(2 * s, yc + h)
            x1b, y1b = w - (x2a - x1a), 0
        else:  # bottom right
            x1a, y1a, x2a, y2a = xc, yc, min(xc + w, 2 * s), min(2 * s, yc + h)
            x1b, y1b = 0, 0
        out.append((x1a, y1a, x2a, y2a, x1b, y1b))
    return out


def mosaic4(
    images: Sequence[np.ndarray], labels: Sequence[np.ndarray], s: int, p: Mapping[str, float], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """4-image mosaic followed by one random perspective warp, output ``s x s``.

    ``labels[i]: [n, 5]`` cls, cx, cy, w, h normalised to ``images[i]``. Returns (image, labels
    ``[m, 5]`` cls, x1, y1, x2, y2 pixels of the output). The geometry equals yolov5's (tiles on
    a 2s canvas, then a warp with border -s/2), but only the part of the canvas the warp reads
    is built: with scale gains > 1 that is a fraction of the 2s x 2s canvas.
    """
    layout = mosaic_layout([im.shape[:2] for im in images], s, rng)
    M, scale = random_affine_matrix(rng, (2 * s, 2 * s), (s, s), p)
    rx1, ry1, rx2, ry2 = _source_region(M, s, 2 * s)
    canvas = np.full((ry2 - ry1, rx2 - rx1, 3), PAD_VALUE, np.uint8)
    all_labels = []
    for im, lb, (x1a, y1a, x2a, y2a, x1b, y1b) in zip(images, labels, layout):
        h, w = im.shape[:2]
        # the part of this tile inside the region, in canvas then in image coordinates
        cx1, cy1, cx2, cy2 = max(x1a, rx1), max(y1a, ry1), min(x2a, rx2), min(y2a, ry2)
        if cx2 > cx1 and cy2 > cy1:
            canvas[cy1 - ry1 : cy2 - ry1, cx1 - rx1 : cx2 - rx1] = im[
                y1b + cy1 - y1a : y1b + cy2 - y1a, x1b + cx1 - x1a : x1b + cx2 - x1a
            ]
        if len(lb):
            b = lb.copy()
            padw, padh = x1a - x1b, y1a - y1b
            b[:, 1:] = np.stack(
                [
                    w * (lb[:, 1] - lb[:, 3] / 2) + padw,
                    h * (lb[:, 2] - lb[:, 4] / 2) + padh,
                    w * (lb[:, 1] + lb[:, 3] / 2) + padw,
                    h * (lb[:, 2] + lb[:, 4] / 2) + padh,
                ],
                1,
            )
            all_labels.append(b)
    lab = np.concatenate(all_labels, 0) if all_labels else np.zeros((0, 5), np.float32)
    lab[:, 1:] = lab[:, 1:].clip(0, 2 * s)  # boxes are cut where the canvas ends
    Mr = M @ np.array([[1, 0, rx1], [0, 1, ry1], [0, 0, 1]], dtype=np.float64)
    out = _warp(canvas, Mr, (s, s), bool(p["perspective"]))
    return out, _apply_boxes(lab.astype(np.float32), M, scale, (s, s))


def _source_region(M: np.ndarray, s: int, canvas: int) -> tuple[int, int, int, int]:
    """Integer box of the ``canvas x canvas`` mosaic that the ``s x s`` output of M samples
    (inverse-mapped output corners, plus a 2 px margin for bilinear taps), clipped to it."""
    corners = np.array([[0, 0, 1], [s, 0, 1], [0, s, 1], [s, s, 1]], dtype=np.float64) @ np.linalg.inv(M).T
    xy = corners[:, :2] / corners[:, 2:3]
    x1, y1 = (max(int(math.floor(v)) - 2, 0) for v in xy.min(0))
    x2, y2 = (min(int(math.ceil(v)) + 2, canvas) for v in xy.max(0))
    if x2 <= x1 or y2 <= y1:  # the output sees no canvas at all (extreme perspective)
        return 0, 0, 1, 1
    return x1, y1, x2, y2


def mixup(
    img: np.ndarray, labels: np.ndarray, img2: np.ndarray, labels2: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Blend two same-size images with ratio ~ Beta(32, 32) (about 0.5) and keep both label sets."""
    r = rng.beta(32.0, 32.0)
    out = cv2.addWeighted(img, r, img2, 1 - r, 0)
    return out, np.concatenate((labels, labels2), 0)


def copy_paste_boxes(
    img: np.ndarray,
    labels: np.ndarray,
    donor: np.ndarray,
    donor_labels: np.ndarray,
    p: float,
    rng: np.random.Generator,
    cover_thr: float = 0.7,
) -> tuple[np.ndarray, np.ndarray]:
    """Paste rectangular crops of ``round(p * n)`` of the donor's boxes at random places in ``img``.

    Works with box-only labels (no segments): each crop is pasted whole, so it carries some
    of its background. Existing boxes covered by a paste for more than ``cover_thr`` of their
    area are dropped, since their object is no longer visible. Both label arrays are
    ``[n, 5]`` cls, x1, y1, x2, y2 in pixels of their own image. Modifies ``img`` in place.
    """
    n = round(p * len(donor_labels))
    if n == 0:
        return img, labels
    H, W = img.shape[:2]
    labels = labels.copy()
    for j in rng.choice(len(donor_labels), size=n, replace=False):
        c, x1, y1, x2, y2 = donor_labels[j]
        x1, y1 = int(max(x1, 0)), int(max(y1, 0))
        x2, y2 = int(min(math.ceil(x2), donor.shape[1])), int(min(math.ceil(y2), donor.shape[0]))
        bw, bh = x2 - x1, y2 - y1
        if bw < 3 or bh < 3 or bw > W or bh > H:
            continue
        px, py = int(rng.integers(0, W - bw + 1)), int(rng.integers(0, H - bh + 1))
        img[py : py + bh, px : px + bw] = donor[y1:y2, x1:x2]
        box = np.array([px, py, px + bw, py + bh], np.float32)
        if len(labels):  # drop earlier boxes that the paste hides
            iw = (np.minimum(labels[:, 3], box[2]) - np.maximum(labels[:, 1], box[0])).clip(0)
            ih = (np.minimum(labels[:, 4], box[3]) - np.maximum(labels[:, 2], box[1])).clip(0)
            area = (labels[:, 3] - labels[:, 1]) * (labels[:, 4] - labels[:, 2]) + 1e-9
            labels = labels[iw * ih / area <= cover_thr]
        labels = np.concatenate([labels, np.array([[c, *box]], np.float32)], 0)
    return img, labels


def random_flip(
    img: np.ndarray, labels_xywhn: np.ndarray, flipud: float, fliplr: float, rng: np.random.Generator
) -> np.ndarray:
    """Flip up-down / left-right with the given probabilities; ``labels_xywhn [n, 5]`` rows
    cls, cx, cy, w, h normalised.

    Returns the (possibly new) image; labels are updated in place.
    """
    if rng.random() < flipud:
        img = np.ascontiguousarray(img[::-1])
        labels_xywhn[:, 2] = 1 - labels_xywhn[:, 2]
    if rng.random() < fliplr:
        img = np.ascontiguousarray(img[:, ::-1])
        labels_xywhn[:, 1] = 1 - labels_xywhn[:, 1]
    return img
