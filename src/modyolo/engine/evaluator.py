"""What the trainer needs from a validator, as a type: the trainer is handed one, it never imports eval.

``engine`` sits below ``eval`` in the house (tests/test_architecture.py), so the validation callback
cannot import ``modyolo.eval.validator``. Whoever builds the :class:`~modyolo.engine.trainer.Trainer`
passes the evaluator in: ``modyolo.train``, ``modyolo train``, compare and tune pass
``modyolo.eval.validator.validate``, which has exactly this signature.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn


class Evaluation(Protocol):
    """One validation pass's outcome (``eval.validator.ValResult`` is one)."""

    @property
    def metrics(self) -> Mapping[str, Any]:
        """At least precision, recall, mAP50 and mAP50-95 (``modyolo.structures`` names), floats in [0, 1]."""
        ...

    @property
    def loss(self) -> torch.Tensor | None:
        """Mean val loss parts ``Tensor[k]`` in the loss's ``names`` order, when ``compute_loss`` was given."""
        ...


class Evaluator(Protocol):
    """Validate ``model`` over ``dataloader`` (batches ``(imgs uint8 [b,3,h,w], targets [n,6], paths, shapes)``)."""

    def __call__(
        self,
        model: nn.Module,
        dataloader: Any,
        *,
        names: Sequence[str],
        single_cls: bool = ...,
        compute_loss: Callable | None = ...,
        plots: bool = ...,
        save_dir: Path | None = ...,
        verbose: bool = ...,
        progress: bool = ...,
    ) -> Evaluation: ...
