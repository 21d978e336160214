"""Training events and the callbacks hung on them.

The train step stays one screen long; everything around it — logging, plots, the dynamic-conv
temperature, checkpoint side effects, Optuna's pruning — subscribes to events:

- ``on_train_start(trainer)``
- ``on_epoch_start(trainer, epoch)``
- ``on_batch_end(trainer, batch_index, imgs, targets, paths)``
- ``on_fit_epoch_end(trainer, epoch, row)`` where ``row`` is the results.csv row (a dict)
- ``on_train_end(trainer, result)``

A callback raising :class:`StopTraining` ends the run cleanly after the current epoch
(Optuna's pruner uses this).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

EVENTS = ("on_train_start", "on_epoch_start", "on_batch_end", "on_fit_epoch_end", "on_train_end")


class StopTraining(Exception):
    """Raised by a callback to stop after the current epoch; ``reason`` is logged."""

    def __init__(self, reason: str = "stopped by a callback") -> None:
        super().__init__(reason)
        self.reason = reason


class Callbacks:
    def __init__(self) -> None:
        self._hooks: dict[str, list[Callable[..., Any]]] = defaultdict(list)

    def add(self, event: str, fn: Callable[..., Any]) -> None:
        if event not in EVENTS:
            raise ValueError(f"unknown training event {event!r}; events are {', '.join(EVENTS)}")
        self._hooks[event].append(fn)

    def run(self, event: str, *args: Any, **kwargs: Any) -> None:
        for fn in self._hooks.get(event, []):
            fn(*args, **kwargs)
