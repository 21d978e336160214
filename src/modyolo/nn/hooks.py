"""The training-state hook: how modules learn where training is.

Some blocks change behaviour over training (the dynamic convolution anneals its softmax
temperature each epoch). Rather than the trainer knowing such blocks, any module may define::

    def on_train_state(self, state: TrainState) -> None: ...

The trainer calls :func:`broadcast_train_state` at the start of every epoch (``iteration`` is
then 0). Checkpoints store ``epoch``, so a resumed run re-broadcasts the same state.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class TrainState:
    epoch: int  # 0-based
    epochs: int  # total planned
    iteration: int = 0  # within the epoch
    iterations_per_epoch: int = 1


def broadcast_train_state(model: nn.Module, state: TrainState) -> int:
    """Call ``on_train_state`` on every module that defines it; return how many did."""
    told = 0
    for module in model.modules():
        hook = getattr(module, "on_train_state", None)
        if hook is None:
            continue
        hook(state)
        told += 1
    return told
