"""Task-aligned assignment (TOOD, Feng et al. 2021) for the anchor-free head.

Every anchor point (grid cell centre) whose centre lies inside a ground-truth box is a candidate
for it. A candidate's alignment metric is ``t = s**alpha * u**beta`` with ``s`` the predicted
score of the box's class and ``u`` the CIoU (clamped at 0) of the predicted box with the ground
truth: an anchor is trusted when classification *and* localisation already agree. Each ground
truth takes its ``topk`` candidates by ``t``; an anchor claimed by several ground truths keeps
the one it overlaps most. The soft class target of a positive is
``t / max_t(gt) * max_u(gt)`` (normalised per ground truth), so the classifier learns a score
that ranks boxes by localisation quality, which is what NMS and mAP rank by.

Ground-truth sides shorter than the second level's stride are widened to it before the
"centre inside" test (as ultralytics 8.4 does) so that tiny objects still get candidates.

Shapes: ``B`` images, ``A`` anchor points, ``M`` padded ground truths per image, ``C`` classes.
All boxes xyxy in input pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


def ciou_xyxy(box1: Tensor, box2: Tensor, eps: float = 1e-7) -> Tensor:
    """Complete IoU of paired xyxy boxes ``[..., 4]`` -> ``[...]`` (heights get ``eps``)."""
    b1x1, b1y1, b1x2, b1y2 = box1.unbind(-1)
    b2x1, b2y1, b2x2, b2y2 = box2.unbind(-1)
    w1, h1 = b1x2 - b1x1, b1y2 - b1y1 + eps
    w2, h2 = b2x2 - b2x1, b2y2 - b2y1 + eps
    inter = (torch.minimum(b1x2, b2x2) - torch.maximum(b1x1, b2x1)).clamp(0) * (
        torch.minimum(b1y2, b2y2) - torch.maximum(b1y1, b2y1)
    ).clamp(0)
    iou = inter / (w1 * h1 + w2 * h2 - inter + eps)
    cw = torch.maximum(b1x2, b2x2) - torch.minimum(b1x1, b2x1)
    ch = torch.maximum(b1y2, b2y2) - torch.minimum(b1y1, b2y1)
    diag2 = cw**2 + ch**2 + eps
    rho2 = ((b2x1 + b2x2 - b1x1 - b1x2) ** 2 + (b2y1 + b2y2 - b1y1 - b1y2) ** 2) / 4
    v = (4 / math.pi**2) * (torch.atan(w2 / h2) - torch.atan(w1 / h1)) ** 2
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / diag2 + v * alpha)


@dataclass
class Assignment:
    """target_boxes ``[B, A, 4]`` xyxy pixels; target_scores ``[B, A, C]`` soft one-hot (0 off fg);
    fg ``[B, A]`` bool; gt_index ``[B, A]`` long (which padded ground truth each anchor got)."""

    target_boxes: Tensor
    target_scores: Tensor
    fg: Tensor
    gt_index: Tensor


class TaskAlignedAssigner:
    """``topk`` positives per ground truth by ``score**alpha * CIoU**beta`` (YOLOv8: 10, 0.5, 6)."""

    def __init__(
        self,
        num_classes: int,
        topk: int = 10,
        alpha: float = 0.5,
        beta: float = 6.0,
        strides: list[float] | None = None,
        eps: float = 1e-9,
    ) -> None:
        self.nc, self.topk, self.alpha, self.beta, self.eps = num_classes, topk, alpha, beta, eps
        strides = strides or [8.0, 16.0, 32.0]
        self.min_side = float(strides[1] if len(strides) > 1 else strides[0])

    @torch.no_grad()
    def __call__(
        self, scores: Tensor, boxes: Tensor, points: Tensor, gt_labels: Tensor, gt_boxes: Tensor, gt_mask: Tensor
    ) -> Assignment:
        """scores ``[B, A, C]`` (sigmoid), boxes ``[B, A, 4]``, points ``[A, 2]``, gt_labels ``[B, M, 1]``,
        gt_boxes ``[B, M, 4]``, gt_mask ``[B, M, 1]`` (1 = a real ground truth, 0 = padding)."""
        b, a, _ = scores.shape
        m = gt_boxes.shape[1]
        if m == 0:
            return Assignment(
                torch.zeros_like(boxes),
                torch.zeros_like(scores),
                torch.zeros(b, a, dtype=torch.bool, device=scores.device),
                torch.zeros(b, a, dtype=torch.long, device=scores.device),
            )
        inside = self._centres_inside(points, gt_boxes, gt_mask)  # [B, M, A]
        candidate = inside & gt_mask.bool()
        metric, overlap = self._metrics(scores, boxes, gt_labels, gt_boxes, candidate)
        positive = self._topk(metric, gt_mask.bool().expand(-1, -1, self.topk)) * inside * gt_mask.bool()
        gt_index, fg, positive = self._resolve(positive, overlap)
        labels = gt_labels.long().flatten()[gt_index + torch.arange(b, device=gt_index.device)[:, None] * m]
        target_boxes = gt_boxes.reshape(-1, 4)[gt_index + torch.arange(b, device=gt_index.device)[:, None] * m]
        one_hot = torch.zeros(b, a, self.nc, dtype=scores.dtype, device=scores.device)
        one_hot.scatter_(2, labels.clamp(0).unsqueeze(-1), 1)
        one_hot = one_hot * fg[..., None]
        metric = metric * positive
        overlap = overlap * positive
        norm = metric * overlap.amax(-1, keepdim=True) / (metric.amax(-1, keepdim=True) + self.eps)
        return Assignment(target_boxes, one_hot * norm.amax(-2).unsqueeze(-1), fg.bool(), gt_index)

    def _centres_inside(self, points: Tensor, gt_boxes: Tensor, gt_mask: Tensor) -> Tensor:
        centre = (gt_boxes[..., :2] + gt_boxes[..., 2:]) / 2
        wh = gt_boxes[..., 2:] - gt_boxes[..., :2]
        small = (wh < self.min_side) & gt_mask.bool()
        wh = torch.where(small, torch.full_like(wh, self.min_side), wh)
        lt, rb = (centre - wh / 2).unsqueeze(2), (centre + wh / 2).unsqueeze(2)  # [B, M, 1, 2]
        d = torch.cat((points - lt, rb - points), -1)  # [B, M, A, 4]
        return d.amin(-1) > self.eps

    def _metrics(
        self, scores: Tensor, boxes: Tensor, gt_labels: Tensor, gt_boxes: Tensor, candidate: Tensor
    ) -> tuple[Tensor, Tensor]:
        bi, mi, ai = candidate.nonzero(as_tuple=True)
        s = scores[bi, ai, gt_labels[bi, mi, 0].long()]
        u = ciou_xyxy(gt_boxes[bi, mi], boxes[bi, ai]).clamp(0)
        overlap = torch.zeros(candidate.shape, dtype=boxes.dtype, device=boxes.device)
        metric = torch.zeros(candidate.shape, dtype=scores.dtype, device=scores.device)
        overlap[bi, mi, ai] = u.to(overlap.dtype)
        metric[bi, mi, ai] = (s.pow(self.alpha) * u.pow(self.beta)).to(metric.dtype)
        return metric, overlap

    def _topk(self, metric: Tensor, valid: Tensor) -> Tensor:
        """1 at each ground truth's ``topk`` anchors by metric; padding rows select nothing."""
        idx = metric.topk(self.topk, dim=-1).indices.masked_fill(~valid, 0)
        count = torch.zeros(metric.shape, dtype=torch.int8, device=metric.device)
        count.scatter_add_(-1, idx, torch.ones_like(idx, dtype=torch.int8))
        return count.masked_fill(count > 1, 0)  # the 0s of padded rows pile up on anchor 0: drop them

    @staticmethod
    def _resolve(positive: Tensor, overlap: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """An anchor positive for several ground truths keeps the one with the highest CIoU."""
        claims = positive.sum(-2)  # [B, A]
        best = torch.zeros_like(positive)
        best.scatter_(1, overlap.argmax(1, keepdim=True), 1)
        positive = torch.where((claims > 1).unsqueeze(1), best, positive)
        fg, gt_index = positive.max(-2)
        return gt_index, fg, positive
