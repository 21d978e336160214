"""Target assignment: which anchors at which grid cells learn which ground-truth box.

yolov5's rule, per output level:

1. a ground-truth box is matched to every anchor whose width and height ratios to the box are
   all within ``anchor_t`` (``max(w/wa, wa/w, h/ha, ha/h) < anchor_t``) — shape, not IoU;
2. it is assigned to the cell holding its centre and to the two neighbour cells nearest to the
   centre (left or right, up or down: a centre in the left half of its cell also goes to the
   cell on the left), because the box decoder ``xy = 2*sigmoid(t) - 0.5`` reaches from -0.5 to
   1.5 cells, so those neighbours can predict the box too. This triples the positives.

Everything here is in grid units of the level (pixels / stride).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

# Candidate cell offsets: the centre cell, then right/down/left/up neighbours of the centre.
# A neighbour is used when the centre lies in the half of its cell that faces it; the offset is
# *subtracted* from the centre, so (1, 0) selects the cell on the left.
_OFFSETS = torch.tensor([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1]], dtype=torch.float32)
_HALF = 0.5


@dataclass
class LevelTargets:
    """The positives of one output level; all tensors have one row per positive (n of them).

    image, anchor, gy, gx: Tensor[n] long — index into the level's prediction ``(bs, na, ny, nx, no)``.
    box: Tensor[n, 4] — target ``(cx - gx, cy - gy, w, h)`` in grid units, i.e. the centre
        relative to the assigned cell (in [-0.5, 1.5]) and the size.
    cls: Tensor[n] long — class index.
    anchor_wh: Tensor[n, 2] — the matched anchor's size in grid units.
    """

    image: Tensor
    anchor: Tensor
    gy: Tensor
    gx: Tensor
    box: Tensor
    cls: Tensor
    anchor_wh: Tensor

    def __len__(self) -> int:
        return int(self.image.shape[0])


def build_targets(
    shapes: list[tuple[int, int]],
    targets: Tensor,
    anchors: Tensor,
    anchor_t: float,
) -> list[LevelTargets]:
    """Assign ground truth to (image, anchor, cell) positives on every level.

    shapes: ``(ny, nx)`` grid size of each level.
    targets: Tensor[N, 6] = (image index, cls, cx, cy, w, h), box normalised to 0-1.
    anchors: Tensor[nl, na, 2] anchor (w, h) in grid units of each level.
    anchor_t: largest allowed side ratio between a box and an anchor.
    Returns one :class:`LevelTargets` per level.
    """
    device = targets.device
    na = anchors.shape[1]
    nt = targets.shape[0]
    anchors = anchors.to(device=device, dtype=torch.float32)
    # (na, nt, 7): every target once per anchor, with the anchor index as the last column.
    anchor_idx = torch.arange(na, device=device, dtype=torch.float32).view(na, 1).expand(na, nt)
    all_t = torch.cat((targets.float().unsqueeze(0).expand(na, nt, 6), anchor_idx[..., None]), 2)
    offsets = _OFFSETS.to(device) * _HALF
    out = []
    for level, (ny, nx) in enumerate(shapes):
        gain = torch.tensor([1, 1, nx, ny, nx, ny, 1], device=device, dtype=torch.float32)
        t = all_t * gain  # boxes in grid units of this level
        if nt:
            ratio = t[..., 4:6] / anchors[level][:, None]  # (na, nt, 2)
            keep = torch.max(ratio, 1.0 / ratio).max(2).values < anchor_t
            t = t[keep]  # (m, 7)
            gxy = t[:, 2:4]
            gxy_inv = torch.tensor([nx, ny], device=device, dtype=torch.float32) - gxy
            # Neighbours exist only away from the image border ("> 1" as yolov5: a centre in the
            # first cell gets no left neighbour).
            left, up = ((gxy % 1 < _HALF) & (gxy > 1)).T
            right, down = ((gxy_inv % 1 < _HALF) & (gxy_inv > 1)).T
            use = torch.stack((torch.ones_like(left), left, up, right, down))  # (5, m)
            t = t.unsqueeze(0).expand(5, -1, -1)[use]
            off = (torch.zeros_like(gxy)[None] + offsets[:, None])[use]
        else:
            t = all_t[0]
            off = torch.zeros_like(t[:, 2:4])
        image, cls = t[:, 0].long(), t[:, 1].long()
        gxy, gwh, a = t[:, 2:4], t[:, 4:6], t[:, 6].long()
        gij = (gxy - off).long()
        gij[:, 0].clamp_(0, nx - 1)
        gij[:, 1].clamp_(0, ny - 1)
        out.append(
            LevelTargets(
                image=image,
                anchor=a,
                gy=gij[:, 1],
                gx=gij[:, 0],
                box=torch.cat((gxy - gij, gwh), 1),
                cls=cls,
                anchor_wh=anchors[level][a],
            )
        )
    return out
