"""Dynamic convolution (Chen et al., "Dynamic Convolution: Attention over Convolution Kernels",
CVPR 2020; the same idea as CondConv).

A layer holds ``K`` kernels (default 4). For every sample an attention branch — global average
pool -> 1x1 conv -> ReLU -> 1x1 conv -> ``softmax(z / T)`` — gives ``K`` weights ``a_k`` that
sum to 1, and the sample is convolved with ``sum_k a_k W_k`` (bias ``sum_k a_k b_k``).

Efficiency: the per-sample kernels are aggregated with one matrix product
(``[B, K] @ [K, c2*c1/g*k*k]``) and applied as *one* grouped convolution over the batch folded
into channels (``[1, B*c1, H, W]``, ``groups = g*B``). The batch size only enters through tensor
shapes, with no data-dependent Python branches, so ``torch.jit.trace`` and ONNX export work at a
fixed batch size.

Temperature schedule (the training-state hook of :mod:`modyolo.nn.hooks`): a large ``T`` keeps
the attention near uniform early on so all ``K`` kernels learn; the trainer calls
``on_train_state`` at the start of every epoch and ``T = max(34 - 3 * epoch, 1)``, i.e.
34, 31, 28, ..., 4, 1 and 1 from epoch 11 on. ``T`` is a buffer saved in the state_dict, so a
model reloaded for inference keeps the value it was trained with (1 after 11 epochs).

Rows:
- ``DynamicConv``: dynamic conv (no bias) + BN + activation, args like Conv: ``[c2, k=1, s=1]``.
- ``Dynamic_conv2d``: the bare dynamic conv with bias, args ``[c2, k=1, s=1]``, as the recipe puts
  it in place of the head's 1x1 Convs.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from modyolo.nn.blocks.yolo import activation, autopad, batch_norm
from modyolo.nn.hooks import TrainState
from modyolo.nn.registry import BLOCKS
from modyolo.nn.row import YamlBlock

T_START, T_STEP, T_END = 34.0, 3.0, 1.0


def temperature_at(epoch: int) -> float:
    """Softmax temperature for a 0-based epoch: 34, 31, ..., 1, then 1."""
    return max(T_START - T_STEP * epoch, T_END)


class KernelAttention(nn.Module):
    """``Tensor[B, c1, H, W]`` -> ``Tensor[B, K]``: softmax weights of the K kernels per sample."""

    def __init__(self, c1: int, K: int, reduction: float = 0.25) -> None:
        super().__init__()
        hidden = max(int(c1 * reduction), K)
        self.fc1 = nn.Conv2d(c1, hidden, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, K, 1, bias=True)

    def forward(self, x: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
        z = self.fc2(self.relu(self.fc1(x.mean((2, 3), keepdim=True))))
        return torch.softmax(z.flatten(1) / temperature, dim=1)


@BLOCKS.register("Dynamic_conv2d", aliases=("DynamicConv2d",))
class DynamicConv2d(YamlBlock, nn.Module):
    """Bare dynamic conv. Row args ``[c2, k=1, s=1, p=None, g=1, d=1, bias=True, K=4]``.

    ``Tensor[B, c1, H, W]`` -> ``Tensor[B, c2, H', W']`` exactly as ``nn.Conv2d`` with the same
    geometry would give ('same' padding by default, as Conv).
    """

    yaml_example: ClassVar[dict] = {"rows": [[-1, 1, "Dynamic_conv2d", [64, 1, 1]]], "stride": 1}

    def __init__(
        self,
        c1: int,
        c2: int,
        k: int = 1,
        s: int = 1,
        p: int | None = None,
        g: int = 1,
        d: int = 1,
        bias: bool = True,
        K: int = 4,
        reduction: float = 0.25,
    ) -> None:
        super().__init__()
        if c1 % g or c2 % g:
            raise ValueError(f"channels {c1} -> {c2} must be divisible by groups {g}")
        if K < 1:
            raise ValueError(f"K (number of kernels) must be >= 1, got {K}")
        self.c1, self.c2, self.k, self.g, self.K = c1, c2, k, g, K
        self.stride, self.padding, self.dilation = s, autopad(k, p, d), d
        self.attention = KernelAttention(c1, K, reduction)
        self.weight = nn.Parameter(torch.empty(K, c2, c1 // g, k, k))
        self.bias = nn.Parameter(torch.empty(K, c2)) if bias else None
        self.register_buffer("temperature", torch.tensor(T_START))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Each of the K kernels initialised as ``nn.Conv2d`` initialises its one kernel."""
        for w in self.weight:
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt((self.c1 // self.g) * self.k * self.k)
            nn.init.uniform_(self.bias, -bound, bound)

    def on_train_state(self, state: TrainState) -> None:
        self.temperature.fill_(temperature_at(state.epoch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        attn = self.attention(x, self.temperature)  # [B, K]
        weight = torch.mm(attn, self.weight.flatten(1)).view(b * self.c2, self.c1 // self.g, self.k, self.k)
        bias = torch.mm(attn, self.bias).flatten() if self.bias is not None else None
        y = F.conv2d(
            x.reshape(1, b * self.c1, h, w), weight, bias, self.stride, self.padding, self.dilation, self.g * b
        )
        return y.view(b, self.c2, y.shape[-2], y.shape[-1])

    def extra_repr(self) -> str:
        return (
            f"{self.c1}, {self.c2}, kernel_size={self.k}, stride={self.stride}, K={self.K}, "
            f"groups={self.g}, bias={self.bias is not None}"
        )


@BLOCKS.register()
class DynamicConv(YamlBlock, nn.Module):
    """Dynamic conv (no bias) + BN + activation. Row args ``[c2, k=1, s=1, p=None, g=1, d=1, act=True, K=4]``."""

    yaml_example: ClassVar[dict] = {"rows": [[-1, 1, "DynamicConv", [64, 3, 2]]], "stride": 2}

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
        K: int = 4,
    ) -> None:
        super().__init__()
        self.conv = DynamicConv2d(c1, c2, k, s, p, g, d, bias=False, K=K)
        self.bn = batch_norm(c2)
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    def forward_fuse(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))

    @torch.no_grad()
    def fuse(self) -> None:
        """Fold BN into all K kernels. Exact because the attention weights sum to 1:
        ``s * (sum a_k W_k * x + sum a_k b_k) + t = sum a_k (s W_k) * x + sum a_k (s b_k + t)``."""
        if not isinstance(self.bn, nn.BatchNorm2d):
            return
        conv, bn = self.conv, self.bn
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # [c2]
        shift = bn.bias - bn.running_mean * scale
        conv.weight.mul_(scale.view(1, -1, 1, 1, 1))
        old_bias = conv.bias if conv.bias is not None else torch.zeros_like(conv.weight[:, :, 0, 0, 0])
        conv.bias = nn.Parameter(old_bias * scale + shift)
        self.bn = nn.Identity()
        self.forward = self.forward_fuse  # type: ignore[method-assign]
