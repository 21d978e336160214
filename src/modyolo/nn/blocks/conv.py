"""The shared conv + BatchNorm + activation that block families build on.

yolov5's ``Conv``, MobileNetV2's ``ConvBNReLU`` and the ResNet stem are this module with another
BatchNorm (yolov5: eps 1e-3, momentum 0.03; torchvision: eps 1e-5, momentum 0.1) and another
activation (the model's default, ReLU6, ReLU). The submodules are named ``conv``, ``bn``, ``act``
in that order, which is what yolov5, yolov7, ultralytics and torchvision-mirroring rows all use, so
state_dicts made by those projects keep loading strictly; :func:`modyolo.nn.fuse.fuse_model` folds
``bn`` into ``conv`` and switches to :meth:`ConvBNAct.forward_fuse`.
"""

from __future__ import annotations

import torch
from torch import nn

#: PyTorch's (and torchvision's) BatchNorm2d defaults.
TORCH_BN_EPS, TORCH_BN_MOMENTUM = 1e-5, 0.1


def autopad(k: int | list[int], p: int | list[int] | None = None, d: int = 1) -> int | list[int]:
    """'Same' padding for kernel k and dilation d (stride-1 output keeps the input size)."""
    if d > 1:
        k = d * (k - 1) + 1 if isinstance(k, int) else [d * (x - 1) + 1 for x in k]
    if p is None:
        p = k // 2 if isinstance(k, int) else [x // 2 for x in k]
    return p


class ConvBNAct(nn.Module):
    """Conv2d (no bias, 'same' padding unless ``p``) + BatchNorm2d + ``act``.

    ``Tensor[B, c1, H, W]`` -> ``Tensor[B, c2, H/s, W/s]``. ``act=None`` is linear (Identity), as
    MobileNetV2's projection convs. ``eps``/``momentum`` are the BatchNorm's: the family's origin
    decides them, and the eps is part of the computation (see :mod:`modyolo.nn.blocks.resnet`).
    """

    def __init__(
        self,
        c1: int,
        c2: int,
        k: int = 1,
        s: int = 1,
        p: int | None = None,
        g: int = 1,
        d: int = 1,
        act: nn.Module | None = None,
        eps: float = TORCH_BN_EPS,
        momentum: float = TORCH_BN_MOMENTUM,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, autopad(k, p, d), groups=g, dilation=d, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=eps, momentum=momentum)
        self.act = act if act is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    def forward_fuse(self, x: torch.Tensor) -> torch.Tensor:
        """Forward after :func:`modyolo.nn.fuse.fuse_model` folded ``bn`` into ``conv``."""
        return self.act(self.conv(x))
