"""The exported graph of an NMS-free (end-to-end) head: final detections, with the NMS graph's I/O.

An NMS-free head already ends in its top ``max_det`` detections (``[B, K, 6]`` = x1, y1, x2, y2,
score, class, sorted by score; :mod:`modyolo.nn.heads.anchor_free`). :class:`NmsFreeGraph` gives
that output the inputs and outputs of :mod:`modyolo.deploy.nms_graph` (``images, conf_thres[1],
iou_thres[1], multi_label[1] -> detections[B, K, 6], num_dets[B]``, rows past ``num_dets`` zero),
so the metadata flag ``nms`` ("this graph outputs final detections"), the backends and
``val`` / ``detect`` treat both kinds of end-to-end file alike. There is no suppression inside:
``iou_thres`` and ``multi_label`` are accepted and have no effect (a one-to-one head fires once
per object and gives each box one class).
"""

from __future__ import annotations

import torch
from torch import nn


class NmsFreeGraph(nn.Module):
    """Wraps an export-ready DetectionModel whose head needs no NMS (``head.export = True``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, images: torch.Tensor, conf_thres: torch.Tensor, iou_thres: torch.Tensor, multi_label: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        dets = self.model(images)
        # iou_thres / multi_label mean nothing without NMS; they stay graph inputs (a zero term keeps
        # the exporter from pruning them) so callers feed every end-to-end file the same way.
        unused = (iou_thres * 0 + multi_label * 0).sum()
        keep = dets[..., 4] > conf_thres + unused
        return dets * keep.unsqueeze(-1).to(dets.dtype), keep.sum(1).to(torch.int64)


def verify_nms_free(model: nn.Module, inputs: list[torch.Tensor], run, checks) -> str | None:
    """None if ``run(x, conf, iou, multi) -> (dets, num)`` keeps the model's own detections above each
    conf of ``checks``; else what differs.

    Detections are matched as sets (same class, score within 1e-4, box within 1e-2 px / 1e-3
    relative). A row may go unmatched only when its score ties another row's (within 1e-5) or the
    threshold: uniform image regions (letterbox padding) give equal scores, and which of equal
    candidates fills the last of the ``max_det`` places is arbitrary in every runtime.
    """
    for x in inputs:
        with torch.no_grad():
            ref = model(x)
        for conf, iou, multi in checks:
            dets, num = run(x, conf, iou, multi)
            for b in range(ref.shape[0]):
                want = ref[b][ref[b, :, 4] > conf].float()
                got = torch.as_tensor(dets[b][: int(num[b])]).float()
                for side, rows, other in (("the model's", want, got), ("the graph's", got, want)):
                    for r in rows:
                        if _has_match(r, other) or _tied(r, rows, conf):
                            continue
                        return (
                            f"image {b} at conf {conf}: {side} detection {[round(v, 3) for v in r.tolist()]} "
                            f"has no counterpart (input {tuple(x.shape)}; {len(got)} vs {len(want)} detections)"
                        )
    return None


def _has_match(r: torch.Tensor, rows: torch.Tensor) -> bool:
    if not len(rows):
        return False
    same = (rows[:, 5] == r[5]) & ((rows[:, 4] - r[4]).abs() <= 1e-4)
    close = ((rows[:, :4] - r[:4]).abs() <= 1e-2 + 1e-3 * r[:4].abs()).all(1)
    return bool((same & close).any())


def _tied(r: torch.Tensor, rows: torch.Tensor, conf: float) -> bool:
    return bool(((rows[:, 4] - r[4]).abs() <= 1e-5).sum() > 1) or abs(float(r[4]) - conf) <= 1e-5
