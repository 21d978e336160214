"""The YOLOv5 blocks.

Parameter names (``conv``, ``bn``, ``cv1``..``cv4``, ``m``) follow yolov5 so that a state_dict
made by yolov5 for the same YAML loads strictly. BatchNorm uses yolov5's eps=1e-3 and
momentum=0.03, which its ``initialize_weights`` sets after building; outputs differ otherwise.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import nn

from modyolo.nn.blocks.conv import ConvBNAct
from modyolo.nn.blocks.conv import autopad as autopad  # re-exported: the yolov7 and dynamic blocks use it
from modyolo.nn.registry import BLOCKS
from modyolo.nn.row import Channels, Row, YamlBlock, default_activation

BN_EPS, BN_MOMENTUM = 1e-3, 0.03


def batch_norm(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=BN_EPS, momentum=BN_MOMENTUM)


def activation(act: bool | nn.Module) -> nn.Module:
    """``True`` -> the model's default activation, a module -> itself, else identity."""
    if act is True:
        return default_activation()
    return act if isinstance(act, nn.Module) else nn.Identity()


@BLOCKS.register()
class Conv(YamlBlock, ConvBNAct):
    """Conv2d (no bias) + BN + activation. Row args: ``[c2, k=1, s=1, p=None, g=1, d=1, act=True]``.

    :class:`~modyolo.nn.blocks.conv.ConvBNAct` with yolov5's BatchNorm and the model's activation."""

    yaml_example: ClassVar[dict] = {"rows": [[-1, 1, "Conv", [64, 3, 2]]], "stride": 2}

    def __init__(
        self,
        c1: int,
        c2: int,
        k: int = 1,
        s: int = 1,
        p: int | None = None,
        g: int = 1,
        d: int = 1,
        act: bool | nn.Module = True,
    ) -> None:
        if isinstance(d, nn.Module):  # yolov7's Conv rows have no dilation: [c2, k, s, p, g, act]
            d, act = 1, d
        super().__init__(c1, c2, k, s, p, g, d, act=activation(act), eps=BN_EPS, momentum=BN_MOMENTUM)


@BLOCKS.register()
class DWConv(Conv):
    """Depth-wise Conv (groups = gcd(c1, c2)). Row args: ``[c2, k=1, s=1, d=1, act=True]``."""

    yaml_example: ClassVar[dict] = {"rows": [[-1, 1, "DWConv", [64, 3, 2]]], "stride": 2}

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, d: int = 1, act: bool | nn.Module = True) -> None:
        super().__init__(c1, c2, k, s, g=math.gcd(c1, c2), d=d, act=act)


@BLOCKS.register()
class Focus(YamlBlock, nn.Module):
    """Space-to-depth (2x2 pixels -> 4x channels) then Conv; the yolov5 v5.0 stem."""

    yaml_example: ClassVar[dict] = {"rows": [[-1, 1, "Focus", [64, 3]]], "stride": 2}

    def __init__(
        self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None, g: int = 1, act: bool | nn.Module = True
    ) -> None:
        super().__init__()
        self.conv = Conv(c1 * 4, c2, k, s, p, g, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat((x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]), 1))


@BLOCKS.register()
class Bottleneck(YamlBlock, nn.Module):
    """1x1 then 3x3 Conv with a residual when shapes allow. Row args: ``[c2, shortcut=True, g=1, e=0.5]``."""

    yaml_example: ClassVar[dict] = {"rows": [[-1, 2, "Bottleneck", [32]]], "stride": 1}

    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_, c2, 3, 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


@BLOCKS.register()
class BottleneckCSP(YamlBlock, nn.Module):
    """Cross Stage Partial bottlenecks (yolov5 v1-v4). Row args: ``[c2, shortcut=True, g=1, e=0.5]``."""

    yaml_example: ClassVar[dict] = {"rows": [[-1, 3, "BottleneckCSP", [64]]], "stride": 1}

    absorbs_repeats = True

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = nn.Conv2d(c1, c_, 1, 1, bias=False)
        self.cv3 = nn.Conv2d(c_, c_, 1, 1, bias=False)
        self.cv4 = Conv(2 * c_, c2, 1, 1)
        self.bn = batch_norm(2 * c_)  # applied to cat(cv2, cv3)
        self.act = nn.SiLU(inplace=True)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, g, e=1.0) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y1 = self.cv3(self.m(self.cv1(x)))
        y2 = self.cv2(x)
        return self.cv4(self.act(self.bn(torch.cat((y1, y2), 1))))


@BLOCKS.register()
class C3(YamlBlock, nn.Module):
    """CSP bottlenecks with 3 Convs (yolov5 v5+). Row args: ``[c2, shortcut=True, g=1, e=0.5]``."""

    yaml_example: ClassVar[dict] = {"rows": [[-1, 3, "C3", [64, False]]], "stride": 1}

    absorbs_repeats = True

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c1, c_, 1, 1)
        self.cv3 = Conv(2 * c_, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, g, e=1.0) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


@BLOCKS.register()
class SPP(YamlBlock, nn.Module):
    """Spatial pyramid pooling with parallel max-pools. Row args: ``[c2, k=(5, 9, 13)]``."""

    yaml_example: ClassVar[dict] = {"rows": [[-1, 1, "SPP", [64, [5, 9, 13]]]], "stride": 1}

    def __init__(self, c1: int, c2: int, k: tuple[int, ...] | list[int] = (5, 9, 13)) -> None:
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_ * (len(k) + 1), c2, 1, 1)
        self.m = nn.ModuleList(nn.MaxPool2d(kernel_size=x, stride=1, padding=x // 2) for x in k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        return self.cv2(torch.cat([x] + [m(x) for m in self.m], 1))


@BLOCKS.register()
class SPPF(YamlBlock, nn.Module):
    """SPP with chained k-pools: same output as SPP(k, 2k-1, 3k-2), cheaper.

    Unlike yolov5's, the forward has no ``warnings.catch_warnings()`` block, which breaks
    torch.compile graphs at every module.
    """

    yaml_example: ClassVar[dict] = {"rows": [[-1, 1, "SPPF", [64, 5]]], "stride": 1}

    def __init__(self, c1: int, c2: int, k: int = 5) -> None:
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_ * 4, c2, 1, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))


@BLOCKS.register()
class Concat(nn.Module):
    """Concatenate the ``from`` layers along channels. Row args: ``[dimension=1]``."""

    yaml_example: ClassVar[dict] = {"rows": [[-1, 1, "Conv", [16, 1, 1]], [[-1, 0], 1, "Concat", [1]]], "stride": 1}

    def __init__(self, dimension: int = 1) -> None:
        super().__init__()
        self.d = dimension

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(x, self.d)

    @classmethod
    def from_row(cls, row: Row) -> tuple[nn.Module, Channels]:
        if len(row.ch_in) < 2:
            raise row.error(f"concatenates layers, so 'from' must list at least two (got {row.from_})")
        module = row.construct(cls, *row.args)
        if module.d != 1:
            raise row.error(f"only channel concatenation (dimension 1) is supported, got {module.d}")
        for f, c in zip(_as_list(row.from_), row.ch_in):
            if isinstance(c, list):
                raise row.error(f"input layer {f} returns several feature maps; pick one with an Index row")
        return module, sum(row.ch_in)  # type: ignore[arg-type]


@BLOCKS.register(aliases=("nn.Upsample",))
class Upsample(nn.Upsample):
    """``nn.Upsample`` as yolov5 YAMLs write it: ``[None, 2, 'nearest']`` (size, scale, mode)."""

    yaml_example: ClassVar[dict] = {
        "rows": [[-1, 1, "Conv", [32, 3, 2]], [-1, 1, "nn.Upsample", [None, 2, "nearest"]]],
        "stride": 1,
    }

    @classmethod
    def from_row(cls, row: Row) -> tuple[nn.Module, Channels]:
        return row.construct(nn.Upsample, *row.args), row.c1


@BLOCKS.register(aliases=("nn.Identity",))
class Identity(nn.Identity):
    """Pass-through (placeholder rows that keep later indices stable)."""

    yaml_example: ClassVar[dict] = {"rows": [[-1, 1, "nn.Identity", []]], "stride": 1}

    @classmethod
    def from_row(cls, row: Row) -> tuple[nn.Module, Channels]:
        return nn.Identity(), row.c1


@BLOCKS.register(aliases=("nn.BatchNorm2d",))
class BatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the input's channels (no args)."""

    yaml_example: ClassVar[dict] = {"rows": [[-1, 1, "nn.BatchNorm2d", []]], "stride": 1}

    @classmethod
    def from_row(cls, row: Row) -> tuple[nn.Module, Channels]:
        return batch_norm(row.c1), row.c1


@BLOCKS.register(aliases=("nn.MaxPool2d",))
class MaxPool2d(nn.MaxPool2d):
    """``[k, s=None, p=0]`` as in ``nn.MaxPool2d`` (a ResNet stem's 3x3/2 pool)."""

    yaml_example: ClassVar[dict] = {"rows": [[-1, 1, "nn.MaxPool2d", [3, 2, 1]]], "stride": 2}

    @classmethod
    def from_row(cls, row: Row) -> tuple[nn.Module, Channels]:
        return row.construct(nn.MaxPool2d, *row.args), row.c1


def _as_list(x: Any) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]
