"""NMS inside the exported graph: an image batch in, final detections out.

:class:`EndToEnd` wraps an export-ready DetectionModel (Detect returning ``pred [B, N, 5+nc]``)
and appends yolov5's post-processing, written so the ONNX exporter turns it into standard ops
(ONNX ``NonMaxSuppression``, ``ScatterND``, ``TopK``, ``GatherElements``) that ONNX Runtime and
OpenVINO both run:

inputs
    ``images: float32[B, 3, H, W]`` (0-1 RGB, letterboxed), ``conf_thres: float32[1]``,
    ``iou_thres: float32[1]``, ``multi_label: float32[1]`` (1: a box yields one detection per class
    above ``conf_thres``, as ``modyolo val`` does; 0: only its best class, as ``modyolo detect`` does).
outputs
    ``detections: float32[B, max_det, 6]`` = (x1, y1, x2, y2, conf, cls) in input pixels, sorted by
    conf descending, rows past ``num_dets`` are zeros; ``num_dets: int64[B]``.

Class-aware suppression uses no offset trick: ONNX ``NonMaxSuppression`` takes scores as
``[B, C, N]`` and suppresses within each (image, class) pair, which is exactly the per-class
(``batched``) NMS of :mod:`modyolo.eval.nms`. Thresholds are inputs so one file serves both
validation (conf 0.001, iou 0.6, multi-label) and detection (0.25, 0.45, best class);
``max_det`` is baked in because it fixes the output shape. conf is ``obj * cls`` and kept when
``> conf_thres`` (which implies ``obj > conf_thres``), as in the Python path. The Python path's
``max_nms`` cap (30000 candidates) is not applied: the graph sends every candidate to NMS.

Class-agnostic suppression (``export --nms --agnostic-nms``, as ``modyolo detect --agnostic-nms``
and ``val --single-cls`` run the Python NMS, and as yolov5 / ultralytics do for ``single_cls``):
each box competes once, with its best class, in one ``[B, 1, N]`` score plane, so overlapping
boxes of different classes suppress each other. ``multi_label`` is then ignored, because it changes
nothing: with agnostic NMS a box's lower-scoring classes sit on the very same box (IoU 1) as its best
class and are always suppressed by it or by whatever suppressed it. The choice is baked into
the graph and recorded in its metadata (``agnostic``); a one-class model is agnostic either way.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from modyolo.eval.boxes import xywh2xyxy

INPUTS = ("images", "conf_thres", "iou_thres", "multi_label")
OUTPUTS = ("detections", "num_dets")
NMS_LAYOUT = (
    "detections[B,max_det,6]: x1,y1,x2,y2 (input pixels), conf, cls; num_dets[B]; "
    "inputs images, conf_thres[1], iou_thres[1], multi_label[1]"
)


class _NonMaxSuppression(torch.autograd.Function):
    """ONNX ``NonMaxSuppression`` (opset >= 11): PyTorch computes it, the exporter emits the op.

    boxes: ``[B, N, 4]`` xyxy; scores: ``[B, C, N]``. Returns ``selected: int64[K, 3]`` rows
    (batch, class, box index), per (batch, class) at most ``max_out`` boxes, by score.
    """

    @staticmethod
    def forward(ctx, boxes, scores, max_out, iou_thres, conf_thres):
        rows = []
        limit = int(max_out)
        for b in range(scores.shape[0]):
            cls, idx = (scores[b] > conf_thres).nonzero(as_tuple=True)
            if not cls.numel():
                continue
            keep = torchvision.ops.batched_nms(boxes[b, idx], scores[b, cls, idx], cls, float(iou_thres))
            cls_k, idx_k = cls[keep], idx[keep]
            # keep is sorted by score: the first `limit` of each class are its top `limit`
            rank = torch.zeros_like(cls_k)
            for c in cls_k.unique():
                m = cls_k == c
                rank[m] = torch.arange(int(m.sum()))
            m = rank < limit
            rows.append(torch.stack((torch.full_like(cls_k[m], b), cls_k[m], idx_k[m]), 1))
        return torch.cat(rows) if rows else torch.zeros((0, 3), dtype=torch.int64)

    @staticmethod
    def symbolic(g, boxes, scores, max_out, iou_thres, conf_thres):
        return g.op("NonMaxSuppression", boxes, scores, max_out, iou_thres, conf_thres)


class EndToEnd(nn.Module):
    """``model`` followed by class-aware (or, with ``agnostic``, class-agnostic) NMS; see the module
    docstring for inputs and outputs."""

    def __init__(self, model: nn.Module, max_det: int = 300, agnostic: bool = False) -> None:
        super().__init__()
        if max_det < 1:
            raise ValueError(f"--max-det must be >= 1 for an NMS graph, got {max_det}")
        self.model, self.max_det, self.agnostic = model, int(max_det), bool(agnostic)
        self.register_buffer("max_out", torch.tensor([self.max_det], dtype=torch.int64), persistent=False)

    def forward(
        self, images: torch.Tensor, conf_thres: torch.Tensor, iou_thres: torch.Tensor, multi_label: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(images)
        pred = out[0] if isinstance(out, (tuple, list)) else out
        boxes = xywh2xyxy(pred[..., :4])  # [B, N, 4]
        scores = pred[..., 5:] * pred[..., 4:5]  # [B, N, C] conf = obj * cls
        best = (scores == scores.amax(2, keepdim=True)).to(scores.dtype)
        scores = torch.where(multi_label > 0.5, scores, scores * best)  # single label: other classes 0
        if self.agnostic:  # the best class per box either way; the masking keeps multi_label an input
            return self._agnostic(boxes, scores, iou_thres, conf_thres)
        scores = scores.transpose(1, 2).contiguous()  # [B, C, N] as NonMaxSuppression wants
        b, _, n = scores.shape
        sel = _NonMaxSuppression.apply(boxes, scores, self.max_out, iou_thres, conf_thres)
        kept = torch.full_like(scores, -1.0)
        bi, ci, ni = sel[:, 0], sel[:, 1], sel[:, 2]
        kept[bi, ci, ni] = scores[bi, ci, ni]
        # pad so top-k always has max_det columns, whatever the number of anchors
        flat = torch.cat((kept.flatten(1), torch.full((b, self.max_det), -1.0, dtype=scores.dtype)), 1)
        conf, idx = flat.topk(self.max_det, dim=1)  # [B, max_det], by conf descending
        valid = conf >= 0
        box_idx = torch.where(valid, idx % n, torch.zeros_like(idx))
        cls = torch.div(idx, n, rounding_mode="floor").to(scores.dtype)
        xyxy = boxes.gather(1, box_idx.unsqueeze(-1).expand(-1, -1, 4))
        dets = torch.cat((xyxy, conf.unsqueeze(-1), cls.unsqueeze(-1)), 2) * valid.unsqueeze(-1).to(scores.dtype)
        return dets, valid.sum(1)

    def _agnostic(
        self, boxes: torch.Tensor, scores: torch.Tensor, iou_thres: torch.Tensor, conf_thres: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """boxes ``[B, N, 4]`` xyxy, scores ``[B, N, C]``: one NMS plane of best-class scores."""
        best, best_cls = scores.max(2)  # [B, N] each
        plane = best.unsqueeze(1)  # [B, 1, N]
        b = plane.shape[0]
        sel = _NonMaxSuppression.apply(boxes, plane, self.max_out, iou_thres, conf_thres)
        kept = torch.full_like(best, -1.0)
        kept[sel[:, 0], sel[:, 2]] = best[sel[:, 0], sel[:, 2]]
        flat = torch.cat((kept, torch.full((b, self.max_det), -1.0, dtype=best.dtype)), 1)
        conf, idx = flat.topk(self.max_det, dim=1)
        valid = conf >= 0
        box_idx = torch.where(valid, idx, torch.zeros_like(idx))
        cls = best_cls.gather(1, box_idx).to(best.dtype)
        xyxy = boxes.gather(1, box_idx.unsqueeze(-1).expand(-1, -1, 4))
        dets = torch.cat((xyxy, conf.unsqueeze(-1), cls.unsqueeze(-1)), 2) * valid.unsqueeze(-1).to(best.dtype)
        return dets, valid.sum(1)


def threshold_inputs(conf_thres: float, iou_thres: float, multi_label: bool) -> tuple[torch.Tensor, ...]:
    """The three threshold inputs of an :class:`EndToEnd` graph as float32 ``[1]`` tensors."""
    return (
        torch.tensor([float(conf_thres)]),
        torch.tensor([float(iou_thres)]),
        torch.tensor([1.0 if multi_label else 0.0]),
    )


def split_detections(dets: torch.Tensor, num: torch.Tensor) -> list[torch.Tensor]:
    """``[B, max_det, 6]`` + ``[B]`` -> list of B ``[n_i, 6]`` tensors (what ``non_max_suppression`` returns)."""
    return [d[: int(k)] for d, k in zip(dets, num)]


def compare_detections(
    ref: list[torch.Tensor],
    out: list[torch.Tensor],
    atol: float = 1e-3,
    rtol: float = 1e-4,
    score_atol: float = 1e-4,
    slack: float = 0.0,
) -> str | None:
    """None when per image the same detections come out, else a sentence saying how they differ.

    Order is not compared (equal scores may come out in any order): each reference row must
    match a distinct output row of the same class, score within ``score_atol`` and box within
    ``atol + rtol * |box|`` pixels. A row left over may match a left-over output row of the same
    class and score but another box: two overlapping boxes with *equal* scores (common in
    untrained models) are a tie that either NMS may break either way, and both answers are right.

    slack: rows left unmatched (both sides counted) tolerated per image, ``2 + slack * n``; 0 means
        none. Two scores 1e-9 apart (one computed by ONNX Runtime, one by PyTorch) can swap, and a
        swap changes which later overlapping boxes survive NMS; the export check allows a few such
        rows so an untrained model's near-ties do not fail an exact graph (a wrong graph misses most).
    """
    for i, (r, o) in enumerate(zip(ref, out)):
        allowed = int(2 + slack * max(len(r), len(o))) if slack else 0
        missing, extra = _unmatched(r, o, atol, rtol, score_atol)
        if len(missing) + extra <= allowed:
            continue
        if len(missing):
            x1, y1, x2, y2, conf, cls = r[missing[0]].tolist()
            return (
                f"image {i}: the Python NMS keeps ({x1:.1f}, {y1:.1f}, {x2:.1f}, {y2:.1f}) conf {conf:.4f} "
                f"class {int(cls)}, which the graph does not return ({len(missing)} such, {len(r)} kept)"
            )
        return f"image {i}: {len(o)} detections where the Python NMS keeps {len(r)}"
    return None


def _unmatched(r: torch.Tensor, o: torch.Tensor, atol: float, rtol: float, score_atol: float) -> tuple[list[int], int]:
    """(indices of reference rows without a partner, number of output rows without one)."""
    if not len(r) or not len(o):
        return list(range(len(r))), len(o)
    box_ok = ((r[:, None, :4] - o[None, :, :4]).abs() <= atol + rtol * r[:, None, :4].abs()).all(2)
    same_cls = r[:, None, 5] == o[None, :, 5]
    ok = box_ok & ((r[:, None, 4] - o[None, :, 4]).abs() <= score_atol) & same_cls
    tie = ((r[:, None, 4] - o[None, :, 4]).abs() <= 1e-6 + 1e-5 * r[:, None, 4]) & same_cls
    taken = torch.zeros(o.shape[0], dtype=torch.bool)
    left, missing = [], []
    for j in range(r.shape[0]):
        free = (ok[j] & ~taken).nonzero()
        if free.numel():
            taken[free[0, 0]] = True
        else:
            left.append(j)
    for j in left:  # second pass: a tie broken the other way
        free = (tie[j] & ~taken).nonzero()
        if free.numel():
            taken[free[0, 0]] = True
        else:
            missing.append(j)
    return missing, int((~taken).sum())
