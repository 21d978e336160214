"""The eager PyTorch inference path at the precision and memory format that pay on this machine.

``fast_model(model, "auto", device)`` wraps a fused DetectionModel so every forward runs
channels_last under bf16 autocast on CPUs that compute bf16 natively (AVX512-BF16 / AMX; the
same test training's ``--precision auto`` uses, :func:`modyolo.engine.precision.cpu_has_native_bf16`),
and leaves it fp32 NCHW everywhere else: emulated bf16 is slower than fp32, and channels_last
alone is not faster for every block (``modyolo benchmark`` shows both per model). On CUDA,
``auto`` keeps fp32 (inference there is not what this project tunes). ``"fp32"`` turns it off.

Outputs stay ``pred [B, N, 5+nc]`` float32: bf16 moves boxes by about 0.4 % of their coordinate
and scores by ~1e-2 absolute at worst, so detections agree with fp32 within that tolerance
(tested); validation keeps fp32 so its numbers compare with yolov5's.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

LOGGER = logging.getLogger("modyolo.deploy")
CHOICES = ("auto", "fp32", "bf16")


class FastTorchModel(nn.Module):
    """``model`` run channels_last under bf16 autocast; callable like the model, returns fp32 pred."""

    def __init__(self, model: nn.Module, dtype: torch.dtype = torch.bfloat16, channels_last: bool = True) -> None:
        super().__init__()
        self.model = model.to(memory_format=torch.channels_last) if channels_last else model
        self.dtype, self.channels_last = dtype, channels_last
        self.stride, self.names = model.stride, getattr(model, "names", [])
        self.nc = getattr(model, "nc", len(self.names))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=self.dtype):
            out = self.model(x)
        return (out[0] if isinstance(out, (tuple, list)) else out).float()


def pick(requested: str, device: torch.device) -> tuple[str, str]:
    """(``fp32`` | ``bf16``, reason) for ``--precision requested`` on ``device``."""
    from modyolo.engine.precision import cpu_has_native_bf16

    requested = (requested or "auto").lower()
    if requested not in CHOICES:
        raise ValueError(f"--precision {requested!r}: choose one of {', '.join(CHOICES)}")
    if requested != "auto":
        return requested, "as given"
    if device.type == "cpu" and cpu_has_native_bf16():
        return "bf16", "this CPU computes bf16 natively (AVX512-BF16/AMX)"
    return "fp32", f"no native bf16 on this {device.type}" if device.type == "cpu" else "fp32 on CUDA"


def fast_model(model: nn.Module, requested: str, device: torch.device) -> nn.Module:
    """``model`` itself for fp32, else a :class:`FastTorchModel`; logs the choice once."""
    choice, reason = pick(requested, device)
    off = " (--precision fp32 turns it off)" if choice != "fp32" else ""
    layout = "channels_last" if choice == "bf16" else "NCHW"
    LOGGER.info("inference precision: %s, %s (%s)%s", choice, layout, reason, off)
    return FastTorchModel(model) if choice == "bf16" else model
