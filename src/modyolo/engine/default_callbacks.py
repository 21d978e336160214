"""The callbacks every run gets, in a fixed order: the trainer's own first, yours next, reports last.

On each event the order is: the trainer's own callbacks (``engine/epoch_callbacks.py``: freeze
schedule, close-mosaic, EMA, validation, checkpoint, early stopping), then the callbacks passed to
``Trainer(config, callbacks)``, then the reports (rank 0): "results_csv", "tensorboard",
"log_epoch" on ``on_fit_epoch_end``; "tensorboard_close", "summary", "results_picture" on
``on_train_end``; "labels_picture" on ``on_train_start``; "batch_pictures" on ``on_batch_end``
(the pictures not with ``noplots``). ``trainer.callbacks.add`` after construction appends, so such a
callback runs after the reports; ``replace`` / ``remove`` take these names.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from modyolo.engine import epoch_callbacks as core
from modyolo.engine.callbacks import Callbacks
from modyolo.engine.loggers import CSVLogger, TensorBoardLogger
from modyolo.engine.train_plots import batch_mosaic, plot_labels, plot_results, save_rgb
from modyolo.logs import FILE_ONLY

if TYPE_CHECKING:
    from modyolo.engine.trainer import Trainer

LOGGER = logging.getLogger("modyolo.train")
BATCH_PICTURES = 3  # training-batch mosaics saved in the first epoch


def attach(trainer: Trainer) -> None:
    """Put the trainer's own callbacks ahead of ``trainer.callbacks``' and the reports after them."""
    trainer.callbacks.prepend(own_callbacks(trainer))
    if trainer.is_main:
        attach_reports(trainer)


def own_callbacks(trainer: Trainer) -> Callbacks:
    """The trainer's own callbacks (``engine/epoch_callbacks.py``), in the order they run."""
    own = Callbacks()
    own.add("on_prepare_epoch", core.freeze_schedule, "freeze_schedule")
    own.add("on_prepare_epoch", core.close_mosaic, "close_mosaic")
    if not trainer.is_main:
        return own
    own.add("on_train_start", core.require_evaluator, "validation")
    own.add("on_optimizer_step", core.ema_update, "ema")
    own.add("on_train_epoch_end", core.ema_attributes, "ema_attributes")
    own.add("on_train_epoch_end", core.validation, "validation")
    # early stopping first: the checkpoint then saves its state after this epoch, so a resumed run
    # counts patience from the same best epoch as an uninterrupted one
    own.add("on_fit_epoch_end", core.early_stopping, "early_stopping")
    checkpoint = core.Checkpoint(trainer.start_epoch)
    own.add("on_fit_epoch_end", checkpoint, "checkpoint")
    own.add("on_train_interrupt", checkpoint.on_interrupt, "checkpoint")
    return own


def attach_reports(trainer: Trainer) -> None:
    """results.csv, TensorBoard, the run log's epoch lines, the summary and the pictures (rank 0)."""
    save_dir = trainer.run.save_dir
    csv_logger = CSVLogger(save_dir / "results.csv")
    tb = TensorBoardLogger(save_dir)
    trainer.callbacks.add("on_fit_epoch_end", csv_logger, "results_csv")
    trainer.callbacks.add("on_fit_epoch_end", tb.scalars, "tensorboard")
    trainer.callbacks.add("on_fit_epoch_end", log_epoch, "log_epoch")
    trainer.callbacks.add("on_train_end", tb.close, "tensorboard_close")
    trainer.callbacks.add("on_train_end", print_summary, "summary")
    if trainer.cfg.noplots:
        return

    def labels_picture(tr: Trainer) -> None:
        if tr.start_epoch == 0:
            plot_labels(tr.dataset.labels, tr.names, save_dir / "labels.png")

    def batch_pictures(tr: Trainer, i: int, imgs: Any, targets: Any, paths: Any) -> None:
        if i < BATCH_PICTURES and not (save_dir / f"train_batch{i}.jpg").exists():
            grid = batch_mosaic(imgs, targets, tr.names)
            save_rgb(grid, save_dir / f"train_batch{i}.jpg")
            tb.image(f"train_batch{i}", grid, 0)

    def results_picture(tr: Trainer, result: Any) -> None:
        if (save_dir / "results.csv").exists():
            plot_results(save_dir / "results.csv")

    trainer.callbacks.add("on_train_start", labels_picture, "labels_picture")
    trainer.callbacks.add("on_batch_end", batch_pictures, "batch_pictures")
    trainer.callbacks.add("on_train_end", results_picture, "results_picture")


def log_epoch(trainer: Trainer, epoch: int, row: dict[str, float]) -> None:
    """The epoch's results.csv row, into the run log (the terminal had it in the progress bar)."""
    LOGGER.info(
        "epoch %d/%d: %s",
        epoch + 1,
        trainer.cfg.epochs,
        "  ".join(f"{k} {v:.5g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items() if k != "epoch"),
        extra=FILE_ONLY,
    )


def print_summary(trainer: Trainer, result: Any) -> None:
    m = result.metrics
    lines = [
        f"{result.epochs_completed} epochs in {result.train_seconds / 60:.1f} min "
        f"({result.train_images_per_s:.1f} train img/s, steady state)"
        + (f"; stopped early: {result.stopped_early}" if result.stopped_early else ""),
    ]
    if m:
        lines.append(
            f"P {m.get('precision', 0):.3f}  R {m.get('recall', 0):.3f}  mAP50 {m.get('mAP50', 0):.3f}  "
            f"mAP50-95 {m.get('mAP50-95', 0):.3f}"
        )
    lines.append(f"results saved to {result.save_dir} (best: {result.best}, last: {result.last})")
    print("\n".join(lines))
    LOGGER.info("%s", "\n".join(lines), extra=FILE_ONLY)  # stdout has it; the run log keeps it too
