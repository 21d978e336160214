"""The CSP blocks of YOLOv8 / YOLO11 with ultralytics' parameter names: C2f, C3k2, C3k.

``C2f`` splits a 1x1 conv's output in two halves, runs ``n`` bottlenecks on the second half and
concatenates *every* intermediate map (2 + n of them) before the output 1x1 conv, where yolov5's
``C3`` keeps only the last. ``C3k2`` is a C2f whose inner blocks are bottlenecks, ``C3k`` (a C3 with
k x k bottlenecks) or bottleneck + PSA attention. Names (``cv1``, ``cv2``, ``m``) and layouts follow
ultralytics so that its state_dicts for ``yolov8*.yaml`` / ``yolo11*.yaml`` load strictly.

Row args follow ultralytics: ``C2f [c2, shortcut=False, g=1, e=0.5]``,
``C3k2 [c2, c3k=False, e=0.5, attn=False, g=1, shortcut=True]``,
``C3k [c2, shortcut=True, g=1, e=0.5, k=3]``; the row's ``number`` is the block count inside.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from modyolo.nn.blocks.attention import PSABlock
from modyolo.nn.blocks.yolo import C3, Conv
from modyolo.nn.registry import BLOCKS
from modyolo.nn.row import Channels, Row, YamlBlock

#: scales at which ultralytics turns every C3k2 into its C3k form (its parse_model's rule)
C3K_SCALES = frozenset({"m", "l", "x"})


class KBottleneck(nn.Module):
    """Bottleneck with per-conv kernel sizes ``k = (k1, k2)`` (ultralytics' ``Bottleneck``).

    yolov5's Bottleneck is this with ``k=(1, 3)``; ultralytics' default is ``(3, 3)``.
    """

    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 1, k: tuple = (3, 3), e: float = 0.5) -> None:
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, k[0], 1)
        self.cv2 = Conv(c_, c2, k[1], 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


@BLOCKS.register()
class C2f(YamlBlock, nn.Module):
    """CSP with 2 convs keeping every bottleneck output. Row args: ``[c2, shortcut=False, g=1, e=0.5]``.

    Shapes: ``[B, c1, H, W] -> [B, c2, H, W]``; hidden width ``c = int(c2 * e)``.
    """

    yaml_example: ClassVar[dict] = {"rows": [[-1, 2, "C2f", [64, True]]], "stride": 1}
    absorbs_repeats = True

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = False, g: int = 1, e: float = 0.5) -> None:
        super().__init__()
        self.c = int(c2 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv((2 + n) * self.c, c2, 1)
        self.m = nn.ModuleList(KBottleneck(self.c, self.c, shortcut, g, k=(3, 3), e=1.0) for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = list(self.cv1(x).chunk(2, 1))
        for m in self.m:
            y.append(m(y[-1]))
        return self.cv2(torch.cat(y, 1))


@BLOCKS.register()
class C3k(C3):
    """C3 with k x k bottlenecks. Row args: ``[c2, shortcut=True, g=1, e=0.5, k=3]``."""

    yaml_example: ClassVar[dict] = {"rows": [[-1, 2, "C3k", [64, True, 1, 0.5, 3]]], "stride": 1}
    absorbs_repeats = True

    def __init__(
        self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5, k: int = 3
    ) -> None:
        super().__init__(c1, c2, n, shortcut, g, e)
        c_ = int(c2 * e)
        self.m = nn.Sequential(*(KBottleneck(c_, c_, shortcut, g, k=(k, k), e=1.0) for _ in range(n)))


@BLOCKS.register()
class C3k2(C2f):
    """YOLO11's C2f whose inner blocks are bottlenecks, C3k blocks (``c3k``) or bottleneck + PSA
    (``attn``). Row args: ``[c2, c3k=False, e=0.5, attn=False, g=1, shortcut=True]``.

    As in ultralytics, a model built at scale m, l or x uses C3k blocks whatever the row says.
    """

    yaml_example: ClassVar[dict] = {"rows": [[-1, 2, "C3k2", [64, False, 0.25]]], "stride": 1}
    ultralytics_dw_head = True  # ultralytics gives models with this block the depth-wise class branch

    def __init__(
        self,
        c1: int,
        c2: int,
        n: int = 1,
        c3k: bool = False,
        e: float = 0.5,
        attn: bool = False,
        g: int = 1,
        shortcut: bool = True,
    ) -> None:
        super().__init__(c1, c2, n, shortcut, g, e)

        def inner() -> nn.Module:
            if attn:
                return nn.Sequential(
                    KBottleneck(self.c, self.c, shortcut, g),
                    PSABlock(self.c, attn_ratio=0.5, num_heads=max(self.c // 64, 1)),
                )
            if c3k:
                return C3k(self.c, self.c, 2, shortcut, g)
            return KBottleneck(self.c, self.c, shortcut, g)

        self.m = nn.ModuleList(inner() for _ in range(n))

    @classmethod
    def from_row(cls, row: Row) -> tuple[nn.Module, Channels]:
        if row.extra.get("yaml", {}).get("scale") in C3K_SCALES:
            args = list(row.args) + [None] * max(0, 2 - len(row.args))
            args[1] = True
            row.args = args
        return super().from_row(row)
