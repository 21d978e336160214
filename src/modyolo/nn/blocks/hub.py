"""The remaining blocks of yolov5's hub configs: CrossConv, C3x, C3SPP and ``nn.ZeroPad2d``.

Parameter names follow yolov5 so its state_dicts load strictly.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from modyolo.nn.blocks.yolo import C3, SPP, Conv
from modyolo.nn.registry import BLOCKS
from modyolo.nn.row import Channels, Row, YamlBlock


@BLOCKS.register()
class CrossConv(YamlBlock, nn.Module):
    """A k x k conv factored into 1 x k then k x 1 (cheaper).
    Row args: ``[c2, k=3, s=1, g=1, e=1.0, shortcut=False]``."""

    yaml_example: ClassVar[dict] = {"rows": [[-1, 1, "CrossConv", [64, 3, 2]]], "stride": 2}

    def __init__(
        self, c1: int, c2: int, k: int = 3, s: int = 1, g: int = 1, e: float = 1.0, shortcut: bool = False
    ) -> None:
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, (1, k), (1, s))
        self.cv2 = Conv(c_, c2, (k, 1), (s, 1), g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


@BLOCKS.register()
class C3x(C3):
    """C3 whose bottlenecks are CrossConvs. Row args: ``[c2, shortcut=True, g=1, e=0.5]``."""

    yaml_example: ClassVar[dict] = {"rows": [[-1, 2, "C3x", [64]]], "stride": 1}

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__(c1, c2, 0, shortcut, g, e)
        c_ = int(c2 * e)
        self.m = nn.Sequential(*(CrossConv(c_, c_, 3, 1, g, 1.0, shortcut) for _ in range(n)))


@BLOCKS.register()
class C3SPP(C3):
    """C3 with an SPP in place of the bottlenecks. Row args: ``[c2, k=(5, 9, 13), n=1, shortcut=True, g=1, e=0.5]``.

    As in yolov5, the row's number repeats the whole block (it is not absorbed).
    """

    yaml_example: ClassVar[dict] = {"rows": [[-1, 1, "C3SPP", [64, [5, 9, 13]]]], "stride": 1}
    absorbs_repeats = False

    def __init__(
        self,
        c1: int,
        c2: int,
        k: tuple[int, ...] | list[int] = (5, 9, 13),
        n: int = 1,
        shortcut: bool = True,
        g: int = 1,
        e: float = 0.5,
    ) -> None:
        super().__init__(c1, c2, 0, shortcut, g, e)
        c_ = int(c2 * e)
        self.m = SPP(c_, c_, k)


@BLOCKS.register(aliases=("nn.ZeroPad2d",))
class ZeroPad2d(nn.ZeroPad2d):
    """``[padding]`` as in ``nn.ZeroPad2d``: an int or ``[left, right, top, bottom]`` (yolov3-tiny)."""

    # an unpadded 3x3 conv shrinks the map by 2, the padding restores it
    yaml_example: ClassVar[dict] = {
        "rows": [[-1, 1, "Conv", [32, 3, 1, 0]], [-1, 1, "nn.ZeroPad2d", [[1, 1, 1, 1]]]],
        "stride": 1,
    }

    @classmethod
    def from_row(cls, row: Row) -> tuple[nn.Module, Channels]:
        return row.construct(nn.ZeroPad2d, *row.args), row.c1
