"""Position-sensitive attention blocks of YOLOv10 / YOLO11 (ultralytics' names and layouts).

``Attention`` is multi-head self-attention over all H*W positions computed with 1x1 convs, plus a
depth-wise 3x3 positional term on the values; ``PSABlock`` = attention + 2-layer conv FFN, both
residual; ``PSA`` and ``C2PSA`` run them on one half of a 1x1 conv split (CSP style). Attention is
O((H*W)^2) in memory, which is why the configs put it only after the stride-32 stage.

Row args: ``Attention [num_heads=8, attn_ratio=0.5]`` (keeps channels), ``PSA [c2, e=0.5]``,
``C2PSA [c2, e=0.5]`` (``number`` = PSABlocks inside); PSA and C2PSA need ``c2 == c1``.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from modyolo.nn.blocks.yolo import Conv
from modyolo.nn.registry import BLOCKS
from modyolo.nn.row import Channels, Row, YamlBlock


@BLOCKS.register()
class Attention(nn.Module):
    """Self-attention on ``[B, dim, H, W]``: ``num_heads`` heads, key width ``head_dim * attn_ratio``."""

    yaml_example: ClassVar[dict] = {"rows": [[-1, 1, "Conv", [64, 3, 2]], [-1, 1, "Attention", [2]]], "stride": 2}

    def __init__(self, dim: int, num_heads: int = 8, attn_ratio: float = 0.5) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.key_dim = int(self.head_dim * attn_ratio)
        self.scale = self.key_dim**-0.5
        self.qkv = Conv(dim, dim + 2 * self.key_dim * num_heads, 1, act=False)
        self.proj = Conv(dim, dim, 1, act=False)
        self.pe = Conv(dim, dim, 3, 1, g=dim, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = (
            self.qkv(x)
            .view(b, self.num_heads, 2 * self.key_dim + self.head_dim, h * w)
            .split([self.key_dim, self.key_dim, self.head_dim], dim=2)
        )
        attn = ((q * self.scale).transpose(-2, -1) @ k).softmax(dim=-1)  # [B, heads, HW, HW]
        y = (v @ attn.transpose(-2, -1)).view(b, c, h, w) + self.pe(v.reshape(b, c, h, w))
        return self.proj(y)

    @classmethod
    def from_row(cls, row: Row) -> tuple[nn.Module, Channels]:
        c1 = row.c1
        heads = row.args[0] if row.args else 8
        if not isinstance(heads, int) or heads < 1 or c1 % heads or int(c1 // heads * 0.5) < 1:
            raise row.error(
                f"{c1} input channels do not split into {heads!r} heads of width >= 2; use fewer heads (first arg)"
            )
        return row.repeat(lambda: row.construct(cls, c1, *row.args)), c1


class PSABlock(nn.Module):
    """Attention + FFN (``c -> 2c -> c``), each with a residual when ``shortcut``."""

    def __init__(self, c: int, attn_ratio: float = 0.5, num_heads: int = 4, shortcut: bool = True) -> None:
        super().__init__()
        self.attn = Attention(c, attn_ratio=attn_ratio, num_heads=num_heads)
        self.ffn = nn.Sequential(Conv(c, c * 2, 1), Conv(c * 2, c, 1, act=False))
        self.add = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x) if self.add else self.attn(x)
        return x + self.ffn(x) if self.add else self.ffn(x)


class _SameChannels(YamlBlock):
    @classmethod
    def from_row(cls, row: Row) -> tuple[nn.Module, Channels]:
        if row.args and row.width(row.args[0]) != row.c1:
            raise row.error(
                f"keeps channels, but its input has {row.c1} and its first arg asks for "
                f"{row.width(row.args[0])} (after width_multiple); put a Conv before it or match them"
            )
        return super().from_row(row)


@BLOCKS.register()
class PSA(_SameChannels, nn.Module):
    """YOLOv10's PSA: attention + FFN on half the channels. Row args: ``[c2, e=0.5]`` (c2 == c1)."""

    yaml_example: ClassVar[dict] = {"rows": [[-1, 1, "Conv", [128, 3, 2]], [-1, 1, "PSA", [128]]], "stride": 2}

    def __init__(self, c1: int, c2: int, e: float = 0.5) -> None:
        super().__init__()
        self.c = int(c1 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv(2 * self.c, c1, 1)
        self.attn = Attention(self.c, attn_ratio=0.5, num_heads=max(self.c // 64, 1))
        self.ffn = nn.Sequential(Conv(self.c, self.c * 2, 1), Conv(self.c * 2, self.c, 1, act=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.cv1(x).split((self.c, self.c), dim=1)
        b = b + self.attn(b)
        b = b + self.ffn(b)
        return self.cv2(torch.cat((a, b), 1))


@BLOCKS.register()
class C2PSA(_SameChannels, nn.Module):
    """YOLO11's stack of ``n`` PSABlocks on half the channels. Row args: ``[c2, e=0.5]`` (c2 == c1)."""

    yaml_example: ClassVar[dict] = {"rows": [[-1, 1, "Conv", [128, 3, 2]], [-1, 2, "C2PSA", [128]]], "stride": 2}
    absorbs_repeats = True

    def __init__(self, c1: int, c2: int, n: int = 1, e: float = 0.5) -> None:
        super().__init__()
        self.c = int(c1 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv(2 * self.c, c1, 1)
        self.m = nn.Sequential(*(PSABlock(self.c, attn_ratio=0.5, num_heads=max(self.c // 64, 1)) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.cv1(x).split((self.c, self.c), dim=1)
        return self.cv2(torch.cat((a, self.m(b)), 1))
