"""HGNetv2 blocks (PP-HGNetV2, the RT-DETR backbone) as YAML rows.

- ``[-1, 1, HGStem, [cm, c2]]``: stride-4 stem. A 3x3/2 conv, then two branches on its output —
  a 2x2/1 max-pool and two 2x2 convs (each after a one-pixel bottom/right pad, so both keep the
  size) — concatenated, a 3x3/2 conv and a 1x1 conv to ``c2``.
- ``[-1, n, HGBlock, [cm, c2, k=3, light=False, shortcut=False, ese=False]]``: ``n`` chained convs
  of width ``cm`` (``light``: 1x1 conv then k x k depth-wise, the "LightConvBNAct" of HGNetv2);
  the input and every intermediate map are concatenated (dense aggregation), squeezed by a 1x1
  conv to ``c2 // 2`` and expanded by a 1x1 conv to ``c2``; ``ese`` adds effective squeeze-and-
  excitation (one 1x1 conv on the pooled map, hard-sigmoid gate) from HGNet v1; ``shortcut`` adds
  the input when ``c1 == c2``. ``n`` is the row's number (depth-scaled) and absorbed by the block.

Down-sampling between stages is an ordinary ``DWConv`` row (``[c2, 3, 2, 1, False]``). Both ``cm``
and ``c2`` are scaled by width_multiple. Convs use ReLU, as HGNet does.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from modyolo.nn.blocks.yolo import Conv, DWConv
from modyolo.nn.registry import BLOCKS
from modyolo.nn.row import Channels, Row


def _relu() -> nn.Module:
    return nn.ReLU(inplace=True)


@BLOCKS.register()
class HGStem(nn.Module):
    """Row args ``[cm, c2]``. ``Tensor[B, c1, H, W]`` -> ``Tensor[B, c2, H/4, W/4]`` (H, W even)."""

    yaml_example: ClassVar[dict] = {"rows": [[-1, 1, "HGStem", [32, 48]]], "stride": 4}

    def __init__(self, c1: int, cm: int, c2: int) -> None:
        super().__init__()
        self.stem1 = Conv(c1, cm, 3, 2, act=_relu())
        self.stem2a = Conv(cm, cm // 2, 2, 1, 0, act=_relu())
        self.stem2b = Conv(cm // 2, cm, 2, 1, 0, act=_relu())
        self.stem3 = Conv(cm * 2, cm, 3, 2, act=_relu())
        self.stem4 = Conv(cm, c2, 1, 1, act=_relu())
        self.pool = nn.MaxPool2d(kernel_size=2, stride=1, padding=0, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(self.stem1(x), [0, 1, 0, 1])  # 2x2 kernels at stride 1 then keep H/2 x W/2
        x2 = self.stem2b(F.pad(self.stem2a(x), [0, 1, 0, 1]))
        x = torch.cat([self.pool(x), x2], dim=1)
        return self.stem4(self.stem3(x))

    @classmethod
    def from_row(cls, row: Row) -> tuple[nn.Module, Channels]:
        if len(row.args) != 2:
            raise row.error(f"args must be [cm, c2] (stem width, output channels), e.g. [32, 48]; got {row.args}")
        cm, c2 = row.width(row.args[0]), row.width(row.args[1])
        if row.number != 1:
            raise row.error(f"a stem cannot be repeated (number is {row.number}); set it to 1")
        return row.construct(cls, row.c1, cm, c2), c2


class LightConv(nn.Module):
    """1x1 conv (no activation) then k x k depth-wise conv + ReLU: HGNetv2's cheap conv."""

    def __init__(self, c1: int, c2: int, k: int = 3) -> None:
        super().__init__()
        self.conv1 = Conv(c1, c2, 1, act=False)
        self.conv2 = DWConv(c2, c2, k, act=_relu())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


class ESE(nn.Module):
    """Effective squeeze-excitation: ``x * hardsigmoid(conv1x1(mean_hw(x)))``, channels kept."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 1, bias=True)
        self.gate = nn.Hardsigmoid(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.conv(x.mean((2, 3), keepdim=True)))


@BLOCKS.register()
class HGBlock(nn.Module):
    """Row args ``[cm, c2, k=3, light=False, shortcut=False, ese=False]``, number = inner convs.

    ``Tensor[B, c1, H, W]`` -> ``Tensor[B, c2, H, W]``.
    """

    yaml_example: ClassVar[dict] = {"rows": [[-1, 3, "HGBlock", [48, 128, 3, True, False, True]]], "stride": 1}

    def __init__(
        self,
        c1: int,
        cm: int,
        c2: int,
        k: int = 3,
        n: int = 6,
        light: bool = False,
        shortcut: bool = False,
        ese: bool = False,
    ) -> None:
        super().__init__()
        make = (lambda a, b: LightConv(a, b, k)) if light else (lambda a, b: Conv(a, b, k, act=_relu()))
        self.m = nn.ModuleList(make(c1 if i == 0 else cm, cm) for i in range(n))
        self.sc = Conv(c1 + n * cm, c2 // 2, 1, 1, act=_relu())  # squeeze the dense concat
        self.ec = Conv(c2 // 2, c2, 1, 1, act=_relu())  # and expand it back
        self.ese = ESE(c2) if ese else nn.Identity()
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [x]
        for m in self.m:
            y.append(m(y[-1]))
        out = self.ese(self.ec(self.sc(torch.cat(y, 1))))
        return out + x if self.add else out

    @classmethod
    def from_row(cls, row: Row) -> tuple[nn.Module, Channels]:
        if not 2 <= len(row.args) <= 6:
            raise row.error(
                f"args must be [cm, c2, k=3, light=False, shortcut=False, ese=False], e.g. [48, 128, 3]; got {row.args}"
            )
        cm, c2 = row.width(row.args[0]), row.width(row.args[1])
        k, *flags = row.args[2:] or [3]
        return row.construct(cls, row.c1, cm, c2, k, row.number, *flags), c2
