"""The detection loss: yolov5 7.0's, plus an IoU-aware Varifocal option.

Per level ``i`` with predictions ``p: (bs, na, ny, nx, 5 + nc)`` (raw logits; xywh 0:4, obj 4,
classes 5:) and the positives from :func:`modyolo.engine.assign.build_targets`:

- box: ``mean(1 - CIoU(decoded box, target box))`` over positives, with yolov5's decoder
  ``xy = 2*sigmoid(t) - 0.5`` (cells), ``wh = (2*sigmoid(t))**2 * anchor``;
- objectness: BCE over *every* cell against a target that is 0 at negatives and the detached
  IoU (clamped at 0) of the predicted box with its ground truth at positives, times the level
  balance ``[4.0, 1.0, 0.4]`` (P3 has most cells and smallest objects);
- class (nc > 1 only): BCE at positives against label-smoothed one-hot targets
  ``(cp, cn) = (1 - eps/2, eps/2)``;
- BCE positive weights ``cls_pw`` / ``obj_pw``; focal modulation when ``fl_gamma > 0``;
- ``total = (box*hyp.box + obj*hyp.obj + cls*hyp.cls) * bs`` (yolov5 returns the loss summed over
  the batch so that gradient accumulation to a nominal batch of 64 keeps the step size).

The hyp gains must first be scaled for the model with :func:`scale_loss_gains` (once, by the
trainer), as yolov5's ``train.py`` does.

**Varifocal option** (``loss_type="vfl"``, VarifocalNet, Zhang et al. 2021). yolov5 scores a box
as ``sigmoid(obj) * sigmoid(cls_c)``; VFL wants that score to be the IoU-aware classification
score (IACS). modyolo splits it across the two heads:

- the *objectness* head learns the localisation quality: ``VFL(sigmoid(obj), q)`` with ``q`` =
  the detached IoU of the predicted box with its matched ground truth at positives and 0
  elsewhere; ``VFL = BCE(p, q) * w`` with ``w = q`` at positives (high-quality positives count
  more) and ``w = alpha * p**gamma`` at negatives (easy negatives, which are most cells, count
  almost nothing). Reduced as yolov5 reduces objectness (mean over cells, level balance), so the
  shipped ``obj`` gains keep their meaning;
- the *class* head learns which class (nc > 1): ``VFL(sigmoid(cls), t)`` at positives with ``t``
  the label-smoothed one-hot, so the matched class keeps full BCE weight and the other classes
  are down-weighted by ``alpha * p**gamma`` unless the network is confidently wrong.

The product ``sigmoid(obj) * sigmoid(cls_c)`` then estimates ``IoU * P(class c)``: the IACS that
NMS and mAP rank by. ``fl_gamma`` is ignored with ``vfl`` (VFL carries its own focal term).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modyolo.engine.assign import build_targets
from modyolo.engine.hyp import Hyp
from modyolo.nn.head import decode_xywh

LOGGER = logging.getLogger(__name__)

# Objectness weight per level, P3 first: more cells and smaller objects need a larger weight.
LEVEL_BALANCE = {3: (4.0, 1.0, 0.4)}
LEVEL_BALANCE_OTHER = (4.0, 1.0, 0.25, 0.06, 0.02)


def scale_loss_gains(hyp: Hyp, nl: int, nc: int, imgsz: int) -> Hyp:
    """Scale the loss gains for the model, as yolov5's ``train.py`` does before training.

    The shipped gains were tuned for 3 levels, 80 classes and 640 px: the box gain is per level
    (``* 3/nl``), the class BCE is averaged over classes so its gain grows with ``nc/80``, and the
    objectness BCE is averaged over cells so its gain grows with the pixel count ``(imgsz/640)**2``.
    Returns a new :class:`Hyp`; call it once (scaling twice would shrink the gains again).
    """
    layers = 3 / nl
    return dataclasses.replace(
        hyp,
        box=hyp.box * layers,
        cls=hyp.cls * nc / 80 * layers,
        obj=hyp.obj * (imgsz / 640) ** 2 * layers,
    )


def bbox_ciou(box1: Tensor, box2: Tensor, eps: float = 1e-7) -> Tensor:
    """Complete IoU of paired boxes. box1, box2: Tensor[n, 4] xywh (any unit) -> Tensor[n].

    CIoU = IoU - centre distance² / enclosing diagonal² - alpha * v, where v measures the
    aspect-ratio mismatch and alpha (no gradient, as in the paper) weighs it.
    """
    (x1, y1, w1, h1), (x2, y2, w2, h2) = box1.unbind(-1), box2.unbind(-1)
    b1x1, b1x2, b1y1, b1y2 = x1 - w1 / 2, x1 + w1 / 2, y1 - h1 / 2, y1 + h1 / 2
    b2x1, b2x2, b2y1, b2y2 = x2 - w2 / 2, x2 + w2 / 2, y2 - h2 / 2, y2 + h2 / 2
    inter = (torch.min(b1x2, b2x2) - torch.max(b1x1, b2x1)).clamp(0) * (
        torch.min(b1y2, b2y2) - torch.max(b1y1, b2y1)
    ).clamp(0)
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    cw = torch.max(b1x2, b2x2) - torch.min(b1x1, b2x1)
    ch = torch.max(b1y2, b2y2) - torch.min(b1y1, b2y1)
    c2 = cw**2 + ch**2 + eps
    rho2 = (x2 - x1) ** 2 + (y2 - y1) ** 2
    v = (4 / math.pi**2) * (torch.atan(w2 / h2.clamp(eps)) - torch.atan(w1 / h1.clamp(eps))).pow(2)
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / c2 + v * alpha)


def focal_bce(logits: Tensor, target: Tensor, pos_weight: Tensor, gamma: float, alpha: float = 0.25) -> Tensor:
    """Mean focal BCE (Lin et al.): BCE * alpha_t * (1 - p_t)**gamma, as yolov5's FocalLoss."""
    bce = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight, reduction="none")
    p = logits.sigmoid()
    p_t = target * p + (1 - target) * (1 - p)
    alpha_t = target * alpha + (1 - target) * (1 - alpha)
    return (bce * alpha_t * (1.0 - p_t) ** gamma).mean()


def varifocal_bce(
    logits: Tensor, q: Tensor, positive: Tensor, pos_weight: Tensor, alpha: float, gamma: float
) -> Tensor:
    """Mean Varifocal loss (Zhang et al. 2021) for targets ``q`` in [0, 1].

    ``BCE(p, q) * w`` with ``w = q`` where ``positive`` and ``w = alpha * p**gamma`` elsewhere; the
    weight carries no gradient (as in VarifocalNet). ``positive`` is a bool mask shaped like ``q``
    (not ``q > 0``, so that label-smoothed negatives with ``q = eps/2`` still count as negatives).
    """
    bce = F.binary_cross_entropy_with_logits(logits, q, pos_weight=pos_weight, reduction="none")
    with torch.no_grad():
        p = logits.sigmoid()
        weight = torch.where(positive, q, alpha * p.pow(gamma))
    return (bce * weight).mean()


class DetectionLoss:
    """yolov5's detection loss (or its Varifocal variant) for a model with an anchor ``head``.

    model: has ``.head`` with ``nc``, ``nl``, ``na`` and ``anchors: Tensor[nl, na, 2]`` in grid
        units (read at every call, so autoanchor and EMA swaps are seen).
    hyp: gains already scaled by :func:`scale_loss_gains`.
    """

    def __init__(
        self, model: nn.Module, hyp: Hyp, loss_type: str | None = None, label_smoothing: float | None = None
    ) -> None:
        head = getattr(model, "head", None)
        if head is None or not hasattr(head, "anchors"):
            raise TypeError(
                f"DetectionLoss needs a model with an anchor-based .head (nc, nl, na, anchors); "
                f"{type(model).__name__} has none"
            )
        self.head: Any = head  # duck-typed: Detect, IDetect, or any head with that protocol
        self.hyp = hyp
        self.loss_type = (loss_type or hyp.loss).lower()
        if self.loss_type not in ("bce", "vfl"):
            raise ValueError(f"loss_type must be 'bce' or 'vfl', got {loss_type!r}")
        eps = hyp.label_smoothing if label_smoothing is None else label_smoothing
        self.cp, self.cn = 1.0 - 0.5 * eps, 0.5 * eps
        self.nc, self.nl, self.na = int(self.head.nc), int(self.head.nl), int(self.head.na)
        self.balance = LEVEL_BALANCE.get(self.nl, LEVEL_BALANCE_OTHER)
        if self.loss_type == "vfl" and hyp.fl_gamma > 0:
            LOGGER.warning("fl_gamma=%s is ignored with the Varifocal loss (it has its own vfl_gamma)", hyp.fl_gamma)

    def _bce(self, logits: Tensor, target: Tensor, positive: Tensor, pos_weight: float) -> Tensor:
        """The configured binary loss (BCE, focal BCE or Varifocal), mean over elements."""
        pw = torch.tensor([pos_weight], device=logits.device, dtype=logits.dtype)
        if self.loss_type == "vfl":
            return varifocal_bce(logits, target, positive, pw, self.hyp.vfl_alpha, self.hyp.vfl_gamma)
        if self.hyp.fl_gamma > 0:
            return focal_bce(logits, target, pw, self.hyp.fl_gamma)
        return F.binary_cross_entropy_with_logits(logits, target, pos_weight=pw)

    def __call__(self, preds: list[Tensor], targets: Tensor) -> tuple[Tensor, Tensor]:
        """preds: nl tensors (bs, na, ny, nx, 5 + nc) raw; targets: Tensor[N, 6] (img, cls, cx, cy, w, h) 0-1.

        Returns ``(loss: Tensor[1], summed over the batch, parts: Tensor[3] (box, obj, cls) detached)``.
        """
        device = preds[0].device
        # The loss is computed in fp32 even under autocast: BCE on bf16 logits loses the small
        # objectness probabilities of the many negative cells.
        preds = [p.float() for p in preds]
        lbox = torch.zeros(1, device=device)
        lobj = torch.zeros(1, device=device)
        lcls = torch.zeros(1, device=device)
        shapes = [(p.shape[2], p.shape[3]) for p in preds]
        levels = build_targets(shapes, targets.to(device), self.head.anchors.detach(), self.hyp.anchor_t)
        for i, (p, t) in enumerate(zip(preds, levels)):
            tobj = torch.zeros(p.shape[:4], device=device)
            pos = torch.zeros(p.shape[:4], device=device, dtype=torch.bool)
            if len(t):
                ps = p[t.image, t.anchor, t.gy, t.gx]  # (n, 5 + nc)
                pxy, pwh = decode_xywh(ps[:, :2].sigmoid(), ps[:, 2:4].sigmoid(), t.anchor_wh)  # grid cells
                iou = bbox_ciou(torch.cat((pxy, pwh), 1), t.box)
                lbox = lbox + (1.0 - iou).mean()
                # Objectness target = how well this anchor already fits its box (gr = 1.0). With
                # duplicate (image, anchor, cell) positives the last write wins, as in yolov5.
                tobj[t.image, t.anchor, t.gy, t.gx] = iou.detach().clamp(0).to(tobj.dtype)
                pos[t.image, t.anchor, t.gy, t.gx] = True
                if self.nc > 1:
                    rows = torch.arange(len(t), device=device)
                    tcls = torch.full_like(ps[:, 5:], self.cn)
                    tcls[rows, t.cls] = self.cp
                    cls_pos = torch.zeros_like(tcls, dtype=torch.bool)
                    cls_pos[rows, t.cls] = True
                    lcls = lcls + self._bce(ps[:, 5:], tcls, cls_pos, self.hyp.cls_pw)
            lobj = lobj + self._bce(p[..., 4], tobj, pos, self.hyp.obj_pw) * self.balance[i]
        lbox = lbox * self.hyp.box
        lobj = lobj * self.hyp.obj
        lcls = lcls * self.hyp.cls
        bs = preds[0].shape[0]
        return (lbox + lobj + lcls) * bs, torch.cat((lbox, lobj, lcls)).detach()
