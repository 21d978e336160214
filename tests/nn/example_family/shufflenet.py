"""A worked example of a block family that brings its own pretrained mapping (README, "Adding a block
family with its own pretrained weights"): ShuffleNetV2 stages (Ma et al. 2018) that take a
torchvision ``shufflenet_v2_x*`` state_dict.

In the package this file would be ``src/modyolo/nn/blocks/shufflenet.py``, plus one import line in
``nn/blocks/__init__.py`` and a YAML in ``cfg/models/``; nothing else is edited. The test imports it
instead (tests/nn/test_family_protocol.py), so the shipped registry stays as it is.

Row: ``[-1, n, ShuffleStage, [c2, 2]]`` is a whole stage of ``n`` blocks, the first one strided
(torchvision's ``stage2``..``stage4``). Module names follow torchvision's (``branch1``, ``branch2``)
so the stages transfer by name; the stem is the existing ``ResNetStem`` with ``k=3`` (3x3/2 conv + BN
+ ReLU + 3x3/2 max-pool, torchvision's ``conv1`` + ``maxpool``), which pairs up in order.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from modyolo.nn.blocks.resnet import batch_norm, stage_from_row
from modyolo.nn.pretrained import Groups, first_block, with_stem
from modyolo.nn.registry import BLOCKS
from modyolo.nn.row import Channels, Row


def channel_shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    """``Tensor[B, C, H, W]`` -> same shape, channels interleaved across ``groups``."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


@BLOCKS.register()
class ShuffleStage(nn.Module):
    """One ShuffleNetV2 unit, ``Tensor[B, c1, H, W]`` -> ``Tensor[B, c2, H/s, W/s]``; a row is a stage."""

    yaml_example: ClassVar[dict] = {"rows": [[-1, 2, "ShuffleStage", [48, 2]]], "stride": 2}
    pretrained_description: ClassVar[str] = "a torchvision ShuffleNetV2 state_dict"

    def __init__(self, c1: int, c2: int, s: int = 1) -> None:
        super().__init__()
        c_ = c2 // 2
        self.stride = s
        self.branch1 = nn.Sequential()
        if s > 1:
            self.branch1 = nn.Sequential(
                nn.Conv2d(c1, c1, 3, s, 1, groups=c1, bias=False),
                batch_norm(c1),
                nn.Conv2d(c1, c_, 1, bias=False),
                batch_norm(c_),
                nn.ReLU(inplace=True),
            )
        self.branch2 = nn.Sequential(
            nn.Conv2d(c1 if s > 1 else c_, c_, 1, bias=False),
            batch_norm(c_),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_, c_, 3, s, 1, groups=c_, bias=False),
            batch_norm(c_),
            nn.Conv2d(c_, c_, 1, bias=False),
            batch_norm(c_),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            return channel_shuffle(torch.cat((x1, self.branch2(x2)), dim=1))
        return channel_shuffle(torch.cat((self.branch1(x), self.branch2(x)), dim=1))

    @classmethod
    def from_row(cls, row: Row) -> tuple[nn.Module, Channels]:
        return stage_from_row(cls, row)  # [c2, s]: n blocks, only the first one strides

    # -- the pretrained mapping (modyolo.nn.pretrained.PretrainedMapping) ----------------------------
    @classmethod
    def pretrained_layout(cls, backbone: list[nn.Module], source: dict[str, torch.Tensor]) -> Groups | None:
        """torchvision's ``conv1`` -> the stem row, ``stage<k+1>`` -> the k-th ShuffleStage row."""
        if "stage2.0.branch2.0.weight" not in source:
            return None  # not a ShuffleNetV2 file: let another family try
        stages = [i for i, m in enumerate(backbone) if isinstance(first_block(m), cls)]
        if not stages:
            return None
        groups: Groups = [((f"stage{k}.",), f"model.{i}.") for k, i in zip(range(2, 5), stages)]
        return with_stem(backbone, groups, stages[0], ("conv1.",))
