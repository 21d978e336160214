"""ResNet blocks as YAML rows (He et al. 2016): ResNet18/34 ``BasicBlock``, ResNet50/101
``ResNetBottleneck`` and the 7x7 ``ResNetStem``.

A ResNet row is a whole *stage*: ``[-1, n, BasicBlock, [c2, s]]`` builds ``n`` blocks (after
yolov5's depth scaling), the first one going ``c1 -> c2`` at stride ``s`` with a projected
shortcut (1x1 conv + BN) whenever the shape changes, the others ``c2 -> c2`` at stride 1. This is
what the blog-post recipes get wrong when they repeat one block ``n`` times with the same
``(c1, c2, s)``: the second copy then either crashes on channels or halves the size again, and the
head ends up tapping strides 4/8/16. ``[c2]`` alone means stride 1 (the ResNet ``layer1`` row).

``c2`` is the row's *output* channels, as for every yolov5 row (so ``width_multiple`` scales it
and head rows know what they receive): for ``ResNetBottleneck`` the inner width is ``c2 // 4``,
e.g. ``[256]`` is torchvision's ``layer1`` of ResNet50.

Inside a stage, module names follow torchvision (``0.conv1``, ``0.bn1``, ``0.downsample.0``...) so
that :mod:`modyolo.nn.pretrained` can map a torchvision ResNet state_dict onto the rows: stage
``k`` of the YAML receives ``layer{k}``.

BatchNorm is torchvision's (eps 1e-5, momentum 0.1), not yolov5's (eps 1e-3, momentum 0.03, kept
by the yolov5 blocks in :mod:`modyolo.nn.blocks.yolo`): these rows mirror torchvision networks, and
with torchvision's weights and BN statistics they must compute torchvision's feature maps. The eps
is part of that computation (``x / sqrt(var + eps)``): at 1e-3 a ResNet18's layer4 differs from
torchvision's by several percent of its largest activation. The momentum only moves the running
statistics while training (eval outputs do not depend on it); torchvision's is kept so a native row
trains exactly like a ``TorchVision`` row wrapping the same network, and an ablation between the two
differs in nothing but the code path.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from modyolo.nn.blocks.conv import ConvBNAct
from modyolo.nn.pretrained import Groups, first_block, with_stem
from modyolo.nn.registry import BLOCKS
from modyolo.nn.row import Channels, Row, YamlBlock

TORCHVISION_BN_EPS, TORCHVISION_BN_MOMENTUM = 1e-5, 0.1


def batch_norm(c: int) -> nn.BatchNorm2d:
    """torchvision's BatchNorm2d (eps 1e-5, momentum 0.1) for rows that mirror torchvision networks."""
    return nn.BatchNorm2d(c, eps=TORCHVISION_BN_EPS, momentum=TORCHVISION_BN_MOMENTUM)


def fold(conv: nn.Conv2d, bn: nn.Module) -> tuple[nn.Conv2d, nn.Module]:
    """(conv with ``bn`` folded in, Identity) in eval mode; a no-op once already folded."""
    if isinstance(bn, nn.BatchNorm2d):
        return fuse_conv_bn_eval(conv.eval(), bn.eval()), nn.Identity()
    return conv, bn


def _resnet_signature(kind: str, depths: list[int]) -> str:
    names = {
        ("BasicBlock", (2, 2, 2, 2)): "resnet18",
        ("BasicBlock", (3, 4, 6, 3)): "resnet34",
        ("ResNetBottleneck", (3, 4, 6, 3)): "resnet50",
        ("ResNetBottleneck", (3, 4, 23, 3)): "resnet101",
        ("ResNetBottleneck", (3, 8, 36, 3)): "resnet152",
    }
    known = names.get((kind, tuple(depths)))
    stages = "-".join(map(str, depths))
    return f"{known} ({kind} stages {stages})" if known else f"{kind} stages {stages}"


def projection(c1: int, c2: int, s: int) -> nn.Module | None:
    """The shortcut branch: identity when shapes agree, else 1x1/s conv + BN (torchvision's 'B')."""
    if s == 1 and c1 == c2:
        return None
    return nn.Sequential(nn.Conv2d(c1, c2, 1, s, bias=False), batch_norm(c2))


class _ResidualBlock(nn.Module):
    """Shared fuse/forward of the two ResNet blocks: ``relu(body(x) + shortcut(x))``, and their
    pretrained mapping (:class:`modyolo.nn.pretrained.PretrainedMapping`): a torchvision ResNet file."""

    downsample: nn.Module | None
    pretrained_description: ClassVar[str] = "a torchvision ResNet state_dict"

    @classmethod
    def pretrained_layout(cls, backbone: list[nn.Module], source: dict[str, torch.Tensor]) -> Groups | None:
        """torchvision's ``conv1``/``bn1`` -> the stem row, ``layer<k>`` -> the k-th stage row (by name)."""
        if "layer1.0.conv1.weight" not in source:
            return None
        stages = [i for i, m in enumerate(backbone) if isinstance(first_block(m), _ResidualBlock)]
        if not stages:
            return None
        # a stage row is always a Sequential of blocks, like torchvision's layer<k>
        groups: Groups = [((f"layer{k}.",), f"model.{i}.") for k, i in zip(range(1, 5), stages)]
        return with_stem(backbone, groups, stages[0], ("conv1.", "bn1."))

    @classmethod
    def pretrained_hint(cls, backbone: list[nn.Module], source: dict[str, torch.Tensor], where: str) -> str:
        """Which ResNet the file is and which the rows are (resnet50 file, resnet18 rows)."""
        file_kind = "ResNetBottleneck" if "layer1.0.conv3.weight" in source else "BasicBlock"
        file_depths = [len({k.split(".")[1] for k in source if k.startswith(f"layer{j}.")}) for j in range(1, 5)]
        stages = [m for m in backbone if isinstance(m, nn.Sequential) and len(m) and isinstance(m[0], _ResidualBlock)]
        rows = (
            _resnet_signature(type(stages[0][0]).__name__, [len(m) for m in stages]) if stages else "not ResNet stages"
        )
        return (
            f"the file is a torchvision {_resnet_signature(file_kind, file_depths)}, the backbone rows of "
            f"{where} are {rows}: use the matching torchvision file (at width_multiple and depth_multiple 1.0)"
        )

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.downsample is None else self.downsample(x)

    def fuse(self) -> None:
        """Fold every conv/bn pair (``convK``/``bnK`` and the downsample) for inference."""
        k = 1
        while hasattr(self, f"conv{k}"):
            conv, bn = fold(getattr(self, f"conv{k}"), getattr(self, f"bn{k}"))
            setattr(self, f"conv{k}", conv)
            setattr(self, f"bn{k}", bn)
            k += 1
        if self.downsample is not None:
            conv, bn = fold(self.downsample[0], self.downsample[1])
            self.downsample = nn.Sequential(conv, bn)


@BLOCKS.register()
class BasicBlock(_ResidualBlock):
    """Two 3x3 convs (ResNet18/34). Row args: ``[c2, stride=1]``; the row is a whole stage.

    Input ``Tensor[B, c1, H, W]`` -> ``Tensor[B, c2, H/s, W/s]``.
    """

    expansion: ClassVar[int] = 1
    yaml_example: ClassVar[dict] = {"rows": [[-1, 2, "BasicBlock", [64, 2]]], "stride": 2}

    def __init__(self, c1: int, c2: int, s: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c1, c2, 3, s, 1, bias=False)
        self.bn1 = batch_norm(c2)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c2, c2, 3, 1, 1, bias=False)
        self.bn2 = batch_norm(c2)
        self.downsample = projection(c1, c2, s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + self._shortcut(x))

    @classmethod
    def from_row(cls, row: Row) -> tuple[nn.Module, Channels]:
        return stage_from_row(cls, row)


@BLOCKS.register(aliases=("ResBottleneck",))
class ResNetBottleneck(_ResidualBlock):
    """1x1 reduce, 3x3 (carries the stride, as torchvision's v1.5), 1x1 expand x4 (ResNet50/101).

    Row args: ``[c2, stride=1]`` with ``c2`` the block's output channels (inner width ``c2 // 4``);
    the row is a whole stage. ``Tensor[B, c1, H, W]`` -> ``Tensor[B, c2, H/s, W/s]``.
    """

    expansion: ClassVar[int] = 4
    yaml_example: ClassVar[dict] = {"rows": [[-1, 2, "ResNetBottleneck", [256, 2]]], "stride": 2}

    def __init__(self, c1: int, c2: int, s: int = 1) -> None:
        super().__init__()
        c_ = c2 // self.expansion
        self.conv1 = nn.Conv2d(c1, c_, 1, 1, bias=False)
        self.bn1 = batch_norm(c_)
        self.conv2 = nn.Conv2d(c_, c_, 3, s, 1, bias=False)
        self.bn2 = batch_norm(c_)
        self.conv3 = nn.Conv2d(c_, c2, 1, 1, bias=False)
        self.bn3 = batch_norm(c2)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = projection(c1, c2, s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + self._shortcut(x))

    @classmethod
    def from_row(cls, row: Row) -> tuple[nn.Module, Channels]:
        return stage_from_row(cls, row)


def stage_from_row(cls: type[nn.Module], row: Row) -> tuple[nn.Module, Channels]:
    """``[c2, s=1]`` -> ``nn.Sequential`` of ``row.number`` blocks; only the first strides/projects.

    Always a Sequential (even for one block) so parameter names read ``<row>.<block>.conv1`` like
    torchvision's ``layer<k>.<block>.conv1`` whatever the depth multiple.
    """
    if not 1 <= len(row.args) <= 2:
        raise row.error(f"args must be [c2] or [c2, stride], e.g. [128, 2]; got {row.args}")
    c1, c2 = row.c1, row.width(row.args[0])
    s = row.args[1] if len(row.args) == 2 else 1
    if not isinstance(s, int) or isinstance(s, bool) or s < 1:
        raise row.error(f"stride must be a positive integer, got {s!r}")
    expansion = getattr(cls, "expansion", 1)
    if c2 % expansion:
        raise row.error(f"output channels {c2} must be divisible by the expansion {expansion}")
    blocks = [row.construct(cls, c1, c2, s)]
    blocks += [row.construct(cls, c2, c2, 1) for _ in range(row.number - 1)]
    return nn.Sequential(*blocks), c2


@BLOCKS.register()
class ResNetStem(YamlBlock, ConvBNAct):
    """7x7/2 conv + BN + ReLU + 3x3/2 max-pool: the ResNet input stem (stride 4).

    Row args: ``[c2=64, k=7]``. A :class:`~modyolo.nn.blocks.conv.ConvBNAct` (``conv``/``bn``/``act``,
    so the generic fuse folds it) followed by the pool.
    """

    yaml_example: ClassVar[dict] = {"rows": [[-1, 1, "ResNetStem", [64]]], "stride": 4}

    def __init__(self, c1: int, c2: int = 64, k: int = 7) -> None:
        super().__init__(
            c1, c2, k, 2, k // 2, act=nn.ReLU(inplace=True), eps=TORCHVISION_BN_EPS, momentum=TORCHVISION_BN_MOMENTUM
        )
        self.pool = nn.MaxPool2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(super().forward(x))

    def forward_fuse(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(super().forward_fuse(x))
