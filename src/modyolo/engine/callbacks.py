"""Training events and the callbacks hung on them.

The loop in ``trainer.py`` is fit / epoch / step; everything around the step (freeze switches,
close-mosaic, EMA, validation, checkpoints, early stopping, logging, plots, Optuna's pruning)
subscribes to an event. Events, in the order one epoch raises them:

- ``on_train_start(trainer)``                                   every rank
- ``on_prepare_epoch(trainer, epoch)``  before the epoch's seeds, LR schedule and train mode are
  set: change what the epoch trains (frozen layers, mosaic)     every rank
- ``on_epoch_start(trainer, epoch)``                            every rank
- ``on_optimizer_step(trainer)``  after each optimizer step     every rank
- ``on_batch_end(trainer, batch_index, imgs, targets, paths)``  rank 0
- ``on_train_epoch_end(trainer, epoch)``  the batches are done; sets ``trainer.metrics``  rank 0
- ``on_fit_epoch_end(trainer, epoch, row)``  ``row`` is the results.csv row (a dict)     rank 0
- ``on_train_interrupt(trainer, epoch)``  Ctrl-C (KeyboardInterrupt), before it propagates  rank 0
- ``on_train_end(trainer, result)``                             rank 0

Each event runs its callbacks in list order. A callback on ``on_fit_epoch_end`` raising
:class:`StopTraining` ends the run cleanly after that epoch (Optuna's pruner does); the callbacks
after it on that event do not run. Every entry has a name (the default callbacks' names are listed
in ``engine/default_callbacks.py``), so one can be replaced in place or removed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

EVENTS = (
    "on_train_start",
    "on_prepare_epoch",
    "on_epoch_start",
    "on_optimizer_step",
    "on_batch_end",
    "on_train_epoch_end",
    "on_fit_epoch_end",
    "on_train_interrupt",
    "on_train_end",
)


class StopTraining(Exception):
    """Raised by a callback to stop after the current epoch; ``reason`` is logged."""

    def __init__(self, reason: str = "stopped by a callback") -> None:
        super().__init__(reason)
        self.reason = reason


class Callbacks:
    """Per event, an ordered list of ``(name, callable)``."""

    def __init__(self) -> None:
        self._hooks: dict[str, list[tuple[str, Callable[..., Any]]]] = {e: [] for e in EVENTS}

    def add(self, event: str, fn: Callable[..., Any], name: str = "") -> None:
        """Append ``fn`` to ``event`` (it runs after those already there). ``name`` defaults to
        the function's or class's name."""
        self._check(event)
        self._hooks[event].append((name or _default_name(fn), fn))

    def copy(self) -> Callbacks:
        """A new object with the same callbacks (the trainer attaches its own to a copy, so one
        ``Callbacks`` can be passed to several runs)."""
        new = Callbacks()
        new.prepend(self)
        return new

    def prepend(self, other: Callbacks) -> None:
        """Put ``other``'s callbacks before this object's, event by event (the trainer's own
        callbacks go ahead of the ones passed in)."""
        for event in EVENTS:
            self._hooks[event][:0] = other._hooks[event]

    def replace(self, event: str, name: str, fn: Callable[..., Any]) -> None:
        """Swap the callback called ``name`` on ``event`` for ``fn``, in the same place."""
        hooks = self._hooks[self._check(event)]
        for i, (n, _) in enumerate(hooks):
            if n == name:
                hooks[i] = (name, fn)
                return
        raise ValueError(f"no callback named {name!r} on {event}; there are: {', '.join(self.names(event)) or 'none'}")

    def remove(self, name: str, event: str | None = None) -> None:
        """Drop every callback called ``name`` (on ``event`` only, when given)."""
        events = [self._check(event)] if event else list(EVENTS)
        found = False
        for e in events:
            kept = [(n, fn) for n, fn in self._hooks[e] if n != name]
            found |= len(kept) != len(self._hooks[e])
            self._hooks[e] = kept
        if not found:
            where = event or "any event"
            raise ValueError(f"no callback named {name!r} on {where}; names: {', '.join(self._all_names())}")

    def get(self, event: str, name: str) -> Callable[..., Any] | None:
        """The callback called ``name`` on ``event``, or None."""
        return next((fn for n, fn in self._hooks[self._check(event)] if n == name), None)

    def names(self, event: str) -> list[str]:
        """The callbacks on ``event``, in the order they run."""
        return [n for n, _ in self._hooks[self._check(event)]]

    def run(self, event: str, *args: Any, **kwargs: Any) -> None:
        for _, fn in list(self._hooks[event]):
            fn(*args, **kwargs)

    def _all_names(self) -> list[str]:
        return sorted({n for hooks in self._hooks.values() for n, _ in hooks})

    @staticmethod
    def _check(event: str) -> str:
        if event not in EVENTS:
            raise ValueError(f"unknown training event {event!r}; events are {', '.join(EVENTS)}")
        return event


def _default_name(fn: Callable[..., Any]) -> str:
    return str(getattr(fn, "__name__", None) or type(fn).__name__)
