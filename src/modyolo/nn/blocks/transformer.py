"""Vision-transformer blocks from yolov5's hub configs (yolov5s-transformer.yaml).

``TransformerBlock`` treats every pixel of a feature map as a token: ``[B, C, H, W]`` ->
``[H*W, B, C]`` (sequence-first, as ``nn.MultiheadAttention`` defaults to) -> the same shape
back. Parameter names (``q``, ``k``, ``v``, ``ma``, ``fc1``, ``fc2``, ``linear``, ``tr``) follow
yolov5 so its state_dicts load strictly.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from modyolo.nn.blocks.yolo import C3, Conv
from modyolo.nn.registry import BLOCKS
from modyolo.nn.row import Channels, Row


class TransformerLayer(nn.Module):
    """Self-attention + 2-layer MLP, each with a residual; no LayerNorm (as in yolov5)."""

    def __init__(self, c: int, num_heads: int) -> None:
        super().__init__()
        self.q = nn.Linear(c, c, bias=False)
        self.k = nn.Linear(c, c, bias=False)
        self.v = nn.Linear(c, c, bias=False)
        self.ma = nn.MultiheadAttention(embed_dim=c, num_heads=num_heads)
        self.fc1 = nn.Linear(c, c, bias=False)
        self.fc2 = nn.Linear(c, c, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: ``[L, B, C]`` tokens."""
        x = self.ma(self.q(x), self.k(x), self.v(x))[0] + x
        return self.fc2(self.fc1(x)) + x


@BLOCKS.register()
class TransformerBlock(nn.Module):
    """Row args (yolov5 writes them out, unscaled): ``[c1, c2, num_heads, num_layers]``.

    A 1x1 Conv adapts channels when c1 != c2; a learned linear position term is added to the
    tokens before the layers.
    """

    # attention is quadratic in H*W: the example runs it at stride 16 (16x16 tokens in the dry run)
    yaml_example: ClassVar[dict] = {
        "rows": [
            [-1, 1, "Conv", [32, 4, 4, 0]],
            [-1, 1, "Conv", [32, 4, 4, 0]],
            [-1, 1, "TransformerBlock", [8, 8, 2, 1]],
        ],
        "stride": 16,
    }

    def __init__(self, c1: int, c2: int, num_heads: int, num_layers: int) -> None:
        super().__init__()
        self.conv = Conv(c1, c2) if c1 != c2 else None
        self.linear = nn.Linear(c2, c2)
        self.tr = nn.Sequential(*(TransformerLayer(c2, num_heads) for _ in range(num_layers)))
        self.c2 = c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv is not None:
            x = self.conv(x)
        b, _, h, w = x.shape
        p = x.flatten(2).permute(2, 0, 1)  # [H*W, B, C]
        return self.tr(p + self.linear(p)).permute(1, 2, 0).reshape(b, self.c2, h, w)

    @classmethod
    def from_row(cls, row: Row) -> tuple[nn.Module, Channels]:
        """yolov5 writes c1 out literally; the real input channels are used (the same whenever
        yolov5 itself could run the row), c2 / heads / layers as written (not width-scaled)."""
        if len(row.args) != 4:
            raise row.error(f"needs args [c1, c2, num_heads, num_layers], got {row.args}")
        _, c2, heads, layers = row.args
        return row.construct(cls, row.c1, c2, heads, layers), c2


@BLOCKS.register()
class C3TR(C3):
    """C3 whose bottlenecks are one TransformerBlock (4 heads, ``n`` layers). Row args as C3."""

    yaml_example: ClassVar[dict] = {
        "rows": [[-1, 1, "Conv", [32, 4, 4, 0]], [-1, 1, "Conv", [32, 4, 4, 0]], [-1, 2, "C3TR", [64]]],
        "stride": 16,
    }

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__(c1, c2, 0, shortcut, g, e)
        c_ = int(c2 * e)
        self.m = TransformerBlock(c_, c_, 4, n)
