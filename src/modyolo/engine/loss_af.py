"""The loss of the anchor-free head: BCE classification + CIoU box + DFL, task-aligned targets.

For predictions ``{"boxes": [B, 4*R, A], "scores": [B, C, A], "feats": [...]}`` (R = reg_max) and
yolov5-format targets ``Tensor[N, 6]`` = (image, class, cx, cy, w, h), 0-1 of the input size:

- targets are assigned by :class:`~modyolo.engine.assign_tal.TaskAlignedAssigner` on the detached
  predictions; ``S = max(1, sum of the soft class targets)`` normalises every term;
- cls: ``sum BCE(logits, soft targets) / S`` over every anchor and class;
- box: ``sum (1 - CIoU(pred, gt)) * w / S`` over positives, ``w`` = a positive's soft target sum;
- dfl: distribution focal loss of each side's distance (grid units, clamped below R - 1): cross
  entropy with the two bins around the true distance, weighted by proximity, mean over the 4 sides,
  times ``w``, ``/ S``;
- ``total = (box * gain_box + cls * gain_cls + dfl * gain_dfl) * B`` (summed over the batch like
  the yolov5 loss, so gradient accumulation keeps its meaning). Gains: hyp ``box_af`` (7.5),
  ``cls`` (0.5, not rescaled by class count for this head) and ``dfl`` (1.5).

End-to-end heads (one-to-many + one-to-one branches) are trained with both losses summed; the
one-to-one branch assigns a single positive per ground truth (``topk = 1``), the "consistent
matching" of YOLOv10 (same metric, alpha/beta, for both branches).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modyolo.engine.assign_tal import TaskAlignedAssigner, ciou_xyxy
from modyolo.nn.heads.anchor_free import bbox2dist, dist2bbox, make_anchor_points

LOSS_NAMES = ("box_loss", "cls_loss", "dfl_loss")


class AnchorFreeLoss:
    """Callable ``(preds, targets) -> (loss Tensor[1] summed over the batch, parts Tensor[3] box/cls/dfl)``."""

    names = LOSS_NAMES

    def __init__(
        self,
        model: nn.Module,
        box: float = 7.5,
        cls: float = 0.5,
        dfl: float = 1.5,
        topk: int = 10,
        alpha: float = 0.5,
        beta: float = 6.0,
    ) -> None:
        head = getattr(model, "head", None)
        if head is None or getattr(head, "loss_kind", None) != "anchor_free":
            raise TypeError(
                f"AnchorFreeLoss needs a model whose .head is the anchor-free head, got {type(head).__name__}"
            )
        self.head = head
        self.gains = (box, cls, dfl)
        self.nc, self.reg_max = int(head.nc), int(head.reg_max)
        self.topk, self.alpha, self.beta = topk, alpha, beta

    @classmethod
    def from_hyp(cls, model: nn.Module, hyp: Any) -> AnchorFreeLoss:
        return cls(
            model, box=float(getattr(hyp, "box_af", 7.5)), cls=float(hyp.cls), dfl=float(getattr(hyp, "dfl", 1.5))
        )

    def __call__(self, preds: Any, targets: Tensor) -> tuple[Tensor, Tensor]:
        preds = preds[1] if isinstance(preds, tuple) else preds  # eval output (pred, raw) during validation
        if "one2many" in preds:
            l1, p1 = self.branch_loss(preds["one2many"], targets, self.topk)
            l2, p2 = self.branch_loss(preds["one2one"], targets, 1)
            return l1 + l2, p1 + p2
        return self.branch_loss(preds, targets, self.topk)

    def branch_loss(self, preds: dict[str, Any], targets: Tensor, topk: int) -> tuple[Tensor, Tensor]:
        feats = preds["feats"]
        dist = preds["boxes"].float().permute(0, 2, 1).contiguous()  # [B, A, 4R]
        logits = preds["scores"].float().permute(0, 2, 1).contiguous()  # [B, A, C]
        device, bs = logits.device, logits.shape[0]
        strides = self.head.stride.to(device)
        points, stride_t = make_anchor_points([f.float() for f in feats], strides, 0.5)  # [A, 2], [A, 1]
        h, w = feats[0].shape[2:]
        imgsz = torch.tensor([w, h, w, h], device=device, dtype=torch.float32) * strides[0]
        gt_labels, gt_boxes, gt_mask = self._pad_targets(targets.to(device).float(), bs, imgsz)

        pred_boxes = self._decode(points, dist)  # xyxy, grid units of each anchor's level
        assigner = TaskAlignedAssigner(self.nc, topk, self.alpha, self.beta, strides.tolist())
        a = assigner(
            logits.detach().sigmoid(), pred_boxes.detach() * stride_t, points * stride_t, gt_labels, gt_boxes, gt_mask
        )
        total = a.target_scores.sum().clamp(min=1)
        lcls = F.binary_cross_entropy_with_logits(logits, a.target_scores, reduction="none").sum() / total

        fg = a.fg
        weight = a.target_scores.sum(-1)[fg].unsqueeze(-1)  # [P, 1]
        target_grid = a.target_boxes / stride_t  # [B, A, 4] grid units
        iou = ciou_xyxy(pred_boxes[fg], target_grid[fg]).unsqueeze(-1)
        lbox = ((1.0 - iou) * weight).sum() / total
        ltrb = bbox2dist(points, target_grid, self.reg_max)[fg]  # [P, 4]
        ldfl = (self._dfl(dist[fg].view(-1, self.reg_max), ltrb) * weight).sum() / total
        parts = torch.stack((lbox * self.gains[0], lcls * self.gains[1], ldfl * self.gains[2]))
        return parts.sum().view(1) * bs, parts.detach()

    def _decode(self, points: Tensor, dist: Tensor) -> Tensor:
        b, a, c = dist.shape
        proj = torch.arange(self.reg_max, device=dist.device, dtype=dist.dtype)
        d = dist.view(b, a, 4, c // 4).softmax(3).matmul(proj)
        return dist2bbox(d, points, xywh=False)

    def _dfl(self, logits: Tensor, target: Tensor) -> Tensor:
        """``logits [P*4, R]``, ``target [P, 4]`` distances -> ``[P, 1]`` mean over the 4 sides."""
        target = target.clamp(0, self.reg_max - 1 - 0.01)
        left = target.long()
        w_left = left + 1 - target
        logp = F.log_softmax(logits, dim=1)
        nll = -(
            logp.gather(1, left.view(-1, 1)).view(left.shape) * w_left
            + logp.gather(1, (left + 1).view(-1, 1)).view(left.shape) * (1 - w_left)
        )
        return nll.mean(-1, keepdim=True)

    @staticmethod
    def _pad_targets(targets: Tensor, bs: int, imgsz: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``[N, 6]`` -> labels ``[B, M, 1]``, xyxy pixel boxes ``[B, M, 4]``, mask ``[B, M, 1]``."""
        device = targets.device
        if targets.numel() == 0:
            z = torch.zeros(bs, 0, 1, device=device)
            return z, torch.zeros(bs, 0, 4, device=device), z
        img = targets[:, 0].long()
        counts = torch.bincount(img, minlength=bs)
        m = int(counts.max())
        order = torch.argsort(img, stable=True)
        img, rows = img[order], targets[order]
        starts = torch.cumsum(counts, 0) - counts
        slot = torch.arange(len(rows), device=device) - starts[img]
        out = torch.zeros(bs, m, 5, device=device)
        out[img, slot, 0] = rows[:, 1]
        xywh = rows[:, 2:6] * imgsz
        out[img, slot, 1:] = torch.cat((xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2), 1)
        mask = torch.zeros(bs, m, 1, device=device)
        mask[img, slot] = 1.0
        return out[..., :1], out[..., 1:], mask
