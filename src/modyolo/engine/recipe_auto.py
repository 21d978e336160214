"""``--optimizer auto``: the one place that decides the optimizer recipe of a run.

yolov5's recipe (SGD, lr0 0.01, nominal batch 64, 3 warm-up epochs) is tuned for long runs on
large data. On a few hundred images it steps the optimizer a handful of times per epoch and
spends its warm-up on a large part of the run: on an 800-image set, 30 epochs at batch 16,
yolov5n reached mAP50-95 0.153 with it and 0.586 with AdamW stepping after every batch
(README, "The default recipe"). So the default recipe depends on how long the run is.

The rule (:func:`resolve_recipe`, a pure function; the trainer logs its ``summary``):

- ``batches = epochs * ceil(n_images / batch)``: the optimizer steps the run makes when it
  steps after every batch.
- **short** (``batches < SHORT_RUN_BATCHES``) and the hyp does not set ``lr0`` / ``momentum``:
  AdamW, nominal batch = batch (a step after every batch), ``lr0`` fitted to the batch
  (:func:`fitted_adamw_lr`), ``momentum`` (beta1) 0.9, ``lrf`` 0.1, ``warmup_epochs`` 0.
- **long**, or a hyp that sets ``lr0`` or ``momentum`` (every yolov5 hyp file does; its values
  are SGD values): yolov5's SGD recipe with the hyp unchanged, nominal batch 64.
- ``--optimizer auto`` also closes mosaic for the last ``min(10, epochs // 3)`` epochs.

What the user states is never overridden: a named ``--optimizer`` turns the rule off (yolov5's
behaviour: nominal batch 64, no close-mosaic, the hyp as given); an explicit ``--nbs`` or
``--close-mosaic`` is kept; hyp keys a ``--hyp`` file or dict states are kept (auto only fills
``lrf`` / ``warmup_epochs`` when the file leaves them out). Resolved values are written to the
run's ``args.yaml`` / ``hyp.yaml`` and checkpoint, so ``--resume`` continues the same recipe.
"""

from __future__ import annotations

import math
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from modyolo.engine.hyp import Hyp

if TYPE_CHECKING:
    from modyolo.engine.config import TrainConfig

AUTO = "auto"
SHORT_RUN_BATCHES = 10_000  # fewer optimizer steps than this (at a step per batch) = a short run
YOLOV5_NBS = 64
CLOSE_MOSAIC_EPOCHS = 10
ADAMW_LR_AT_16 = 0.002  # measured: yolov5n on 800 shapes images, batch 16 (README)
ADAMW_LR_RANGE = (2.5e-4, 4e-3)
ADAMW_HYP = {"momentum": 0.9, "lrf": 0.1, "warmup_epochs": 0.0}
SGD_CHOICE_KEYS = frozenset({"lr0", "momentum"})  # a hyp that sets these chose its optimizer values


@dataclass(frozen=True)
class Recipe:
    """What a run trains with, after ``auto`` is resolved."""

    optimizer: str  # SGD | Adam | AdamW
    nbs: int  # nominal batch: gradients accumulate to it
    close_mosaic: int  # epochs at the end without mosaic
    hyp: Hyp
    batches: int  # epochs * batches per epoch
    auto: bool  # whether --optimizer auto chose it
    changed: dict[str, float] = field(default_factory=dict)  # hyp keys auto set, with their values
    summary: str = ""  # the INFO line logged when training starts


def fitted_adamw_lr(batch: int, nbs: int) -> float:
    """AdamW's lr0 for an optimizer step over ``batch * accumulate`` images.

    Adam's update size does not grow with the gradient's scale, so a larger effective batch
    (less noisy gradients) takes a larger lr; the square-root rule for Adam-type optimizers
    scales it by ``sqrt(effective batch / 16)`` from the value measured at 16, clipped to
    ``ADAMW_LR_RANGE``. Rounded to 2 significant digits so logs and files read cleanly.
    """
    effective = batch * max(round(nbs / batch), 1)
    lr = ADAMW_LR_AT_16 * math.sqrt(effective / 16)
    lr = min(max(lr, ADAMW_LR_RANGE[0]), ADAMW_LR_RANGE[1])
    return float(f"{lr:.2g}")


def auto_close_mosaic(epochs: int) -> int:
    """Epochs at the end trained without mosaic: 10, or a third of a run shorter than 30 epochs."""
    return min(CLOSE_MOSAIC_EPOCHS, epochs // 3)


def resolve_recipe(
    n_images: int,
    batch: int,
    epochs: int,
    hyp: Hyp,
    optimizer: str = AUTO,
    nbs: int = 0,
    close_mosaic: int = -1,
    stated: AbstractSet[str] = frozenset(),
) -> Recipe:
    """Resolve ``--optimizer auto`` (and ``--nbs 0`` / ``--close-mosaic -1``, their "auto").

    n_images: training images (after ``--fraction``); batch: the total batch size.
    hyp: the loaded hyp; stated: the hyp keys the user's ``--hyp`` file / dict sets
    (:func:`modyolo.engine.hyp.stated_keys`; empty when no ``--hyp`` was given).
    nbs: 0 = auto; close_mosaic: -1 = auto. Raises ValueError for sizes that cannot train.
    """
    if n_images < 1 or batch < 1 or epochs < 1:
        raise ValueError(f"cannot plan a run of {epochs} epochs over {n_images} images at batch {batch}")
    if nbs < 0:
        raise ValueError(f"--nbs (nominal batch size) must be >= 1 (or 0 = auto), got {nbs}")
    batches = epochs * math.ceil(n_images / batch)
    if optimizer.lower() != AUTO:
        nbs = nbs or YOLOV5_NBS
        close = max(close_mosaic, 0)
        return Recipe(
            optimizer,
            nbs,
            close,
            hyp,
            batches,
            auto=False,
            summary=(
                f"optimizer {optimizer} (as given): lr0={hyp.lr0:g}, momentum={hyp.momentum:g}, nbs {nbs}, "
                f"warmup {hyp.warmup_epochs:g} epochs, close-mosaic {close}"
            ),
        )
    close = auto_close_mosaic(epochs) if close_mosaic < 0 else close_mosaic
    tail = f"close-mosaic {close}"
    user_lr = sorted(SGD_CHOICE_KEYS & set(stated))
    if user_lr or batches >= SHORT_RUN_BATCHES:
        nbs = nbs or YOLOV5_NBS
        why = (
            f"the hyp sets {'/'.join(user_lr)} (SGD values in yolov5's hyp files)"
            if user_lr
            else f"{batches} batches in total >= {SHORT_RUN_BATCHES}"
        )
        return Recipe(
            "SGD",
            nbs,
            close,
            hyp,
            batches,
            auto=True,
            summary=(
                f"optimizer auto: {why} -> yolov5's SGD(lr={hyp.lr0:g}, momentum={hyp.momentum:g}), nbs {nbs}, "
                f"warmup {hyp.warmup_epochs:g}, {tail} (pass --optimizer SGD for yolov5's recipe exactly)"
            ),
        )
    nbs = nbs or batch
    changed = {"lr0": fitted_adamw_lr(batch, nbs), **ADAMW_HYP}
    changed = {k: v for k, v in changed.items() if k not in stated}
    hyp = hyp.replace(**changed)
    kept = sorted(set(ADAMW_HYP) & set(stated))
    kept_note = f"; kept from the hyp: {', '.join(f'{k}={getattr(hyp, k):g}' for k in kept)}" if kept else ""
    return Recipe(
        "AdamW",
        nbs,
        close,
        hyp,
        batches,
        auto=True,
        changed=changed,
        summary=(
            f"optimizer auto: {batches} batches in total < {SHORT_RUN_BATCHES} -> AdamW(lr={hyp.lr0:g}, "
            f"momentum={hyp.momentum:g}), nbs {nbs}, lrf {hyp.lrf:g}, warmup {hyp.warmup_epochs:g}, {tail}{kept_note} "
            "(pass --optimizer SGD --hyp scratch-low to get yolov5's recipe)"
        ),
    )


def count_train_images(data: str, fraction: float = 1.0) -> int:
    """Images the training split lists (before corrupt files are skipped), after ``--fraction``."""
    from modyolo.data.dataset_yaml import load_data_config
    from modyolo.data.formats.yolo import list_image_files

    n = len(list_image_files(load_data_config(data).train))
    return max(1, round(n * fraction)) if fraction < 1.0 else n


def resolve_config(cfg: TrainConfig) -> tuple[TrainConfig, Recipe]:
    """A config with ``auto`` resolved (concrete optimizer / nbs / close_mosaic, the hyp as a dict).

    For callers that start many runs from one config (``tune``): every run then trains the same
    recipe, whatever its own hyp file states. The trainer resolves single runs itself.
    """
    from modyolo.engine.hyp import load_hyp, stated_keys

    hyp = load_hyp(cfg.hyp)
    recipe = resolve_recipe(
        count_train_images(cfg.data, cfg.fraction),
        cfg.batch_size,
        cfg.epochs,
        hyp,
        cfg.optimizer,
        cfg.nbs,
        cfg.close_mosaic,
        stated_keys(cfg.hyp),
    )
    resolved = cfg.replace(
        optimizer=recipe.optimizer,
        nbs=recipe.nbs,
        close_mosaic=recipe.close_mosaic,
        hyp=recipe.hyp.to_dict() if recipe.changed else cfg.hyp,
    )
    return resolved, recipe


def train_flags(cfg: TrainConfig) -> str:
    """The command-line flags that repeat a resolved config's recipe (for printed hints)."""
    return f"--optimizer {cfg.optimizer} --nbs {cfg.nbs} --close-mosaic {cfg.close_mosaic}"


__all__ = [
    "AUTO",
    "SHORT_RUN_BATCHES",
    "Recipe",
    "auto_close_mosaic",
    "count_train_images",
    "fitted_adamw_lr",
    "resolve_config",
    "resolve_recipe",
    "train_flags",
]
