"""A tiny stand-in for DetectionModel with the same contract the engine relies on.

``model.model`` is the layer list (freezing indexes it), ``model.head`` is an anchor head with
``nc, na, nl, no, anchors`` (grid units), ``stride`` and ``m``; in training mode the forward
returns ``nl`` raw tensors ``(bs, na, ny, nx, 5 + nc)``.
"""

from __future__ import annotations

import torch
from torch import nn

# yolov5's P3-P5 anchors, pixels.
ANCHORS_PX = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]


class TinyHead(nn.Module):
    def __init__(self, nc: int, ch: tuple[int, ...], strides: tuple[int, ...], anchors_px=ANCHORS_PX) -> None:
        super().__init__()
        self.nc, self.nl, self.na, self.no = nc, len(ch), len(anchors_px[0]) // 2, nc + 5
        stride = torch.tensor(strides, dtype=torch.float32)
        self.register_buffer("stride", stride)
        a = torch.tensor(anchors_px, dtype=torch.float32).view(self.nl, -1, 2) / stride.view(-1, 1, 1)
        self.register_buffer("anchors", a)
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for conv, x in zip(self.m, feats):
            bs, _, ny, nx = x.shape
            out.append(conv(x).view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous())
        return out


def conv_bn(c1: int, c2: int, s: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c1, c2, 3, s, 1, bias=False), nn.BatchNorm2d(c2), nn.SiLU())


class TinyDetector(nn.Module):
    """Layers 0-4 downsample to strides 8/16/32 (layers 2, 3, 4 feed the head, layer 5)."""

    def __init__(self, nc: int = 3) -> None:
        super().__init__()
        self.model = nn.Sequential(
            conv_bn(3, 4, 2), conv_bn(4, 8, 2), conv_bn(8, 8, 2), conv_bn(8, 16, 2), conv_bn(16, 16, 2)
        )
        self.model.append(TinyHead(nc, (8, 16, 16), (8, 16, 32)))
        self.yaml = {"nc": nc, "note": "tiny test model"}

    @property
    def head(self) -> TinyHead:
        return self.model[-1]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i, layer in enumerate(self.model[:-1]):
            x = layer(x)
            if i >= 2:
                feats.append(x)
        return self.head(feats)


def tiny_model(nc: int = 3, seed: int = 0) -> TinyDetector:
    torch.manual_seed(seed)
    return TinyDetector(nc=nc)


def make_batch(bs: int = 2, size: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (bs, 3, size, size) and targets Tensor[N, 6] (img, cls, cx, cy, w, h) 0-1."""
    g = torch.Generator().manual_seed(seed)
    imgs = torch.rand(bs, 3, size, size, generator=g)
    rows = []
    for i in range(bs):
        for _ in range(3):
            wh = torch.rand(2, generator=g) * 0.4 + 0.1
            cxy = torch.rand(2, generator=g) * (1 - wh) + wh / 2
            cls = torch.randint(0, 3, (1,), generator=g).float()
            rows.append(torch.cat((torch.tensor([float(i)]), cls, cxy, wh)))
    return imgs, torch.stack(rows)
