"""YOLOv10's efficiency blocks (ultralytics' names and layouts): SCDown, CIB, C2fCIB, RepVGGDW.

``SCDown`` down-samples with a 1x1 conv then a depth-wise k x k / s conv (cheaper than one dense
3x3/2). ``CIB`` is a depth-wise / point-wise inverted bottleneck; ``lk`` swaps its middle
depth-wise 3x3 for ``RepVGGDW`` (7x7 + 3x3 depth-wise, folded into one 7x7 by ``fuse``).

Row args: ``SCDown [c2, k, s]``, ``C2fCIB [c2, shortcut=False, lk=False, g=1, e=0.5]``.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from modyolo.nn.blocks.csp2 import C2f
from modyolo.nn.blocks.yolo import Conv
from modyolo.nn.registry import BLOCKS
from modyolo.nn.row import YamlBlock


@BLOCKS.register()
class SCDown(YamlBlock, nn.Module):
    """Point-wise conv to ``c2`` then depth-wise ``k x k`` stride ``s`` (no activation)."""

    yaml_example: ClassVar[dict] = {"rows": [[-1, 1, "SCDown", [64, 3, 2]]], "stride": 2}

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 2) -> None:
        super().__init__()
        self.cv1 = Conv(c1, c2, 1, 1)
        self.cv2 = Conv(c2, c2, k=k, s=s, g=c2, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv2(self.cv1(x))


class RepVGGDW(nn.Module):
    """Depth-wise 7x7 + 3x3 (both conv+BN) then SiLU; ``fuse`` folds both into one 7x7 conv."""

    def __init__(self, ed: int) -> None:
        super().__init__()
        self.conv = Conv(ed, ed, 7, 1, 3, g=ed, act=False)
        self.conv1 = Conv(ed, ed, 3, 1, 1, g=ed, act=False)
        self.dim = ed
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not hasattr(self, "conv1"):  # fused
            return self.act(self.conv(x))
        return self.act(self.conv(x) + self.conv1(x))

    @torch.no_grad()
    def fuse(self) -> None:
        if not hasattr(self, "conv1") or not hasattr(self.conv, "bn"):
            return
        big = fuse_conv_bn_eval(self.conv.conv, self.conv.bn)
        small = fuse_conv_bn_eval(self.conv1.conv, self.conv1.bn)
        big.weight.add_(nn.functional.pad(small.weight, [2, 2, 2, 2]))
        big.bias.add_(small.bias)
        self.conv = big
        del self.conv1


class CIB(nn.Module):
    """DW 3x3 -> PW to 2c_ -> DW 3x3 (or RepVGGDW) -> PW to c2 -> DW 3x3, residual when c1 == c2."""

    def __init__(self, c1: int, c2: int, shortcut: bool = True, e: float = 0.5, lk: bool = False) -> None:
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = nn.Sequential(
            Conv(c1, c1, 3, g=c1),
            Conv(c1, 2 * c_, 1),
            RepVGGDW(2 * c_) if lk else Conv(2 * c_, 2 * c_, 3, g=2 * c_),
            Conv(2 * c_, c2, 1),
            Conv(c2, c2, 3, g=c2),
        )
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.cv1(x) if self.add else self.cv1(x)


@BLOCKS.register()
class C2fCIB(C2f):
    """C2f with CIB inner blocks. Row args: ``[c2, shortcut=False, lk=False, g=1, e=0.5]``."""

    yaml_example: ClassVar[dict] = {"rows": [[-1, 2, "C2fCIB", [64, True, True]]], "stride": 1}
    ultralytics_dw_head = True

    def __init__(
        self, c1: int, c2: int, n: int = 1, shortcut: bool = False, lk: bool = False, g: int = 1, e: float = 0.5
    ) -> None:
        super().__init__(c1, c2, n, shortcut, g, e)
        self.m = nn.ModuleList(CIB(self.c, self.c, shortcut, e=1.0, lk=lk) for _ in range(n))
