"""YOLOv7's OTA loss for the yolov7 heads (IDetect, IAuxDetect), selected by the head and ``loss_ota``.

Assignment, per image (Ge et al. 2021, "OTA", in its SimOTA form as yolov7 uses it):

1. candidates: yolov5's rule (:mod:`modyolo.engine.assign`): every anchor within ``anchor_t``
   of a box's shape, at the box's centre cell and the 2 nearest neighbours (``reach`` 0.5); the
   auxiliary head uses all 4 neighbours (``reach`` 1.0, 5 cells);
2. cost of each (box, candidate) pair = class BCE of ``sqrt(sigmoid(cls) * sigmoid(obj))`` +
   3 * ``-log(IoU)``, with the candidate's decoded box, over *all* candidates of the image;
3. dynamic k per box = ``int(sum of its 10 best IoUs)`` (20 with an auxiliary head; at least 1);
   the box takes its k cheapest candidates, and a candidate claimed by several boxes goes to the cheapest one.

The loss on the matched cells is then yolov5's (CIoU box loss, IoU-target objectness with the
level balance, class BCE; :class:`~modyolo.engine.loss.DetectionLoss` supplies the BCE / focal /
Varifocal choice). ``IAuxDetect`` adds the same terms for its auxiliary maps at weight 0.25, with
targets matched on the *lead* predictions and 5-cell candidates, as yolov7 does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modyolo.engine.hyp import Hyp
from modyolo.engine.loss import DetectionLoss, bbox_ciou
from modyolo.nn.head import decode_xywh

AUX_WEIGHT = 0.25
TOPK_IOU = 10  # dynamic k sums a box's 10 best candidate IoUs (IDetect)
TOPK_IOU_AUX = 20  # ... its 20 best with an auxiliary head (IAuxDetect), as in yolov7
IOU_COST = 3.0


def yolov7_loss(model: nn.Module, hyp: Hyp, loss_type: str | None = None) -> DetectionLoss:
    """The loss for a model with a yolov7 head (``head.uses_ota``): OTA when the hyp's ``loss_ota``
    is 1 (yolov7's hyp files and the default), else yolov5's loss on the lead maps."""
    return (OTALoss if hyp.loss_ota == 1 else LeadDetectionLoss)(model, hyp, loss_type=loss_type)


class LeadDetectionLoss(DetectionLoss):
    """yolov5's loss on the lead maps only (``loss_ota: 0``): IAuxDetect's auxiliary maps are unused."""

    def __call__(self, preds: list[Tensor], targets: Tensor) -> tuple[Tensor, Tensor]:
        return super().__call__(list(preds)[: self.nl], targets)


@dataclass
class Candidates:
    """Candidate cells of one level, one row each: indices into ``(bs, na, ny, nx, no)`` and the
    ground-truth row (of ``targets``) that proposed them, plus the anchor's size in grid units."""

    image: Tensor
    anchor: Tensor
    gy: Tensor
    gx: Tensor
    gt: Tensor
    anchor_wh: Tensor


def candidates(
    shapes: list[tuple[int, int]], targets: Tensor, anchors: Tensor, anchor_t: float, reach: float = 0.5
) -> list[Candidates]:
    """yolov5's candidate cells per level. targets: Tensor[N, 6] (image, cls, cx, cy, w, h) 0-1;
    anchors: Tensor[nl, na, 2] grid units. ``reach`` 0.5: centre + 2 nearest neighbours (yolov5);
    1.0: centre + all 4 neighbours away from the border (yolov7's auxiliary targets)."""
    device = targets.device
    na, nt = anchors.shape[1], targets.shape[0]
    gt_index = torch.arange(nt, device=device, dtype=torch.float32)
    rows = torch.cat((targets.float(), gt_index[:, None]), 1)  # (nt, 7)
    anchor_idx = torch.arange(na, device=device, dtype=torch.float32).view(na, 1, 1).expand(na, nt, 1)
    all_t = torch.cat((rows.unsqueeze(0).expand(na, nt, 7), anchor_idx), 2)  # (na, nt, 8)
    steps = torch.tensor([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1]], device=device, dtype=torch.float32) * reach
    out = []
    for level, (ny, nx) in enumerate(shapes):
        gain = torch.tensor([1, 1, nx, ny, nx, ny, 1, 1], device=device, dtype=torch.float32)
        t = all_t * gain
        if nt:
            ratio = t[..., 4:6] / anchors[level].to(device).float()[:, None]
            t = t[torch.max(ratio, 1.0 / ratio).max(2).values < anchor_t]
            gxy = t[:, 2:4]
            gxy_inv = torch.tensor([nx, ny], device=device, dtype=torch.float32) - gxy
            left, up = ((gxy % 1 < reach) & (gxy > 1)).T
            right, down = ((gxy_inv % 1 < reach) & (gxy_inv > 1)).T
            use = torch.stack((torch.ones_like(left), left, up, right, down))
            off = (torch.zeros_like(gxy)[None] + steps[:, None])[use]
            t = t.unsqueeze(0).expand(5, -1, -1)[use]
        else:
            t = all_t[0]
            off = torch.zeros_like(t[:, 2:4])
        gij = (t[:, 2:4] - off).long()
        gij[:, 0].clamp_(0, nx - 1)
        gij[:, 1].clamp_(0, ny - 1)
        a = t[:, 7].long()
        out.append(Candidates(t[:, 0].long(), a, gij[:, 1], gij[:, 0], t[:, 6].long(), anchors[level].to(device)[a]))
    return out


def _xyxy(xywh: Tensor) -> Tensor:
    return torch.cat((xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2), 1)


def _pairwise_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of every box in ``a: [N, 4]`` with every box in ``b: [M, 4]`` (xyxy) -> ``[N, M]``."""
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(2)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(1)
    return inter / (area_a[:, None] + area_b[None] - inter + 1e-9)


@dataclass
class Matched:
    """The positives of one level after OTA: indices, the matched target rows and anchor sizes."""

    image: Tensor
    anchor: Tensor
    gy: Tensor
    gx: Tensor
    target: Tensor  # [n, 6] rows of ``targets``
    anchor_wh: Tensor


@torch.no_grad()
def ota_match(
    preds: list[Tensor], targets: Tensor, cands: list[Candidates], strides: list[float], nc: int, topk: int = TOPK_IOU
) -> list[Matched]:
    """Dynamic-k matching by cost (see the module docstring). preds: raw lead maps
    ``[bs, na, ny, nx, 5 + nc]``; returns one :class:`Matched` per level."""
    device = targets.device
    nl = len(preds)
    per_level: list[list[tuple]] = [[] for _ in range(nl)]
    for b in range(preds[0].shape[0]):
        gt_rows = (targets[:, 0] == b).nonzero().view(-1)
        if not len(gt_rows):
            continue
        parts = []
        for i, (p, c) in enumerate(zip(preds, cands)):
            sel = c.image == b
            a, gy, gx, awh = c.anchor[sel], c.gy[sel], c.gx[sel], c.anchor_wh[sel]
            ps = p[b, a, gy, gx].float()
            grid = torch.stack((gx, gy), 1).float()
            xy, wh = decode_xywh(ps[:, :2].sigmoid(), ps[:, 2:4].sigmoid(), awh)  # cells, from the cell
            xy, wh = (xy + grid) * strides[i], wh * strides[i]  # pixels
            level = torch.full_like(a, i)
            parts.append((a, gy, gx, awh, level, _xyxy(torch.cat((xy, wh), 1)), ps[:, 4:5], ps[:, 5:]))
        a, gy, gx, awh, level, pbox, pobj, pcls = (torch.cat(x) for x in zip(*parts))
        if not len(a):
            continue
        ny, nx = preds[0].shape[2:4]
        size = torch.tensor([nx * strides[0], ny * strides[0]] * 2, device=device)
        gts = targets[gt_rows]
        iou = _pairwise_iou(_xyxy(gts[:, 2:6] * size), pbox)  # [n_gt, n_cand]
        k = torch.topk(iou, min(topk, iou.shape[1]), dim=1).values.sum(1).int().clamp(min=1)
        score = (pcls.sigmoid() * pobj.sigmoid()).sqrt()  # [n_cand, nc]
        onehot = F.one_hot(gts[:, 1].long(), nc).float()  # [n_gt, nc]
        logit = torch.log(score / (1 - score))
        cls_cost = F.binary_cross_entropy_with_logits(
            logit[None].expand(len(gts), -1, -1), onehot[:, None].expand(-1, len(a), -1), reduction="none"
        ).sum(-1)
        cost = cls_cost + IOU_COST * -torch.log(iou + 1e-8)
        match = torch.zeros_like(cost, dtype=torch.bool)
        for g in range(len(gts)):
            match[g, torch.topk(cost[g], int(k[g]), largest=False).indices] = True
        shared = match.sum(0) > 1
        if shared.any():  # a candidate claimed by several boxes goes to the cheapest
            match[:, shared] = False
            match[cost[:, shared].argmin(0), shared.nonzero().view(-1)] = True
        fg = match.any(0)
        owner = match[:, fg].float().argmax(0)
        for i in range(nl):
            on = level[fg] == i
            per_level[i].append(
                (torch.full_like(a[fg][on], b), a[fg][on], gy[fg][on], gx[fg][on], gts[owner[on]], awh[fg][on])
            )
    out = []
    for i in range(nl):
        if per_level[i]:
            out.append(Matched(*(torch.cat(x) for x in zip(*per_level[i]))))
        else:
            empty = torch.zeros(0, dtype=torch.long, device=device)
            out.append(
                Matched(empty, empty, empty, empty, torch.zeros(0, 6, device=device), torch.zeros(0, 2, device=device))
            )
    return out


class OTALoss(DetectionLoss):
    """yolov7's ``ComputeLossOTA`` / ``ComputeLossAuxOTA`` for a model whose head is IDetect /
    IAuxDetect. Called like :class:`DetectionLoss`: ``(preds, targets) -> (loss * bs, parts[3])``;
    preds: the head's training output (``nl`` lead maps, then ``nl`` auxiliary maps for IAuxDetect)."""

    def __call__(self, preds: list[Tensor], targets: Tensor) -> tuple[Tensor, Tensor]:
        preds = [p.float() for p in preds]
        lead, aux = preds[: self.nl], preds[self.nl :]
        device = lead[0].device
        targets = targets.to(device)
        shapes = [(p.shape[2], p.shape[3]) for p in lead]
        anchors = self.head.anchors.detach()
        strides = [float(s) for s in self.head.stride]
        topk = TOPK_IOU_AUX if aux else TOPK_IOU
        matched = ota_match(
            lead, targets, candidates(shapes, targets, anchors, self.hyp.anchor_t), strides, self.nc, topk
        )
        parts = self._terms(lead, matched, 1.0)
        if aux:
            matched_aux = ota_match(
                lead,
                targets,
                candidates(shapes, targets, anchors, self.hyp.anchor_t, reach=1.0),
                strides,
                self.nc,
                topk,
            )
            parts = parts + self._terms(aux, matched_aux, AUX_WEIGHT)
        lbox, lobj, lcls = parts[0:1] * self.hyp.box, parts[1:2] * self.hyp.obj, parts[2:3] * self.hyp.cls
        bs = lead[0].shape[0]
        return (lbox + lobj + lcls) * bs, torch.cat((lbox, lobj, lcls)).detach()

    def _terms(self, preds: list[Tensor], matched: list[Matched], weight: float) -> Tensor:
        """Unscaled (box, obj, cls) sums over levels for one set of maps -> Tensor[3]."""
        device = preds[0].device
        lbox = torch.zeros((), device=device)
        lobj = torch.zeros((), device=device)
        lcls = torch.zeros((), device=device)
        for i, (p, m) in enumerate(zip(preds, matched)):
            tobj = torch.zeros(p.shape[:4], device=device)
            pos = torch.zeros(p.shape[:4], device=device, dtype=torch.bool)
            if len(m.image):
                ny, nx = p.shape[2:4]
                ps = p[m.image, m.anchor, m.gy, m.gx]
                pbox = torch.cat(decode_xywh(ps[:, :2].sigmoid(), ps[:, 2:4].sigmoid(), m.anchor_wh), 1)
                tbox = m.target[:, 2:6] * torch.tensor([nx, ny, nx, ny], device=device)
                tbox[:, :2] -= torch.stack((m.gx, m.gy), 1)
                iou = bbox_ciou(pbox, tbox)
                lbox = lbox + (1.0 - iou).mean()
                tobj[m.image, m.anchor, m.gy, m.gx] = iou.detach().clamp(0).to(tobj.dtype)
                pos[m.image, m.anchor, m.gy, m.gx] = True
                if self.nc > 1:
                    rows = torch.arange(len(ps), device=device)
                    cls = m.target[:, 1].long()
                    tcls = torch.full_like(ps[:, 5:], self.cn)
                    tcls[rows, cls] = self.cp
                    cls_pos = torch.zeros_like(tcls, dtype=torch.bool)
                    cls_pos[rows, cls] = True
                    lcls = lcls + self._bce(ps[:, 5:], tcls, cls_pos, self.hyp.cls_pw)
            lobj = lobj + self._bce(p[..., 4], tobj, pos, self.hyp.obj_pw) * self.balance[i]
        return torch.stack((lbox, lobj, lcls)) * weight
