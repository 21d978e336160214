"""Exponential moving average of a model's weights, with yolov5's ramped decay.

``ema = d * ema + (1 - d) * model`` after every optimizer step, with
``d = decay * (1 - exp(-updates / tau))``: early on ``d`` is near 0 so the average follows the
fast-changing weights, and it approaches ``decay`` (0.9999) after a few ``tau`` updates. The EMA
copy is what gets validated and saved as the model to use; BN running statistics are averaged
too (they are floating-point state), integer buffers (``num_batches_tracked``) are copied.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside DDP / DataParallel (``.module``), else the model itself."""
    if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        return model.module
    return model


class ModelEMA:
    """An eval-mode copy of ``model`` kept as the moving average of its state."""

    def __init__(self, model: nn.Module, decay: float = 0.9999, tau: float = 2000, updates: int = 0) -> None:
        self.ema = copy.deepcopy(unwrap(model)).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.tau = tau
        self.updates = updates

    def decay_at(self, updates: int) -> float:
        return self.decay * (1 - math.exp(-updates / self.tau))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold in the current weights of ``model`` (call once per optimizer step)."""
        self.updates += 1
        d = self.decay_at(self.updates)
        source = unwrap(model).state_dict()
        for name, value in self.ema.state_dict().items():
            new = source[name].detach()
            if value.dtype.is_floating_point:
                value.mul_(d).add_(new.to(value.dtype), alpha=1 - d)
            else:
                value.copy_(new)

    def update_attr(self, model: nn.Module, names: tuple[str, ...] = ("nc", "names", "yaml", "hyp")) -> None:
        """Copy plain attributes (class names, config) from ``model`` onto the EMA copy."""
        src = unwrap(model)
        for name in names:
            if hasattr(src, name):
                setattr(self.ema, name, getattr(src, name))

    def state_dict(self) -> dict[str, Any]:
        """Plain data for a checkpoint: the averaged weights and the update count."""
        return {"model": self.ema.state_dict(), "updates": self.updates, "decay": self.decay, "tau": self.tau}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ema.load_state_dict(state["model"])
        self.updates = int(state["updates"])
        self.decay = float(state.get("decay", self.decay))
        self.tau = float(state.get("tau", self.tau))
