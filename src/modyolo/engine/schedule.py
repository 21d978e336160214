"""Learning-rate schedule, warmup and gradient accumulation, as yolov5 trains.

- **Nominal batch 64**: gradients are accumulated over ``accumulate = max(round(64 / batch), 1)``
  batches so that every recipe sees the same effective batch, and the weight decay is scaled by
  ``batch * accumulate / 64`` because it is applied once per optimizer step.
- **Per-epoch LR** ``lr = initial_lr * lf(epoch)`` with ``lf`` linear or cosine from 1 to
  ``lrf`` over the epochs (yolov5's ``LambdaLR``, stepped at the end of each epoch).
- **Warmup** over ``nw = max(round(warmup_epochs * batches_per_epoch), 100)`` iterations
  (``warmup_epochs = 0`` turns it off): the bias group's LR falls linearly from
  ``warmup_bias_lr`` and the other groups' rise from 0 to ``initial_lr * lf(epoch)``; SGD
  momentum rises from ``warmup_momentum`` to ``momentum``; and ``accumulate`` grows from 1 to
  ``64 / batch`` (small steps early, when the gradients are the least reliable).

The schedule holds no state of its own: everything follows from ``(epoch, global iteration)``
and the optimizer's ``initial_lr`` (saved with the optimizer), so a resumed run is exact.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from modyolo.engine.hyp import Hyp

NOMINAL_BATCH = 64
MIN_WARMUP_ITERS = 100


def accumulation_steps(batch_size: int, nominal: int = NOMINAL_BATCH) -> int:
    """Batches per optimizer step: ``max(round(nominal / batch_size), 1)``."""
    return max(round(nominal / batch_size), 1)


def scaled_weight_decay(weight_decay: float, batch_size: int, accumulate: int, nominal: int = NOMINAL_BATCH) -> float:
    """``weight_decay * batch_size * accumulate / nominal``: decay per step matched to the real step."""
    return weight_decay * batch_size * accumulate / nominal


def lr_lambda(epochs: int, lrf: float, cosine: bool = False) -> Callable[[float], float]:
    """``lf(epoch)``: the LR multiplier, 1 at epoch 0 falling to ``lrf`` at ``epochs``.

    linear: ``(1 - e/epochs) * (1 - lrf) + lrf``; cosine: ``1 + (lrf - 1) * (1 - cos(pi e/epochs)) / 2``.
    """
    if epochs <= 0:
        raise ValueError(f"epochs must be > 0 for an LR schedule, got {epochs}")
    if cosine:
        return lambda e: ((1 - math.cos(e * math.pi / epochs)) / 2) * (lrf - 1) + 1
    return lambda e: (1 - e / epochs) * (1.0 - lrf) + lrf


class LRSchedule:
    """Sets ``lr`` / ``momentum`` on an optimizer's groups (``torch.optim`` or :class:`SAM`).

    Call :meth:`set_epoch` at the start of every epoch and :meth:`warmup` before every batch;
    ``warmup`` returns the accumulation count to use for that batch.
    """

    def __init__(
        self,
        optimizer: Any,
        hyp: Hyp,
        epochs: int,
        batches_per_epoch: int,
        batch_size: int,
        cosine: bool = False,
        nominal_batch: int = NOMINAL_BATCH,
    ) -> None:
        self.optimizer = optimizer
        self.hyp = hyp
        self.lf = lr_lambda(epochs, hyp.lrf, cosine)
        self.accumulate = accumulation_steps(batch_size, nominal_batch)
        self.nominal_ratio = nominal_batch / batch_size
        self.warmup_iters = (
            max(round(hyp.warmup_epochs * batches_per_epoch), MIN_WARMUP_ITERS) if hyp.warmup_epochs > 0 else 0
        )
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])

    def lr_at(self, epoch: int) -> list[float]:
        """Each group's LR after warmup in ``epoch``."""
        return [g["initial_lr"] * self.lf(epoch) for g in self.optimizer.param_groups]

    def set_epoch(self, epoch: int) -> None:
        """Set every group's LR to ``initial_lr * lf(epoch)`` (yolov5's ``scheduler.step()``)."""
        for group, lr in zip(self.optimizer.param_groups, self.lr_at(epoch)):
            group["lr"] = lr

    def in_warmup(self, iteration: int) -> bool:
        return iteration <= self.warmup_iters and self.warmup_iters > 0

    def warmup(self, iteration: int, epoch: int) -> int:
        """Apply warmup for global ``iteration`` (``batch index + batches_per_epoch * epoch``).

        Returns the accumulation count for this batch (ramping from 1 during warmup).
        Outside warmup it changes nothing and returns the full ``accumulate``.
        """
        if not self.in_warmup(iteration):
            return self.accumulate
        xi = [0, self.warmup_iters]
        accumulate = max(1, int(np.interp(iteration, xi, [1, self.nominal_ratio]).round()))
        for group in self.optimizer.param_groups:
            start = self.hyp.warmup_bias_lr if group.get("name") == "bias" else 0.0
            group["lr"] = float(np.interp(iteration, xi, [start, group["initial_lr"] * self.lf(epoch)]))
            if "momentum" in group:
                group["momentum"] = float(np.interp(iteration, xi, [self.hyp.warmup_momentum, self.hyp.momentum]))
        return accumulate

    def scale_initial_lr(self, factor: float) -> None:
        """Multiply every group's ``initial_lr`` (a recipe stage's LR scale)."""
        for group in self.optimizer.param_groups:
            group["initial_lr"] *= factor
