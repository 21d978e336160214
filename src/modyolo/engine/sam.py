"""Sharpness-aware minimisation (Foret et al. 2021) as a wrapper over any optimizer.

SAM steps with the gradient taken at the worst nearby weights ``w + e``,
``e = rho * g / ||g||`` (ASAM, ``adaptive=True``: ``e = rho * w² g / ||w g||``), which prefers
flat minima. Each micro-batch therefore needs two forward/backward passes::

    loss(model(x)).backward()                 # 1. gradient g at w
    sam.first_step()                          #    w <- w + e, grads cleared
    with bn_stats_frozen(model):              # 2. gradient at w + e; BN running stats untouched
        loss(model(x)).backward()
    sam.second_step()                         #    w restored exactly, sharp gradient banked
    if accumulated_enough:
        sam.step(); sam.zero_grad()           # base step with the banked (summed) gradients
        ema.update(model)                     # EMA once per real step, as without SAM

Why banking: with gradient accumulation the first pass of micro-batch k would otherwise add
its plain gradient to the sharp gradients of micro-batches 1..k-1 already in ``.grad``, and the
perturbation would be computed from that mixture. SAM keeps the sharp gradients aside, so each
micro-batch is perturbed by its own gradient (m-sharpness with m = the micro-batch, the variant
the SAM paper found best) and the base optimizer sees the sum of sharp gradients.

Weights are restored by copying the saved values back, not by subtracting ``e``, so the base
optimizer steps from bit-identical weights. fp16 ``GradScaler`` is not supported (its single
unscale per step cannot serve two backward passes); bf16 autocast needs no scaler.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm


class SAM:
    """Wraps ``base`` (any ``torch.optim.Optimizer``); shares its ``param_groups`` so the LR
    schedule and warmup act on the base optimizer through this object unchanged."""

    def __init__(
        self, base: torch.optim.Optimizer, rho: float = 0.05, adaptive: bool = False, eps: float = 1e-12
    ) -> None:
        if rho < 0:
            raise ValueError(f"SAM rho must be >= 0, got {rho} (set 'rho' in the hyp file)")
        self.base = base
        self.rho = rho
        self.adaptive = adaptive
        self.eps = eps
        self._saved: dict[Tensor, Tensor] = {}  # param -> its value before the perturbation
        self._bank: dict[Tensor, Tensor] = {}  # param -> summed sharp gradients since the last step

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.base.param_groups

    @property
    def state(self) -> Any:
        return self.base.state

    def _params(self) -> Iterator[Tensor]:
        for group in self.base.param_groups:
            yield from group["params"]

    @torch.no_grad()
    def first_step(self) -> Tensor:
        """Move to ``w + e`` using the gradients in ``.grad``; clears ``.grad``. Returns ||g||."""
        if self._saved:
            raise RuntimeError("SAM.first_step called twice without second_step in between")
        with_grad = [p for p in self._params() if p.grad is not None]
        if not with_grad:
            raise RuntimeError("SAM.first_step: no parameter has a gradient; call loss.backward() first")
        scaled = [(p.abs() * p.grad if self.adaptive else p.grad) for p in with_grad]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in scaled]))
        factor = self.rho / (norm + self.eps)
        for p in with_grad:
            self._saved[p] = p.detach().clone()
            e = p.grad * factor
            if self.adaptive:
                e = e * p.square()
            p.add_(e)
            p.grad = None
        return norm

    @torch.no_grad()
    def second_step(self) -> None:
        """Restore ``w`` exactly and bank the sharp gradients now in ``.grad``; clears ``.grad``."""
        if not self._saved:
            raise RuntimeError("SAM.second_step called without first_step")
        for p, w in self._saved.items():
            p.copy_(w)
        self._saved.clear()
        for p in self._params():
            if p.grad is None:
                continue
            if p in self._bank:
                self._bank[p].add_(p.grad)
            else:
                self._bank[p] = p.grad.detach().clone()
            p.grad = None

    @torch.no_grad()
    def apply_banked_grads(self) -> None:
        """Put the banked sharp gradients into ``.grad`` (e.g. to clip them before ``base.step()``)."""
        for p, g in self._bank.items():
            p.grad = g
        self._bank = {}

    def step(self, closure: Callable[[], Tensor] | None = None) -> None:
        """One base-optimizer step with the banked gradients (``closure`` is not supported)."""
        if closure is not None:
            raise ValueError("SAM.step takes no closure; run first_step / second_step around the passes")
        if self._saved:
            raise RuntimeError("SAM.step called between first_step and second_step (weights are perturbed)")
        if self._bank:
            self.apply_banked_grads()
        self.base.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        """Plain data: the base optimizer's state plus rho/adaptive (banks are empty after a step)."""
        return {"base": self.base.state_dict(), "rho": self.rho, "adaptive": self.adaptive}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.base.load_state_dict(state["base"])
        self.rho = float(state.get("rho", self.rho))
        self.adaptive = bool(state.get("adaptive", self.adaptive))


@contextmanager
def bn_stats_frozen(model: nn.Module) -> Iterator[None]:
    """Within the block, training-mode BatchNorms normalise with batch statistics but do not
    update their running statistics (nor ``num_batches_tracked``).

    For SAM's second pass at the perturbed weights: those batch statistics belong to weights
    that are thrown away, and letting them in would count every batch twice.
    """
    touched = []
    for m in model.modules():
        if isinstance(m, _BatchNorm) and m.track_running_stats:
            touched.append(m)
            # track_running_stats=False in train mode: F.batch_norm gets no running buffers, so
            # nothing is written; the buffers themselves stay in the module.
            m.track_running_stats = False
    try:
        yield
    finally:
        for m in touched:
            m.track_running_stats = True
