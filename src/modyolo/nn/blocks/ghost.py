"""GhostNet blocks from yolov5's hub configs (yolov5s-ghost.yaml).

A Ghost conv makes half its output channels with an ordinary conv and the other half with a
cheap 5x5 depth-wise conv on that half. Parameter names (``cv1``, ``cv2``, ``conv``,
``shortcut``, ``m``) follow yolov5 so its state_dicts load strictly.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from modyolo.nn.blocks.yolo import C3, Conv, DWConv
from modyolo.nn.registry import BLOCKS
from modyolo.nn.row import YamlBlock


@BLOCKS.register()
class GhostConv(YamlBlock, nn.Module):
    """Row args: ``[c2, k=1, s=1, g=1, act=True]``; output = cat(conv(x), dwconv5x5(conv(x)))."""

    yaml_example: ClassVar[dict] = {"rows": [[-1, 1, "GhostConv", [64, 3, 2]]], "stride": 2}

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, g: int = 1, act: bool | nn.Module = True) -> None:
        super().__init__()
        c_ = c2 // 2
        self.cv1 = Conv(c1, c_, k, s, None, g, act=act)
        self.cv2 = Conv(c_, c_, 5, 1, None, c_, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv1(x)
        return torch.cat((y, self.cv2(y)), 1)


@BLOCKS.register()
class GhostBottleneck(YamlBlock, nn.Module):
    """Ghost -> (depth-wise stride-s when s=2) -> Ghost, plus a shortcut. Row args: ``[c2, k=3, s=1]``."""

    yaml_example: ClassVar[dict] = {"rows": [[-1, 1, "GhostBottleneck", [64, 3, 2]]], "stride": 2}

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1) -> None:
        super().__init__()
        c_ = c2 // 2
        self.conv = nn.Sequential(
            GhostConv(c1, c_, 1, 1),
            DWConv(c_, c_, k, s, act=False) if s == 2 else nn.Identity(),
            GhostConv(c_, c2, 1, 1, act=False),
        )
        self.shortcut = (
            nn.Sequential(DWConv(c1, c1, k, s, act=False), Conv(c1, c2, 1, 1, act=False)) if s == 2 else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.shortcut(x)


@BLOCKS.register()
class C3Ghost(C3):
    """C3 whose bottlenecks are GhostBottlenecks. Row args: ``[c2, shortcut=True, g=1, e=0.5]``."""

    yaml_example: ClassVar[dict] = {"rows": [[-1, 2, "C3Ghost", [64]]], "stride": 1}

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__(c1, c2, 0, shortcut, g, e)
        c_ = int(c2 * e)
        self.m = nn.Sequential(*(GhostBottleneck(c_, c_) for _ in range(n)))
