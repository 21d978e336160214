"""Non-maximum suppression with yolov5's semantics on torchvision's kernel.

Input is the detector's inference output ``pred: Tensor[B, N, 5 + nc]`` = (cx, cy, w, h in
input pixels, objectness after sigmoid, nc class scores after sigmoid). Output is, per image,
``Tensor[n, 6]`` = (x1, y1, x2, y2, conf, cls), sorted by ``conf`` descending, with
``conf = objectness * class score`` exactly as yolov5 computes it.

Why several suppression strategies exist here (``benchmarks/bench_nms.py`` measures them):
yolov5 makes NMS class-aware by shifting every box by ``cls * 7680`` pixels and running one
``torchvision.ops.nms``. The kernel then still visits every (kept, candidate) pair across all
classes, which at validation settings (conf 0.001, multi-label, ~21k candidates) costs more than
the forward pass. Running the kernel per class (``batched``) visits only same-class pairs. The
``prefix`` strategy adds an exact early exit: a candidate's fate depends only on higher-scoring
candidates of its class, so NMS over the top-K candidates by score decides the top-K correctly;
once that prefix already keeps ``max_det`` boxes the rest cannot enter the output. K grows
until that holds or every candidate is in, so results equal a full run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torchvision

from .boxes import xywh2xyxy

# yolov5's class offset; any value larger than the image side keeps classes apart.
MAX_WH = 7680

# keep = fn(boxes[N,4] xyxy, scores[N], idxs[N] int, iou_thres, max_det) -> kept indices, by score desc
NMSFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float, int], torch.Tensor]


def nms_offset(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_thres: float, max_det: int
) -> torch.Tensor:
    """yolov5's strategy: shift boxes by ``cls * MAX_WH`` and run one ``torchvision.ops.nms``.

    Kept for comparison (it is what yolov5 reports numbers with). The float32 shift loses
    precision for high class ids (spacing 0.0625 px at class 79), so IoUs very close to the
    threshold can round the other way than in an unshifted computation.
    """
    keep = torchvision.ops.nms(boxes + idxs[:, None].to(boxes.dtype) * MAX_WH, scores, iou_thres)
    return keep[:max_det]


def nms_batched(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_thres: float, max_det: int
) -> torch.Tensor:
    """``torchvision.ops.batched_nms``: per-class kernel runs on large sets (unshifted boxes)."""
    return torchvision.ops.batched_nms(boxes, scores, idxs, iou_thres)[:max_det]


def nms_prefix(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    idxs: torch.Tensor,
    iou_thres: float,
    max_det: int,
    start: int | None = None,
) -> torch.Tensor:
    """``batched`` NMS on a growing top-K prefix of candidates; exact, see the module docstring.

    ``start`` is the first prefix size (default ``4 * max_det``). The prefix is extended past
    ties so a boundary never splits equal scores.
    """
    n = scores.shape[0]
    k = max(start or 4 * max_det, 1)
    if n <= k:
        return nms_batched(boxes, scores, idxs, iou_thres, max_det)
    order = scores.argsort(descending=True, stable=True)
    sorted_scores = scores[order]
    while True:
        if k >= n:
            return nms_batched(boxes, scores, idxs, iou_thres, max_det)
        # include every candidate tied with the last one so the prefix is closed under ">= score"
        k = int(torch.searchsorted(-sorted_scores, -sorted_scores[k - 1], right=True))
        top = order[:k]
        keep = torchvision.ops.batched_nms(boxes[top], scores[top], idxs[top], iou_thres)
        if keep.shape[0] >= max_det or k >= n:
            return top[keep[:max_det]]
        # grow by the observed keep rate (with margin) so one more pass usually suffices;
        # at least double so a pathological rate still ends in O(log n) passes
        k = max(2 * k, int(k * max_det / max(keep.shape[0], 1) * 1.25))


NMS_METHODS: dict[str, NMSFn] = {"offset": nms_offset, "batched": nms_batched, "prefix": nms_prefix}


def _check_args(pred: torch.Tensor, conf_thres: float, iou_thres: float, max_det: int, method: str) -> None:
    if not 0.0 <= conf_thres <= 1.0:
        raise ValueError(
            f"non_max_suppression: conf_thres={conf_thres} is outside [0, 1]; "
            "pass a probability such as 0.001 (val) or 0.25 (detect)"
        )
    if not 0.0 <= iou_thres <= 1.0:
        raise ValueError(
            f"non_max_suppression: iou_thres={iou_thres} is outside [0, 1]; pass e.g. 0.6 (val) or 0.45 (detect)"
        )
    if max_det < 1:
        raise ValueError(f"non_max_suppression: max_det={max_det} must be >= 1")
    if method not in NMS_METHODS:
        raise ValueError(f"non_max_suppression: unknown method {method!r}; choose one of {sorted(NMS_METHODS)}")
    if pred.ndim != 3 or pred.shape[2] < 6:
        raise ValueError(
            f"non_max_suppression: expected pred of shape [B, N, 5 + nc] (cx, cy, w, h, obj, classes...), "
            f"got {tuple(pred.shape)}; pass the model's inference output, not the training feature maps"
        )


def _candidates(x: torch.Tensor, conf_thres: float, multi_label: bool, classes: torch.Tensor | None) -> torch.Tensor:
    """One image's rows ``x: [N, 5 + nc]`` -> candidate detections ``[n, 6]`` (xyxy, conf, cls)."""
    x = x[x[:, 4] > conf_thres]  # objectness first: cheap, removes most rows
    scores = x[:, 5:] * x[:, 4:5]
    box = xywh2xyxy(x[:, :4])
    if multi_label:
        i, j = (scores > conf_thres).nonzero(as_tuple=True)
        det = torch.cat((box[i], scores[i, j, None], j[:, None].to(x.dtype)), 1)
    else:
        conf, j = scores.max(1, keepdim=True)
        det = torch.cat((box, conf, j.to(x.dtype)), 1)[conf.view(-1) > conf_thres]
    if classes is not None:
        det = det[(det[:, 5:6] == classes).any(1)]
    return det


def non_max_suppression(
    prediction: torch.Tensor | Sequence[torch.Tensor],
    conf_thres: float = 0.25,
    iou_thres: float = 0.45,
    classes: Sequence[int] | None = None,
    agnostic: bool = False,
    multi_label: bool = False,
    max_det: int = 300,
    max_nms: int = 30000,
    method: str = "prefix",
) -> list[torch.Tensor]:
    """Filter raw predictions into final detections, one tensor per image.

    Args:
        prediction: ``Tensor[B, N, 5 + nc]`` (see module docstring); a tuple/list whose first
            item is that tensor (a model's ``(inference, features)`` output) is accepted.
        conf_thres: keep candidates with ``obj > conf_thres`` and ``obj * cls > conf_thres``.
        iou_thres: suppress same-class (or any-class when ``agnostic``) boxes with IoU above this.
        classes: keep only these class ids (``None`` = all).
        agnostic: suppress across classes.
        multi_label: a box may yield one detection per class scoring above ``conf_thres``
            (yolov5's validation setting); otherwise only its best class. Ignored when nc == 1.
        max_det: most detections kept per image.
        max_nms: most candidates (highest conf first) sent to NMS, so a flood of low-confidence
            boxes from an untrained model stays fast.
        method: suppression strategy from ``NMS_METHODS``; all give the same detections up to
            float rounding at the IoU threshold (see ``nms_offset``), ``prefix`` is the fastest.

    Returns:
        ``list`` of B tensors ``[n_i, 6]`` = (x1, y1, x2, y2, conf, cls), xyxy in the same pixel
        space as the input, sorted by conf descending; ``n_i <= max_det``.
    """
    pred = prediction if isinstance(prediction, torch.Tensor) else prediction[0]  # (pred, raw maps): pred
    _check_args(pred, conf_thres, iou_thres, max_det, method)
    suppress = NMS_METHODS[method]
    multi_label = multi_label and pred.shape[2] > 6
    cls_filter = None if classes is None else torch.tensor(classes, device=pred.device, dtype=pred.dtype)
    output = []
    for x in pred:
        det = _candidates(x, conf_thres, multi_label, cls_filter)
        if det.shape[0] > max_nms:
            det = det[det[:, 4].topk(max_nms).indices]
        if det.shape[0] == 0:
            output.append(det.new_zeros((0, 6)))
            continue
        idxs = torch.zeros_like(det[:, 5], dtype=torch.int64) if agnostic else det[:, 5].to(torch.int64)
        keep = suppress(det[:, :4], det[:, 4], idxs, iou_thres, max_det)
        output.append(det[keep])
    return output
