"""The anchor-free decoupled detection head (YOLOv8 / YOLO11 style), with DFL box regression.

Per level ``i`` (stride ``s_i``, input ``[B, ch_i, H_i, W_i]``) two branches run side by side:
``cv2[i]`` (box) -> ``[B, 4 * reg_max, H_i, W_i]``: for each side (left, top, right, bottom) a
distribution over ``reg_max`` distances 0..reg_max-1 in grid units, read out as its expectation by
:class:`DFL`; ``cv3[i]`` (class) -> ``[B, nc, H_i, W_i]`` logits. Every grid cell centre is an
"anchor point"; there are no anchor boxes, so no autoanchor and no ``anchors:`` key.

Output contract (``A = sum(H_i * W_i)`` anchor points):

- training: ``{"boxes": [B, 4*reg_max, A], "scores": [B, nc, A], "feats": list of the inputs}``,
  and for ``end2end`` heads ``{"one2many": {...}, "one2one": {...}}`` (the one-to-one branch sees
  detached features, so only the one-to-many loss shapes the backbone);
- inference (``layout = "rows"``, the default, what NMS / validation / export read):
  ``(pred, raw)`` with ``pred: [B, A, 5 + nc]`` = ``cx, cy, w, h`` in input pixels, objectness
  fixed at 1, then sigmoid class scores, so yolov5's NMS gives ``conf = class score`` exactly as
  ultralytics does; ``export = True`` returns ``pred`` alone;
- inference with ``layout = "ultralytics"``: ultralytics' own ``[B, 4 + nc, A]`` (the same numbers
  without the objectness row, transposed), used by the parity tests;
- ``end2end`` (NMS-free) heads at inference: only the one-to-one branch runs, and the output is
  final detections ``[B, max_det, 6]`` = x1, y1, x2, y2 (input pixels), score, class, sorted by
  score (``(dets, raw)``, or ``dets`` alone with ``export``); no NMS follows.

Parameter names (``cv2``, ``cv3``, ``dfl``, ``one2one_cv2``, ``one2one_cv3``) and the class
branch layout follow ultralytics' ``Detect``: 2 x Conv3x3 (the "legacy" head of v5u / v8) or
DWConv + Conv1x1 twice (YOLO11 and later; chosen, as ultralytics does, when a C3k2 / C2fCIB row
comes before the head), so its state_dicts load strictly.
"""

from __future__ import annotations

import copy
import logging
import math
from typing import Any, ClassVar

import torch
from torch import nn

from modyolo.nn.blocks.yolo import Conv, DWConv
from modyolo.nn.registry import BLOCKS
from modyolo.nn.row import Channels, ModelConfigError, Row

LOGGER = logging.getLogger("modyolo.nn.heads")


class DFL(nn.Module):
    """Distribution Focal Loss read-out: ``[B, 4*c1, A]`` logits -> ``[B, 4, A]`` expected distances.

    A frozen 1x1 conv with weights ``0..c1-1`` computes the expectation of the softmax (ultralytics
    stores it in its state_dicts as ``dfl.conv.weight``, so it is a parameter here too).
    """

    def __init__(self, c1: int = 16) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, 1, 1, bias=False).requires_grad_(False)
        self.conv.weight.data[:] = torch.arange(c1, dtype=torch.float).view(1, c1, 1, 1)
        self.c1 = c1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, a = x.shape
        return self.conv(x.view(b, 4, self.c1, a).transpose(2, 1).softmax(1)).view(b, 4, a)


def make_anchor_points(
    feats: list[torch.Tensor], strides: torch.Tensor, offset: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell centres ``[A, 2]`` (x, y in grid units of their level) and each one's stride ``[A, 1]``."""
    points, stride_rows = [], []
    for i, f in enumerate(feats):
        h, w = f.shape[2:]
        sx = torch.arange(w, device=f.device, dtype=f.dtype) + offset
        sy = torch.arange(h, device=f.device, dtype=f.dtype) + offset
        yy, xx = torch.meshgrid(sy, sx, indexing="ij")
        points.append(torch.stack((xx, yy), -1).view(-1, 2))
        stride_rows.append(torch.full((h * w, 1), float(strides[i]), device=f.device, dtype=f.dtype))
    return torch.cat(points), torch.cat(stride_rows)


def dist2bbox(distance: torch.Tensor, points: torch.Tensor, xywh: bool = True, dim: int = -1) -> torch.Tensor:
    """(left, top, right, bottom) distances from ``points`` -> boxes (cx, cy, w, h) or (x1, y1, x2, y2)."""
    lt, rb = distance.chunk(2, dim)
    x1y1, x2y2 = points - lt, points + rb
    if xywh:
        return torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), dim)
    return torch.cat((x1y1, x2y2), dim)


def bbox2dist(points: torch.Tensor, boxes: torch.Tensor, reg_max: int) -> torch.Tensor:
    """xyxy boxes -> (l, t, r, b) distances from ``points``, clamped just below ``reg_max - 1``."""
    x1y1, x2y2 = boxes.chunk(2, -1)
    return torch.cat((points - x1y1, x2y2 - points), -1).clamp_(0, reg_max - 1 - 0.01)


@BLOCKS.register(aliases=("DetectAnchorFree",))
class DetectAF(nn.Module):
    """Row args: ``[nc, reg_max=16, end2end=False, legacy=auto]``.

    ``reg_max`` / ``end2end`` default to the YAML's top-level keys of the same names (ultralytics'
    convention). ``legacy`` picks the class branch (True: 2 x Conv3x3); by default it is True unless
    a C3k2 / C2fCIB row precedes the head, which is ultralytics' rule. In ultralytics-format YAMLs
    the row is written ``Detect [nc]``: a ``Detect`` row without anchors builds this head.
    """

    export = False
    stride: torch.Tensor  # buffer [nl], set by set_strides after the build's dry run
    layout = "rows"  # "rows": [B, A, 5+nc] for NMS; "ultralytics": [B, 4+nc, A]
    max_det = 300  # end2end heads: detections kept per image at inference
    uses_anchors: ClassVar[bool] = False  # no autoanchor, no anchors: key
    loss_kind: ClassVar[str] = "anchor_free"  # engine/ maps this to the loss + assigner that train it
    yaml_example: ClassVar[dict] = {
        "rows": [
            [-1, 1, "Conv", [32, 3, 2]],
            [-1, 1, "Conv", [32, 3, 2]],
            [-1, 1, "Conv", [32, 3, 2]],
            [[1, 2, 3], 1, "DetectAF", ["nc"]],
        ],
        "stride": None,
    }

    def __init__(
        self, nc: int = 80, reg_max: int = 16, end2end: bool = False, ch: tuple[int, ...] = (), legacy: bool = True
    ) -> None:
        super().__init__()
        self.nc, self.nl, self.reg_max = nc, len(ch), reg_max
        self.no = nc + 4 * reg_max
        self.legacy = legacy
        self.source = "<model>"
        self.register_buffer("stride", torch.ones(self.nl), persistent=False)
        c2, c3 = max(16, ch[0] // 4, reg_max * 4), max(ch[0], min(nc, 100))
        self.cv2 = nn.ModuleList(
            nn.Sequential(Conv(x, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 4 * reg_max, 1)) for x in ch
        )
        if legacy:
            self.cv3 = nn.ModuleList(nn.Sequential(Conv(x, c3, 3), Conv(c3, c3, 3), nn.Conv2d(c3, nc, 1)) for x in ch)
        else:
            self.cv3 = nn.ModuleList(
                nn.Sequential(
                    nn.Sequential(DWConv(x, x, 3), Conv(x, c3, 1)),
                    nn.Sequential(DWConv(c3, c3, 3), Conv(c3, c3, 1)),
                    nn.Conv2d(c3, nc, 1),
                )
                for x in ch
            )
        self.dfl = DFL(reg_max) if reg_max > 1 else nn.Identity()
        self.end2end = end2end
        if end2end:
            self.one2one_cv2 = copy.deepcopy(self.cv2)
            self.one2one_cv3 = copy.deepcopy(self.cv3)
        self._anchor_cache: dict[Any, tuple[torch.Tensor, torch.Tensor]] = {}

    # -- the protocol the rest of modyolo asks ----------------------------------------------------
    @property
    def needs_nms(self) -> bool:
        """End-to-end heads output final detections at inference; the others need NMS."""
        return not self.end2end

    # -- building --------------------------------------------------------------------------------
    @classmethod
    def from_row(cls, row: Row) -> tuple[nn.Module, Channels]:
        cfg = row.extra.get("yaml", {})
        if not row.args:
            raise row.error("needs args [nc], e.g. [nc]")
        nc, *rest = row.args
        if not isinstance(nc, int) or isinstance(nc, bool) or nc < 1:
            raise row.error(f"nc must be a positive integer, got {nc!r}")
        anchors = cfg.get("anchors")
        if isinstance(anchors, list):
            raise row.error(
                "is the anchor-free head, but the file defines 'anchors:' which it would ignore; remove "
                "'anchors:' for the anchor-free head, or write the row as [nc, anchors] for yolov5's "
                "anchor-based Detect"
            )
        if anchors is not None:
            LOGGER.warning(
                "%s: the anchor-free head ignores 'anchors: %s' (no anchors, no autoanchor); remove the key",
                row.where(),
                anchors,
            )
        reg_max = rest[0] if len(rest) > 0 and rest[0] is not None else cfg.get("reg_max", 16)
        end2end = rest[1] if len(rest) > 1 and rest[1] is not None else bool(cfg.get("end2end") or False)
        legacy = (
            rest[2]
            if len(rest) > 2 and rest[2] is not None
            else not any(
                getattr(type(layer.module), "ultralytics_dw_head", False) for layer in row.extra.get("built", [])
            )
        )
        if not isinstance(reg_max, int) or isinstance(reg_max, bool) or reg_max < 1:
            raise row.error(f"reg_max must be a positive integer (16 in YOLOv8/11), got {reg_max!r}")
        if len(rest) > 3:
            raise row.error(f"takes at most [nc, reg_max, end2end, legacy], got {row.args}")
        for f, c in zip(row.from_ if isinstance(row.from_, list) else [row.from_], row.ch_in):
            if isinstance(c, list):
                raise row.error(f"input layer {f} returns several feature maps; pick one with an Index row")
        module = row.construct(cls, nc, reg_max, bool(end2end), tuple(row.ch_in), bool(legacy))
        assert isinstance(module, cls)
        module.source = row.source
        return module, 0

    def set_strides(self, strides: torch.Tensor) -> None:
        self.stride.copy_(strides)
        self.reset_grids()

    def initialize_biases(self, class_frequency: torch.Tensor | None = None) -> None:
        """ultralytics' prior: box logits 2.0; class logits for ~5 objects of nc classes per 640² image."""
        branches = [(self.cv2, self.cv3)] + ([(self.one2one_cv2, self.one2one_cv3)] if self.end2end else [])
        for box_branch, cls_branch in branches:
            for a, b, s in zip(box_branch, cls_branch, self.stride.tolist()):
                box_bias, cls_bias = _output_bias(a), _output_bias(b)
                box_bias.data[:] = 2.0
                if class_frequency is None:
                    cls_bias.data[: self.nc] = math.log(5 / self.nc / (640 / s) ** 2)
                else:
                    prior = class_frequency.to(cls_bias) / class_frequency.sum()
                    cls_bias.data[: self.nc] = torch.log(prior * 5 / (640 / s) ** 2)

    def reset_grids(self) -> None:
        self._anchor_cache.clear()

    def _apply(self, fn, recurse=True):
        self._anchor_cache = {}
        return super()._apply(fn, recurse)

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        key = f"{prefix}cv2.0.2.weight"
        if key in state_dict and state_dict[key].shape[0] != 4 * self.reg_max:
            got = state_dict[key].shape[0]
            raise ModelConfigError(
                f"{self.source}: the weights' anchor-free head has reg_max {got // 4} ({key} has {got} outputs) "
                f"but the model YAML builds reg_max {self.reg_max}; set 'reg_max: {got // 4}' in the YAML "
                f"(or [nc, {got // 4}] in its Detect row)"
            )
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    # -- forward ---------------------------------------------------------------------------------
    def _branch(self, x: list[torch.Tensor], box: nn.ModuleList, cls: nn.ModuleList) -> dict[str, Any]:
        bs = x[0].shape[0]
        boxes = torch.cat([box[i](x[i]).view(bs, 4 * self.reg_max, -1) for i in range(self.nl)], -1)
        scores = torch.cat([cls[i](x[i]).view(bs, self.nc, -1) for i in range(self.nl)], -1)
        return {"boxes": boxes, "scores": scores, "feats": x}

    def forward(self, x: list[torch.Tensor]):
        x = list(x)
        if self.end2end and not self.training:  # inference reads only the one-to-one branch
            one2one = {"one2one": self._branch(x, self.one2one_cv2, self.one2one_cv3)}
            y = self.topk_detections(self.decode(one2one["one2one"]))
            return y if self.export else (y, one2one)
        preds: dict[str, Any] = self._branch(x, self.cv2, self.cv3)
        if self.end2end:
            xd = [xi.detach() for xi in x]  # the one-to-one loss does not shape the shared features
            preds = {"one2many": preds, "one2one": self._branch(xd, self.one2one_cv2, self.one2one_cv3)}
        if self.training:
            return preds
        y = self.decode(preds)
        if self.layout != "ultralytics":
            y = self.nms_rows(y)
        return y if self.export else (y, preds)

    def anchor_points(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``[2, A]`` cell centres (grid units) and ``[1, A]`` strides for these feature map sizes."""
        key = (tuple(tuple(f.shape[2:]) for f in feats), feats[0].device, feats[0].dtype)
        tracing = torch.jit.is_tracing() or torch.compiler.is_compiling()
        if tracing or key not in self._anchor_cache:
            points, strides = make_anchor_points(feats, self.stride, 0.5)
            value = (points.transpose(0, 1), strides.transpose(0, 1))
            if tracing:
                return value
            self._anchor_cache[key] = value
        return self._anchor_cache[key]

    def decode(self, preds: dict[str, Any]) -> torch.Tensor:
        """Raw branch outputs -> ``[B, 4 + nc, A]``: cx, cy, w, h (input pixels), sigmoid class scores."""
        points, strides = self.anchor_points(preds["feats"])
        boxes = dist2bbox(self.dfl(preds["boxes"]), points.unsqueeze(0), xywh=True, dim=1) * strides
        return torch.cat((boxes, preds["scores"].sigmoid()), 1)

    @staticmethod
    def nms_rows(y: torch.Tensor) -> torch.Tensor:
        """``[B, 4 + nc, A]`` -> yolov5's NMS input ``[B, A, 5 + nc]`` with objectness 1."""
        y = y.transpose(1, 2)
        return torch.cat((y[..., :4], torch.ones_like(y[..., :1]), y[..., 4:]), -1)

    def topk_detections(self, y: torch.Tensor) -> torch.Tensor:
        """End-to-end output: ``[B, 4 + nc, A]`` -> ``[B, k, 6]`` = x1, y1, x2, y2 (pixels), score, class.

        The top ``max_det`` (anchor, class) pairs by score; no NMS, the one-to-one branch was trained
        to fire once per object.
        """
        y = y.transpose(1, 2)
        boxes, scores = y[..., :4], y[..., 4:]
        k = min(self.max_det, scores.shape[1])
        best = scores.amax(-1).topk(k, dim=1).indices  # candidate anchors
        scores = scores.gather(1, best[..., None].expand(-1, -1, self.nc))
        conf, flat = scores.flatten(1).topk(k, dim=1)
        anchor = best.gather(1, flat // self.nc)
        boxes = boxes.gather(1, anchor[..., None].expand(-1, -1, 4))
        xyxy = torch.cat((boxes[..., :2] - boxes[..., 2:] / 2, boxes[..., :2] + boxes[..., 2:] / 2), -1)
        return torch.cat((xyxy, conf[..., None], (flat % self.nc)[..., None].to(y.dtype)), -1)


def _output_bias(branch: nn.Module) -> torch.Tensor:
    """The bias of a branch's last layer, its output ``Conv2d`` (ultralytics' cv2 / cv3 layout)."""
    conv = list(branch.children())[-1]
    assert isinstance(conv, nn.Conv2d) and conv.bias is not None, f"{type(branch).__name__} ends in {conv}"
    return conv.bias
