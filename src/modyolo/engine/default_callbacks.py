"""The callbacks every run gets on rank 0: results.csv, TensorBoard, pictures, a summary."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from modyolo.engine.loggers import CSVLogger, TensorBoardLogger
from modyolo.engine.train_plots import batch_mosaic, plot_labels, plot_results, save_rgb
from modyolo.logs import FILE_ONLY

if TYPE_CHECKING:
    from modyolo.engine.trainer import Trainer

LOGGER = logging.getLogger("modyolo.train")
BATCH_PICTURES = 3  # training-batch mosaics saved in the first epoch


def attach(trainer: Trainer) -> None:
    save_dir = trainer.run.save_dir
    csv_logger = CSVLogger(save_dir / "results.csv")
    tb = TensorBoardLogger(save_dir)
    trainer.callbacks.add("on_fit_epoch_end", csv_logger)
    trainer.callbacks.add("on_fit_epoch_end", tb.scalars)
    trainer.callbacks.add("on_fit_epoch_end", log_epoch)
    trainer.callbacks.add("on_train_end", tb.close)
    trainer.callbacks.add("on_train_end", print_summary)
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

    trainer.callbacks.add("on_train_start", labels_picture)
    trainer.callbacks.add("on_batch_end", batch_pictures)
    trainer.callbacks.add("on_train_end", results_picture)


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
