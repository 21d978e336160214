"""The YOLOv7 blocks (pools, SPPCSPC, RepConv, ReOrg, DownC, Shortcut, implicit knowledge).

yolov7's ELAN stages are plain ``Conv`` + ``Concat`` rows, so only the blocks below are new.
Parameter names (``m``, ``cv1``..``cv7``, ``rbr_dense``/``rbr_1x1``/``rbr_identity``,
``implicit``) follow yolov7 so a state_dict it made for the same YAML loads strictly. BatchNorm
uses eps=1e-3 / momentum=0.03, the values yolov7's ``initialize_weights`` sets after building.
Row args are yolov7's: ``[c2, ...]`` scaled by ``width_multiple`` like yolov5's.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from modyolo.nn.blocks.yolo import Conv, activation, autopad, batch_norm
from modyolo.nn.registry import BLOCKS
from modyolo.nn.row import Channels, Row, YamlBlock


class _SameChannels:
    """Rows whose output has the input's channels; ``args`` go to the constructor unchanged."""

    @classmethod
    def from_row(cls, row: Row) -> tuple[nn.Module, Channels]:
        c1 = row.c1
        return row.repeat(lambda: row.construct(cls, *row.args)), c1


@BLOCKS.register()
class MP(_SameChannels, nn.Module):
    """k x k max-pool with stride k (yolov7's stride-2 branch of a transition). Row args: ``[k=2]``."""

    yaml_example: ClassVar[dict] = {"rows": [[-1, 1, "MP", []]], "stride": 2}

    def __init__(self, k: int = 2) -> None:
        super().__init__()
        self.m = nn.MaxPool2d(kernel_size=k, stride=k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.m(x)


@BLOCKS.register()
class SP(_SameChannels, nn.Module):
    """'Same'-padded max-pool (yolov7-tiny's SPP branches). Row args: ``[k=3, s=1]``."""

    yaml_example: ClassVar[dict] = {"rows": [[-1, 1, "SP", [5]]], "stride": 1}

    def __init__(self, k: int = 3, s: int = 1) -> None:
        super().__init__()
        self.m = nn.MaxPool2d(kernel_size=k, stride=s, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.m(x)


@BLOCKS.register()
class ReOrg(nn.Module):
    """Space-to-depth: ``[B, C, H, W] -> [B, 4C, H/2, W/2]`` (the P6 models' stem). No args."""

    yaml_example: ClassVar[dict] = {"rows": [[-1, 1, "ReOrg", []]], "stride": 2}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]), 1)

    @classmethod
    def from_row(cls, row: Row) -> tuple[nn.Module, Channels]:
        if row.args:
            raise row.error(f"takes no args (it only rearranges pixels), got {row.args}")
        return cls(), 4 * row.c1


@BLOCKS.register()
class Shortcut(nn.Module):
    """Sum of the two ``from`` layers (same shape), e.g. ``[[-1, -11], 1, Shortcut, [1]]``."""

    yaml_example: ClassVar[dict] = {
        "rows": [[-1, 1, "Conv", [16, 1, 1]], [-1, 1, "Conv", [16, 3, 1]], [[-1, -2], 1, "Shortcut", [1]]],
        "stride": 1,
    }

    def __init__(self, dimension: int = 0) -> None:
        super().__init__()
        self.d = dimension  # kept for yolov7's row layout; the sum is element-wise

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        return x[0] + x[1]

    @classmethod
    def from_row(cls, row: Row) -> tuple[nn.Module, Channels]:
        if len(row.ch_in) != 2:
            raise row.error(f"adds two layers, so 'from' must list exactly two (got {row.from_})")
        a, b = row.ch_in
        if a != b:
            raise row.error(f"adds layers with {a} and {b} channels; both must have the same channels")
        return row.construct(cls, *row.args), a


@BLOCKS.register()
class DownC(YamlBlock, nn.Module):
    """Learned + pooled stride-k downsampling, concatenated (yolov7-d6/e6/e6e).

    Row args: ``[c2, k=2]`` (the row's number is taken as yolov7's unused ``n``).
    """

    yaml_example: ClassVar[dict] = {"rows": [[-1, 1, "Conv", [16, 3, 1]], [-1, 1, "DownC", [32]]], "stride": 2}
    absorbs_repeats = True  # yolov7 passes the row's number as `n` (unused)

    def __init__(self, c1: int, c2: int, n: int = 1, k: int = 2) -> None:
        super().__init__()
        self.cv1 = Conv(c1, c1, 1, 1)
        self.cv2 = Conv(c1, c2 // 2, 3, k)
        self.cv3 = Conv(c1, c2 // 2, 1, 1)
        self.mp = nn.MaxPool2d(kernel_size=k, stride=k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.cv2(self.cv1(x)), self.cv3(self.mp(x))), 1)


@BLOCKS.register()
class SPPCSPC(YamlBlock, nn.Module):
    """CSP spatial pyramid pooling (yolov7's neck entry).

    Row args: ``[c2, shortcut=False, g=1, e=0.5, k=(5, 9, 13)]``; hidden width ``2 * c2 * e``.
    """

    yaml_example: ClassVar[dict] = {"rows": [[-1, 1, "SPPCSPC", [32]]], "stride": 1}
    absorbs_repeats = True  # yolov7 passes the row's number as `n` (unused)

    def __init__(
        self,
        c1: int,
        c2: int,
        n: int = 1,
        shortcut: bool = False,
        g: int = 1,
        e: float = 0.5,
        k: tuple[int, ...] | list[int] = (5, 9, 13),
    ) -> None:
        super().__init__()
        c_ = int(2 * c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c1, c_, 1, 1)
        self.cv3 = Conv(c_, c_, 3, 1)
        self.cv4 = Conv(c_, c_, 1, 1)
        self.m = nn.ModuleList(nn.MaxPool2d(kernel_size=x, stride=1, padding=x // 2) for x in k)
        self.cv5 = Conv(4 * c_, c_, 1, 1)
        self.cv6 = Conv(c_, c_, 3, 1)
        self.cv7 = Conv(2 * c_, c2, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.cv4(self.cv3(self.cv1(x)))
        y1 = self.cv6(self.cv5(torch.cat([x1] + [m(x1) for m in self.m], 1)))
        return self.cv7(torch.cat((y1, self.cv2(x)), 1))


def _conv_bn(c1: int, c2: int, k: int, s: int, p: int, g: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c1, c2, k, s, p, groups=g, bias=False), batch_norm(c2))


def _fold(kernel: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(kernel, BN) -> the kernel and bias of one conv that computes BN(conv(x)) in eval mode."""
    scale = bn.weight / (bn.running_var + bn.eps).sqrt()
    return kernel * scale.reshape(-1, 1, 1, 1), bn.bias - bn.running_mean * scale


@BLOCKS.register()
class RepConv(YamlBlock, nn.Module):
    """RepVGG block: 3x3 conv+BN, 1x1 conv+BN and (when shapes allow) an identity BN, summed.

    Training uses the three branches; :meth:`fuse` folds them into a single 3x3 conv with bias
    (``rbr_reparam``), which computes the same function in eval mode. Row args:
    ``[c2, k=3, s=1, p=None, g=1, act=True]`` (k must be 3 and the padding 1, as in yolov7).
    """

    yaml_example: ClassVar[dict] = {"rows": [[-1, 1, "Conv", [32, 3, 2]], [-1, 1, "RepConv", [32, 3, 1]]], "stride": 2}

    def __init__(
        self, c1: int, c2: int, k: int = 3, s: int = 1, p: int | None = None, g: int = 1, act: bool | nn.Module = True
    ) -> None:
        super().__init__()
        if k != 3 or autopad(k, p) != 1:
            raise ValueError(f"RepConv needs a 3x3 kernel with padding 1 (got k={k}, p={p})")
        self.groups, self.in_channels, self.out_channels = g, c1, c2
        self.act = activation(act)
        self.rbr_identity = batch_norm(c1) if c1 == c2 and s == 1 else None
        self.rbr_dense = _conv_bn(c1, c2, 3, s, 1, g)
        self.rbr_1x1 = _conv_bn(c1, c2, 1, s, 0, g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "rbr_reparam"):
            return self.act(self.rbr_reparam(x))
        y = self.rbr_dense(x) + self.rbr_1x1(x)
        if self.rbr_identity is not None:
            y = y + self.rbr_identity(x)
        return self.act(y)

    def equivalent_kernel_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Kernel ``[c2, c1/g, 3, 3]`` and bias ``[c2]`` of the single conv the branches sum to."""
        k3, b3 = _fold(self.rbr_dense[0].weight, self.rbr_dense[1])
        k1, b1 = _fold(self.rbr_1x1[0].weight, self.rbr_1x1[1])
        kernel, bias = k3 + nn.functional.pad(k1, [1, 1, 1, 1]), b3 + b1
        if self.rbr_identity is not None:
            per_group = self.in_channels // self.groups
            eye = torch.zeros_like(k3)
            idx = torch.arange(self.in_channels, device=eye.device)
            eye[idx, idx % per_group, 1, 1] = 1.0  # each output channel copies its own input channel
            ki, bi = _fold(eye, self.rbr_identity)
            kernel, bias = kernel + ki, bias + bi
        return kernel, bias

    @torch.no_grad()
    def fuse(self) -> None:
        """Replace the branches by ``rbr_reparam`` (eval-mode BN statistics are baked in)."""
        if hasattr(self, "rbr_reparam"):
            return
        kernel, bias = self.equivalent_kernel_bias()
        dense = self.rbr_dense[0]
        conv = nn.Conv2d(self.in_channels, self.out_channels, 3, dense.stride, 1, groups=self.groups, bias=True)
        conv.weight.copy_(kernel)
        conv.bias.copy_(bias)
        self.rbr_reparam = conv.to(kernel.device)
        del self.rbr_dense, self.rbr_1x1
        self.rbr_identity = None


class _Implicit(nn.Module):
    """A learned per-channel constant (YOLOR's implicit knowledge), ``implicit: [1, C, 1, 1]``."""

    init_mean: ClassVar[float] = 0.0

    def __init__(self, channel: int, mean: float | None = None, std: float = 0.02) -> None:
        super().__init__()
        self.channel = channel
        self.implicit = nn.Parameter(torch.empty(1, channel, 1, 1))
        nn.init.normal_(self.implicit, mean=self.init_mean if mean is None else mean, std=std)

    @classmethod
    def from_row(cls, row: Row) -> tuple[nn.Module, Channels]:
        """Row args: ``[]`` (the channel count is the input's) or ``[mean, std]``."""
        c1 = row.c1
        return row.construct(cls, c1, *row.args), c1


@BLOCKS.register()
class ImplicitA(_Implicit):
    """Adds a learned per-channel offset: ``x + implicit`` (folded into the next conv's bias)."""

    yaml_example: ClassVar[dict] = {"rows": [[-1, 1, "ImplicitA", []]], "stride": 1}
    init_mean = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.implicit + x


@BLOCKS.register()
class ImplicitM(_Implicit):
    """Multiplies by a learned per-channel scale: ``x * implicit`` (folded into the previous conv)."""

    yaml_example: ClassVar[dict] = {"rows": [[-1, 1, "ImplicitM", []]], "stride": 1}
    init_mean = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.implicit * x
