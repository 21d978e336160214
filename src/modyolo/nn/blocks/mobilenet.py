"""MobileNetV2 blocks as YAML rows (Sandler et al. 2018), spelled as the recipe YAMLs write them.

- ``[-1, 1, ConvBNReLU, [32, 3, 2]]``: conv + BN + ReLU6, args ``[c2, k=3, s=1, g=1]``.
- ``[-1, 1, InvertedResidual, [24, 2, 6]]``: args ``[c2, stride, expand_ratio]``; 1x1 expand
  (skipped when the ratio is 1) -> 3x3 depth-wise at ``stride`` -> linear 1x1 projection, with a
  residual when ``stride == 1`` and ``c1 == c2``.

MobileNetV2 itself is 17 InvertedResidual rows, one per block. A row with ``number > 1`` is read
as a stage (the first block strides and changes channels, the rest keep them), the same rule as
the ResNet rows, so depth scaling never silently changes the stride.

The layers of an InvertedResidual sit in ``conv`` in torchvision's order, so
:mod:`modyolo.nn.pretrained` can map torchvision's ``features.<k>`` onto the rows, and BatchNorm is
torchvision's (eps 1e-5, momentum 0.1; see :mod:`modyolo.nn.blocks.resnet` for why), so those
weights reproduce torchvision's feature maps.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from modyolo.nn.blocks.conv import ConvBNAct
from modyolo.nn.blocks.resnet import TORCHVISION_BN_EPS, TORCHVISION_BN_MOMENTUM  # eps 1e-5: see resnet.py
from modyolo.nn.pretrained import Groups, first_block, with_stem
from modyolo.nn.registry import BLOCKS
from modyolo.nn.row import Channels, Row, YamlBlock


@BLOCKS.register()
class ConvBNReLU(YamlBlock, ConvBNAct):
    """Conv (no bias) + BN + ReLU6 ('same' padding). ``act=False`` gives the linear projection.

    :class:`~modyolo.nn.blocks.conv.ConvBNAct` with torchvision's BatchNorm (eps 1e-5, momentum 0.1)."""

    yaml_example: ClassVar[dict] = {"rows": [[-1, 1, "ConvBNReLU", [32, 3, 2]]], "stride": 2}

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1, g: int = 1, act: bool = True) -> None:
        super().__init__(
            c1,
            c2,
            k,
            s,
            (k - 1) // 2,
            g,
            act=nn.ReLU6(inplace=True) if act else None,
            eps=TORCHVISION_BN_EPS,
            momentum=TORCHVISION_BN_MOMENTUM,
        )


@BLOCKS.register()
class InvertedResidual(nn.Module):
    """Row args ``[c2, stride, expand_ratio]``. ``Tensor[B, c1, H, W]`` -> ``Tensor[B, c2, H/s, W/s]``."""

    yaml_example: ClassVar[dict] = {"rows": [[-1, 1, "InvertedResidual", [24, 2, 6]]], "stride": 2}

    def __init__(self, c1: int, c2: int, s: int, expand_ratio: float) -> None:
        super().__init__()
        if s not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {s}")
        hidden = int(round(c1 * expand_ratio))
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU(c1, hidden, 1))
        layers += [ConvBNReLU(hidden, hidden, 3, s, g=hidden), ConvBNReLU(hidden, c2, 1, act=False)]
        self.conv = nn.Sequential(*layers)
        self.use_residual = s == 1 and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.use_residual else y

    pretrained_description: ClassVar[str] = "a torchvision MobileNetV2 state_dict"

    @classmethod
    def pretrained_layout(cls, backbone: list[nn.Module], source: dict[str, torch.Tensor]) -> Groups | None:
        """torchvision's ``features.0`` -> the stem row, ``features.<k>`` -> the k-th InvertedResidual
        (one torchvision block per InvertedResidual, also inside a repeated row); paired in order."""
        if "features.1.conv.0.0.weight" not in source and "features.1.conv.0.weight" not in source:
            return None
        stages = [i for i, m in enumerate(backbone) if isinstance(first_block(m), InvertedResidual)]
        if not stages:
            return None
        groups: Groups = []
        k = 1
        for i in stages:
            blocks = len(backbone[i]) if isinstance(backbone[i], nn.Sequential) else 0
            for j in range(max(blocks, 1)):
                groups.append(((f"features.{k}.",), f"model.{i}.{j}." if blocks else f"model.{i}."))
                k += 1
        return with_stem(backbone, groups, stages[0], ("features.0.",))

    @classmethod
    def from_row(cls, row: Row) -> tuple[nn.Module, Channels]:
        if len(row.args) != 3:
            raise row.error(f"args must be [c2, stride, expand_ratio], e.g. [24, 2, 6]; got {row.args}")
        c1, c2 = row.c1, row.width(row.args[0])
        s, t = row.args[1], row.args[2]
        if s not in (1, 2) or isinstance(s, bool):
            raise row.error(f"stride must be 1 or 2, got {s!r}")
        if not isinstance(t, (int, float)) or isinstance(t, bool) or t < 1:
            raise row.error(f"expand_ratio must be a number >= 1, got {t!r}")
        if row.number == 1:
            return row.construct(cls, c1, c2, s, t), c2
        blocks = [row.construct(cls, c1, c2, s, t)]
        blocks += [row.construct(cls, c2, c2, 1, t) for _ in range(row.number - 1)]
        return nn.Sequential(*blocks), c2
