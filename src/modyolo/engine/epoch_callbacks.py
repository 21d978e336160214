"""The trainer's own callbacks: what happens around the step, each on one event.

``default_callbacks.attach`` hangs them, in this order, ahead of the callbacks passed to the
Trainer (names in quotes, for ``Callbacks.replace`` / ``Callbacks.remove``):

=====================  ======================  ====================================================
event                  name                    job
=====================  ======================  ====================================================
on_prepare_epoch       "freeze_schedule"       switch frozen layers (--freeze-schedule), rebuild the
                                               optimizer groups; every rank
on_prepare_epoch       "close_mosaic"          mosaic off for the last --close-mosaic epochs; every rank
on_train_start         "validation"            refuse to start without an evaluator
on_optimizer_step      "ema"                   update the EMA weights
on_train_epoch_end     "ema_attributes"        copy nc, names, stride, ... onto the EMA model
on_train_epoch_end     "validation"            validate the EMA weights (--noval: the final epoch
                                               only) -> ``trainer.metrics`` with fitness
on_fit_epoch_end       "early_stopping"        --patience: ask the trainer to stop (before the
                                               checkpoint, which saves its state)
on_fit_epoch_end       "checkpoint"            best fitness; last.pt, best.pt (ties too), epoch<N>.pt
on_train_interrupt     "checkpoint"            Ctrl-C in the first epoch: keep the partial weights
=====================  ======================  ====================================================

Rank 0 only, except the two on ``on_prepare_epoch``: every DDP process trains the same layers.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modyolo.engine import setup
from modyolo.engine.freeze import frozen_at
from modyolo.structures import FITNESS, LOSS_PARTS, MAP50, MAP50_95, PRECISION, RECALL, fitness

if TYPE_CHECKING:
    from modyolo.engine.trainer import Trainer

LOGGER = logging.getLogger("modyolo.train")


# -- every rank ---------------------------------------------------------------------------------
def freeze_schedule(trainer: Trainer, epoch: int) -> None:
    """Apply the epoch's frozen set; a changed set gets a new optimizer over the trainable layers."""
    wanted = frozen_at(trainer.schedule_stages, epoch, trainer.cfg.freeze)
    if wanted != trainer.frozen:
        trainer.apply_freeze(wanted)
        trainer.optimizer, trainer.schedule = setup.build_optimization(
            trainer.cfg, trainer.run, trainer.model, len(trainer.train_loader)
        )
        LOGGER.info("epoch %d: frozen layers now %s; optimizer groups rebuilt", epoch, wanted or "none")


def close_mosaic(trainer: Trainer, epoch: int) -> None:
    cfg = trainer.cfg
    if cfg.close_mosaic > 0 and epoch >= cfg.epochs - cfg.close_mosaic and trainer.dataset.mosaic:
        trainer.dataset.mosaic = False  # also when a resumed run starts inside the closing epochs
        LOGGER.info("epoch %d: mosaic off for the last %d epochs", epoch, cfg.close_mosaic)


# -- rank 0 -------------------------------------------------------------------------------------
def ema_update(trainer: Trainer) -> None:
    assert trainer.ema is not None  # attached on rank 0, which keeps the EMA
    trainer.ema.update(trainer.model)


def ema_attributes(trainer: Trainer, epoch: int) -> None:
    """nc, names, yaml, hyp onto the EMA model, so validation and the checkpoint see them."""
    assert trainer.ema is not None
    trainer.ema.update_attr(trainer.model)


def require_evaluator(trainer: Trainer) -> None:
    """Fail before the first step, not after an epoch, when the 'validation' callback has nothing to
    validate with (a replaced 'validation' callback brings its own means)."""
    if trainer.evaluator is None and trainer.callbacks.get("on_train_epoch_end", "validation") is validation:
        raise _no_evaluator()


def _no_evaluator() -> ValueError:
    return ValueError(
        "this Trainer has no evaluator, and every run validates (each epoch; with noval the final one): "
        "pass Trainer(config, evaluator=modyolo.eval.validator.validate) as modyolo.train and "
        "`modyolo train` do, or replace the 'validation' callback on on_train_epoch_end with your own"
    )


def validation(trainer: Trainer, epoch: int) -> None:
    """``trainer.metrics``: the EMA weights' precision, recall, mAP50, mAP50-95, val losses, fitness.

    With ``noval`` the epochs before the last are not validated; their metrics are 0 (yolov5's
    ``--noval``), so best.pt follows the last epoch."""
    cfg = trainer.cfg
    final = epoch + 1 == cfg.epochs
    if not cfg.noval or final:
        metrics = _evaluate(trainer, plots=final and not cfg.noplots)
    else:
        metrics = {PRECISION: 0.0, RECALL: 0.0, MAP50: 0.0, MAP50_95: 0.0}
    metrics[FITNESS] = fitness(metrics)
    trainer.metrics = metrics


def _evaluate(trainer: Trainer, plots: bool) -> dict[str, Any]:
    if trainer.evaluator is None:
        raise _no_evaluator()
    assert trainer.ema is not None  # validation runs on rank 0, which has the EMA
    result = trainer.evaluator(
        trainer.ema.ema,
        trainer.val_loader,
        names=trainer.names,
        compute_loss=trainer.loss_fn,
        single_cls=trainer.cfg.single_cls,
        plots=plots,
        save_dir=trainer.run.save_dir,
        verbose=False,
        progress=trainer.cfg.verbose,
    )
    metrics = dict(result.metrics)
    if result.loss is not None:
        names = getattr(trainer.loss_fn, "names", LOSS_PARTS)
        for name, value in zip((f"val_{n}" for n in names), result.loss.tolist()):
            metrics[name] = value
    return metrics


class Checkpoint:
    """last.pt every epoch (``nosave``: the final one only), best.pt when the fitness ties or beats
    the best so far (ties too, so best.pt always exists, as yolov5), ``epoch<N>.pt`` every
    ``save_period`` epochs. On Ctrl-C in the first epoch it keeps the partial weights, marked
    unfinished, so ``--resume`` repeats that epoch; later, last.pt already holds the exact end of
    the previous epoch, which is the better resume point and is left as it is."""

    def __init__(self, start_epoch: int) -> None:
        self.saved = start_epoch - 1  # the last epoch whose end state is in last.pt
        self.metrics: dict[str, Any] = {}  # the last epoch's, for the interrupt save

    def __call__(self, trainer: Trainer, epoch: int, row: dict[str, float]) -> None:
        cfg, metrics = trainer.cfg, trainer.metrics
        final = epoch + 1 == cfg.epochs
        improved = metrics[FITNESS] >= trainer.best_fitness
        if improved:
            trainer.best_fitness = metrics[FITNESS]
        weights = trainer.run.weights_dir
        if not cfg.nosave or final:
            last = trainer.save_checkpoint(epoch, metrics, weights / "last.pt")
            if improved:
                _atomic_write(weights / "best.pt", last.read_bytes())
            if cfg.save_period > 0 and (epoch + 1) % cfg.save_period == 0:
                _atomic_write(weights / f"epoch{epoch}.pt", last.read_bytes())
        if not cfg.nosave:
            self.saved = epoch
        self.metrics = metrics

    def on_interrupt(self, trainer: Trainer, epoch: int) -> None:
        path = trainer.run.weights_dir / "last.pt"
        if self.saved != epoch and not path.exists():
            trainer.save_checkpoint(epoch - 1, self.metrics, path)


def early_stopping(trainer: Trainer, epoch: int, row: dict[str, float]) -> None:
    """``patience`` epochs without a better fitness: the run stops after this epoch."""
    if trainer.stopper(epoch, trainer.metrics[FITNESS]):
        trainer.request_stop(f"no improvement for {trainer.cfg.patience} epochs")


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
