"""Box utilities shared by NMS, metrics, plots and the validator.

Formats used across modyolo (all coordinates are floats):

* ``xyxy``  — (x1, y1, x2, y2), corners, in pixels unless the name ends in ``n``.
* ``xywh``  — (cx, cy, w, h), centre and size, the model's output format.
* ``xywhn`` — ``xywh`` normalised by image width/height, the YOLO label-file format.

Every converter accepts a ``torch.Tensor`` or a ``numpy.ndarray`` of shape ``[..., 4]``
(extra trailing columns are not allowed: slice first) and returns a *new* array of the same
kind, so callers never see their input mutated. ``scale_boxes`` and ``clip_boxes`` follow
yolov5's semantics (letterbox gain = the smaller side ratio, padding split evenly) so that
boxes predicted on a letterboxed input map back exactly onto the original image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import torch

Array = torch.Tensor | np.ndarray
#: A tensor or an array: each converter returns the kind it was given.
ArrayT = TypeVar("ArrayT", torch.Tensor, np.ndarray)


def _copy(x: ArrayT) -> ArrayT:
    """A float copy of ``x`` (integer inputs are promoted so in-place maths stays exact)."""
    if isinstance(x, torch.Tensor):
        return x.clone() if x.is_floating_point() else x.float()
    return x.astype(x.dtype if x.dtype.kind == "f" else np.float64, copy=True)


def _check(x: Array, fn: str) -> None:
    if x.shape[-1] != 4:
        raise ValueError(f"{fn}: expected boxes of shape [..., 4], got {tuple(x.shape)}; slice the 4 box columns first")


def xywh2xyxy(x: ArrayT) -> ArrayT:
    """(cx, cy, w, h) -> (x1, y1, x2, y2), same units. ``x: [..., 4]``."""
    _check(x, "xywh2xyxy")
    y = _copy(x)
    y[..., 0] = x[..., 0] - x[..., 2] / 2
    y[..., 1] = x[..., 1] - x[..., 3] / 2
    y[..., 2] = x[..., 0] + x[..., 2] / 2
    y[..., 3] = x[..., 1] + x[..., 3] / 2
    return y


def xyxy2xywh(x: ArrayT) -> ArrayT:
    """(x1, y1, x2, y2) -> (cx, cy, w, h), same units. ``x: [..., 4]``."""
    _check(x, "xyxy2xywh")
    y = _copy(x)
    y[..., 0] = (x[..., 0] + x[..., 2]) / 2
    y[..., 1] = (x[..., 1] + x[..., 3]) / 2
    y[..., 2] = x[..., 2] - x[..., 0]
    y[..., 3] = x[..., 3] - x[..., 1]
    return y


def xywhn2xyxy(x: ArrayT, w: int, h: int, padw: float = 0.0, padh: float = 0.0) -> ArrayT:
    """Normalised YOLO (cx, cy, w, h) -> pixel (x1, y1, x2, y2) on a ``w x h`` image.

    ``padw/padh`` shift the result, for labels placed inside a letterboxed canvas.
    """
    _check(x, "xywhn2xyxy")
    y = _copy(x)
    y[..., 0] = w * (x[..., 0] - x[..., 2] / 2) + padw
    y[..., 1] = h * (x[..., 1] - x[..., 3] / 2) + padh
    y[..., 2] = w * (x[..., 0] + x[..., 2] / 2) + padw
    y[..., 3] = h * (x[..., 1] + x[..., 3] / 2) + padh
    return y


def xyxy2xywhn(x: ArrayT, w: int, h: int, clip: bool = False) -> ArrayT:
    """Pixel (x1, y1, x2, y2) -> normalised (cx, cy, w, h), optionally clipped to the image first."""
    _check(x, "xyxy2xywhn")
    if clip:
        x = clip_boxes(x, (h, w))
    y = xyxy2xywh(x)
    y[..., 0] /= w
    y[..., 2] /= w
    y[..., 1] /= h
    y[..., 3] /= h
    return y


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Area of ``boxes: Tensor[N, 4]`` xyxy -> ``Tensor[N]`` (negative sizes count as 0)."""
    return (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Pairwise IoU of ``boxes1: Tensor[N, 4]`` and ``boxes2: Tensor[M, 4]`` (xyxy) -> ``Tensor[N, M]``.

    Areas are w*h without yolov5-era "+1" pixels, the same convention as pycocotools, so IoUs
    (and hence matches at a threshold) agree with the COCO evaluator. ``eps`` only guards 0/0
    for degenerate boxes.
    """
    lt = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(2)
    union = box_area(boxes1)[:, None] + box_area(boxes2)[None, :] - inter
    return inter / (union + eps)


def clip_boxes(boxes: ArrayT, shape: Sequence[int]) -> ArrayT:
    """Clip xyxy ``boxes: [..., 4]`` to an image of ``shape = (height, width)``; returns a copy."""
    _check(boxes, "clip_boxes")
    h, w = float(shape[0]), float(shape[1])
    y = _copy(boxes)
    if isinstance(y, torch.Tensor):
        y[..., 0::2] = y[..., 0::2].clamp(0, w)
        y[..., 1::2] = y[..., 1::2].clamp(0, h)
    else:
        y[..., 0::2] = y[..., 0::2].clip(0, w)
        y[..., 1::2] = y[..., 1::2].clip(0, h)
    return y


def scale_boxes(
    img1_shape: Sequence[int],
    boxes: ArrayT,
    img0_shape: Sequence[int],
    ratio_pad: tuple | None = None,
) -> ArrayT:
    """Map xyxy ``boxes`` from a letterboxed image back to the original image, then clip.

    Args:
        img1_shape: (h, w) of the network input the boxes are in.
        boxes: ``[N, 4]`` xyxy pixels in ``img1_shape`` space.
        img0_shape: (h, w) of the original image.
        ratio_pad: ``((gain_h, gain_w), (pad_w, pad_h))`` as recorded by the letterbox; when
            given it is used verbatim (exact inverse of what the loader did, including its
            rounding of the padding). When ``None`` gain and padding are recomputed the way
            yolov5's letterbox computes them: ``gain = min(h1/h0, w1/w0)`` and half the slack
            on each side.

    Returns a new ``[N, 4]`` array, xyxy pixels in ``img0_shape`` space, clipped to it.
    """
    _check(boxes, "scale_boxes")
    if ratio_pad is None:
        gain = min(img1_shape[0] / img0_shape[0], img1_shape[1] / img0_shape[1])
        pad = ((img1_shape[1] - img0_shape[1] * gain) / 2, (img1_shape[0] - img0_shape[0] * gain) / 2)
    else:
        gain = ratio_pad[0][0]
        pad = ratio_pad[1]
    y = _copy(boxes)
    y[..., [0, 2]] -= pad[0]
    y[..., [1, 3]] -= pad[1]
    y[..., :4] /= gain
    return clip_boxes(y, img0_shape)
