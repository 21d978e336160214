"""The training loop: yolov5's recipe as fit / epoch / step, with everything around the step on callbacks.

``Trainer(config, callbacks, evaluator).fit()`` builds the model, data, loss, optimizer (optionally
SAM), schedule and EMA (``engine/setup.py``), runs the epochs and returns a :class:`TrainResult`.
The loop itself is three levels:

- :meth:`Trainer.fit`: the epochs; the stop flag (early stopping, a callback's StopTraining) is
  broadcast to every DDP rank; Ctrl-C raises ``on_train_interrupt`` and propagates.
- one epoch: ``on_prepare_epoch`` (freeze switches, close-mosaic), the (seed, epoch) shuffle and
  augmentation, :meth:`Trainer._train_epoch` over the batches, then on rank 0
  ``on_train_epoch_end`` (EMA attributes, validation -> ``trainer.metrics``), the results.csv row
  and ``on_fit_epoch_end`` (checkpoint, early stopping, your callbacks, results.csv, TensorBoard).
- one step: :meth:`Trainer._step` (forward, loss, backward, SAM's second pass), and every
  ``accumulate`` batches :meth:`Trainer._optimizer_step` then ``on_optimizer_step`` (EMA).

The trainer's own callbacks live in ``engine/epoch_callbacks.py`` and are attached, in a fixed
documented order, by ``engine/default_callbacks.py``; any of them can be replaced or removed by
name before ``fit``::

    trainer = Trainer(config, evaluator=modyolo.eval.validator.validate)
    trainer.callbacks.replace("on_fit_epoch_end", "early_stopping", my_stopper)  # (trainer, epoch, row)
    trainer.callbacks.add("on_fit_epoch_end", my_logger)  # runs after the reports
    trainer.fit()

The evaluator is passed in (``engine/evaluator.py`` says what it must be): ``engine`` sits below
``eval`` and never imports it. ``modyolo.train(...)`` (``api.py``) is the one-call form.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from modyolo.engine import default_callbacks, setup
from modyolo.engine.callbacks import Callbacks, StopTraining
from modyolo.engine.checkpoint import EarlyStopping, capture_rng_state, save_checkpoint
from modyolo.engine.config import TrainConfig
from modyolo.engine.distributed import broadcast_flag, destroy
from modyolo.engine.ema import ModelEMA
from modyolo.engine.evaluator import Evaluator
from modyolo.engine.freeze import freeze_layers, frozen_at, hold_frozen_bn
from modyolo.engine.hyp import stated_keys
from modyolo.engine.precision import describe as describe_precision
from modyolo.engine.precision import resolve_precision
from modyolo.engine.recipe_auto import resolve_recipe
from modyolo.engine.sam import bn_stats_frozen
from modyolo.nn.hooks import TrainState, broadcast_train_state
from modyolo.structures import LOSS_PARTS, METRICS

LOGGER = logging.getLogger("modyolo.train")
LOSS_NAMES = LOSS_PARTS  # the anchor-based loss's parts, in its order


class NonFiniteLoss(RuntimeError):
    """The loss became NaN/inf; the message names the step, the loss parts and the last checkpoint."""


@dataclass
class TrainResult:
    save_dir: Path
    last: Path | None
    best: Path | None
    metrics: dict[str, float]
    epochs_completed: int
    train_seconds: float
    train_images_per_s: float  # steady state: the first epoch (warm-up, worker start) excluded
    stopped_early: str = ""
    history: list[dict[str, float]] = field(default_factory=list)


class Trainer:
    """One training run. ``evaluator``: validates the EMA model each epoch (see ``engine/evaluator.py``);
    ``modyolo.train`` and the CLI pass ``modyolo.eval.validator.validate``. Without one, :meth:`fit`
    refuses to start (every run validates at least its final epoch), unless the 'validation'
    callbacks were replaced."""

    def __init__(
        self, config: TrainConfig, callbacks: Callbacks | None = None, evaluator: Evaluator | None = None
    ) -> None:
        config, resume_ckpt = setup.resolve_config(config)  # the caller's config is left as it is
        self.cfg = config
        self.callbacks = callbacks.copy() if callbacks else Callbacks()  # the caller's object stays as it is
        self.evaluator = evaluator
        self.run = setup.prepare_run(config, resume_ckpt)  # paths, device, DDP, seed, hyp, data config
        self.device = self.run.device
        self.dist = self.run.dist
        self.is_main = self.dist.is_main
        self.model, self.ckpt = setup.build_model(config, self.run)
        self.names = self.run.names
        self.frozen: list[int] = []
        self.schedule_stages = setup.freeze_stages(config)
        # A resumed run rebuilds the optimizer over the layers trainable when it was saved, so the
        # saved optimizer state lines up; the 'freeze_schedule' callback then switches sets exactly as before.
        saved_epoch = int(resume_ckpt["epoch"]) if resume_ckpt else 0
        self.apply_freeze(frozen_at(self.schedule_stages, saved_epoch, config.freeze))
        self.train_loader, self.dataset = setup.train_loader(config, self.run, self.model)
        config = self.cfg = self._resolve_recipe(config)
        self.val_loader = setup.val_loader(config, self.run, self.model) if self.is_main else None
        self.hyp = setup.autoanchor_and_gains(config, self.run, self.model, self.dataset)
        self.loss_fn = setup.build_loss(config, self.model, self.hyp)
        self.ema = ModelEMA(self.model) if self.is_main else None
        self.optimizer, self.schedule = setup.build_optimization(config, self.run, self.model, len(self.train_loader))
        self.start_epoch, self.best_fitness = 0, 0.0
        self.stopper = EarlyStopping(config.patience)
        if resume_ckpt is not None:
            self.start_epoch, self.best_fitness = setup.resume_state(
                config, resume_ckpt, self.model, self.optimizer, self.ema, self.stopper
            )
        self.train_model = setup.wrap_distributed(config, self.run, self.model)
        self.precision = resolve_precision(config.precision, self.device, sam=config.sam, bf16_alias=config.bf16)
        if self.is_main:
            LOGGER.info(describe_precision(self.precision, config.channels_last))
        self.autocast = self.precision.autocast()
        self.scaler = self.precision.grad_scaler()
        setup.write_run_files(config, self.run)
        self.metrics: dict[str, Any] = {}  # the last validated epoch's (the 'validation' callback sets it)
        self.history: list[dict[str, float]] = []  # results.csv rows
        self.stop_reason: str | None = None  # set by request_stop during an epoch's end
        default_callbacks.attach(self)  # the trainer's own ahead of the ones passed in, reports after

    def request_stop(self, reason: str) -> None:
        """Stop after the current epoch (a callback's way; raising StopTraining does the same)."""
        self.stop_reason = reason

    # -- the loop ---------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        cfg, nb = self.cfg, len(self.train_loader)
        self.callbacks.run("on_train_start", self)
        t_start, seen_steady, t_steady = time.time(), 0, 0.0
        epoch = self.start_epoch - 1
        try:
            for epoch in range(self.start_epoch, cfg.epochs):
                self._begin_epoch(epoch)
                t_epoch = time.time()
                mean_loss, images = self._train_epoch(epoch, nb)
                if epoch > self.start_epoch or cfg.epochs - self.start_epoch == 1:
                    seen_steady += images
                    t_steady += time.time() - t_epoch
                stop = self._end_epoch(epoch, mean_loss, t_epoch) if self.is_main else False
                if broadcast_flag(stop, self.dist, self.device):
                    LOGGER.info("stopping after epoch %d: %s", epoch, self.stop_reason or "rank 0 decided")
                    break
        except KeyboardInterrupt:
            if self.is_main:
                self.callbacks.run("on_train_interrupt", self, epoch)
                path = self.run.weights_dir / "last.pt"
                LOGGER.warning("interrupted in epoch %d; continue with --resume %s", epoch, path)
            raise
        finally:
            destroy(self.dist)
        result = TrainResult(
            save_dir=self.run.save_dir,
            last=self.run.weights_dir / "last.pt" if self.is_main else None,
            best=self.run.weights_dir / "best.pt" if self.is_main else None,
            metrics=self.metrics,
            epochs_completed=epoch + 1,
            train_seconds=time.time() - t_start,
            train_images_per_s=seen_steady / t_steady if t_steady else 0.0,
            stopped_early=self.stop_reason or "",
            history=self.history,
        )
        if self.is_main:
            self.callbacks.run("on_train_end", self, result)
        return result

    def _begin_epoch(self, epoch: int) -> None:
        cfg = self.cfg
        self.callbacks.run("on_prepare_epoch", self, epoch)  # freeze switches, close-mosaic
        # Every epoch's shuffle and augmentation derive from (seed, epoch), so a resumed run
        # sees exactly the batches an uninterrupted one would have seen.
        self.train_loader.generator.manual_seed(cfg.seed * 1_000_003 + epoch)
        self.dataset.rng = np.random.default_rng([cfg.seed, epoch])
        if hasattr(self.train_loader.sampler, "set_epoch"):
            self.train_loader.sampler.set_epoch(epoch)
        self.schedule.set_epoch(epoch)
        self.model.train()
        hold_frozen_bn(self.model, self.frozen)
        broadcast_train_state(self.model, TrainState(epoch, cfg.epochs, 0, len(self.train_loader)))
        self.callbacks.run("on_epoch_start", self, epoch)

    def _train_epoch(self, epoch: int, nb: int) -> tuple[torch.Tensor, int]:
        cfg = self.cfg
        mean_loss = torch.zeros(3)
        images = 0
        bar = tqdm(
            enumerate(self.train_loader),
            total=nb,
            disable=not (self.is_main and cfg.verbose),
            bar_format="{l_bar}{bar:10}{r_bar}",
            desc=f"{epoch + 1}/{cfg.epochs}",
        )
        self.optimizer.zero_grad()
        last_step, pending, t0 = nb * epoch - 1, False, time.time()
        for i, (imgs, targets, paths, _) in bar:
            if cfg.max_batches and i >= cfg.max_batches:
                break
            ni = i + nb * epoch
            accumulate = self.schedule.warmup(ni, epoch)
            imgs = self._prepare_images(imgs)
            parts = self._step(imgs, targets, ni, epoch)
            if ni - last_step >= accumulate:
                self._optimizer_step()
                last_step = ni
            pending = ni != last_step
            mean_loss = (mean_loss * i + parts.cpu()) / (i + 1)
            images += imgs.shape[0]
            if self.is_main:
                rate = images / max(time.time() - t0, 1e-9)
                bar.set_postfix_str(
                    " ".join(
                        f"{n.removesuffix('_loss')} {v:.4f}"
                        for n, v in zip(getattr(self.loss_fn, "names", LOSS_NAMES), mean_loss.tolist())
                    )
                    + " "
                    f"inst {targets.shape[0]} size {imgs.shape[-1]} {rate:.1f} img/s{_memory(self.device)}"
                )
                self.callbacks.run("on_batch_end", self, i, imgs, targets, paths)
        if pending:  # step with the gradients still accumulating: none are lost at the epoch end
            self._optimizer_step()
        return mean_loss, images

    def _prepare_images(self, imgs: torch.Tensor) -> torch.Tensor:
        imgs = imgs.to(self.device, non_blocking=True).float() / 255
        if self.cfg.multi_scale:
            gs = int(self.model.stride.max())
            size = int(np.random.uniform(self.cfg.imgsz * 0.5, self.cfg.imgsz * 1.5 + gs)) // gs * gs
            factor = size / max(imgs.shape[2:])
            if factor != 1:
                new = [math.ceil(x * factor / gs) * gs for x in imgs.shape[2:]]
                imgs = nn.functional.interpolate(imgs, size=new, mode="bilinear", align_corners=False)
        if self.cfg.channels_last:
            imgs = imgs.contiguous(memory_format=torch.channels_last)
        return imgs

    def _step(self, imgs: torch.Tensor, targets: torch.Tensor, ni: int, epoch: int) -> torch.Tensor:
        """Forward + backward of one batch (and SAM's second pass); returns the loss parts."""
        targets = targets.to(self.device)
        with self.autocast():
            loss, parts = self.loss_fn(self.train_model(imgs), targets)
        loss = loss * self.dist.world_size  # DDP averages gradients over processes
        if not torch.isfinite(loss).all():
            raise NonFiniteLoss(
                f"loss became {loss.item()} at epoch {epoch}, step {ni} (box, obj, cls = "
                f"{', '.join(f'{p:.4g}' for p in parts.tolist())}); last good checkpoint: "
                f"{self.run.weights_dir / 'last.pt'}. Lower lr0 (hyp), check labels, or pass --precision fp32"
            )
        self.scaler.scale(loss).backward()
        if self.cfg.sam:
            self.optimizer.first_step()
            with bn_stats_frozen(self.model), self.autocast():
                sharp_loss, _ = self.loss_fn(self.train_model(imgs), targets)
            (sharp_loss * self.dist.world_size).backward()
            self.optimizer.second_step()
        return parts

    def _optimizer_step(self) -> None:
        if self.cfg.sam:
            self.optimizer.apply_banked_grads()
        base = self.optimizer.base if self.cfg.sam else self.optimizer
        self.scaler.unscale_(base)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm=10.0)  # yolov5's guard
        self.scaler.step(base)
        self.scaler.update()
        self.optimizer.zero_grad()
        self.callbacks.run("on_optimizer_step", self)  # the EMA update

    # -- epoch end (rank 0) ---------------------------------------------------------------------
    def _end_epoch(self, epoch: int, mean_loss: torch.Tensor, t_epoch: float) -> bool:
        """Validation, the results row, checkpoints, early stopping, reports; True to stop."""
        self.stop_reason = None
        self.callbacks.run("on_train_epoch_end", self, epoch)  # EMA attributes, validation -> self.metrics
        row = self._results_row(epoch, mean_loss, t_epoch)
        self.history.append(row)
        try:
            self.callbacks.run("on_fit_epoch_end", self, epoch, row)  # checkpoint, early stop, yours, reports
        except StopTraining as e:
            self.request_stop(e.reason)
        return self.stop_reason is not None

    def _results_row(self, epoch: int, mean_loss: torch.Tensor, t_epoch: float) -> dict[str, float]:
        """The epoch's results.csv row: train losses, metrics, val losses, learning rates, seconds."""
        names = getattr(self.loss_fn, "names", LOSS_NAMES)  # the head's loss names its parts
        missing = [k for k in METRICS if k not in self.metrics]
        if missing:
            raise KeyError(
                f"epoch {epoch}: trainer.metrics lacks {missing}; the callbacks on on_train_epoch_end "
                f"({', '.join(self.callbacks.names('on_train_epoch_end')) or 'none'}) must set them "
                "(the default 'validation' callback does)"
            )
        return {
            "epoch": epoch,
            **{k: float(v) for k, v in zip(names, mean_loss.tolist())},
            **{k: float(self.metrics[k]) for k in METRICS},
            **{f"val_{k}": float(self.metrics.get(f"val_{k}", 0.0)) for k in names},
            **{f"lr{j}": float(g["lr"]) for j, g in enumerate(self.optimizer.param_groups)},
            "epoch_seconds": time.time() - t_epoch,
        }

    def save_checkpoint(self, epoch: int, metrics: dict[str, Any], path: Path) -> Path:
        """Write the training state after ``epoch`` (model, EMA, optimizer, RNG, early stopping) to ``path``."""
        return save_checkpoint(
            path,
            model=self.model,
            ema=self.ema,
            optimizer=self.optimizer,
            epoch=epoch,
            best_fitness=self.best_fitness,
            hyp=self.run.hyp,
            names=self.names,
            model_yaml=self.model.yaml,
            metrics={k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))},
            train_args=self.cfg.to_dict(),
            rng_state=capture_rng_state(),
            extra={"early_stopping": self.stopper.state_dict(), "frozen": list(self.frozen)},
        )

    def _resolve_recipe(self, cfg: TrainConfig) -> TrainConfig:
        """Resolve ``--optimizer auto`` / ``--nbs 0`` / ``--close-mosaic -1`` (engine/recipe_auto.py).

        The resolved values replace the config and the run's hyp, so ``args.yaml``, ``hyp.yaml``
        and the checkpoints hold what the run really trained with, and ``--resume`` repeats it.
        """
        recipe = resolve_recipe(
            len(self.dataset),
            cfg.batch_size,
            cfg.epochs,
            self.run.hyp,
            cfg.optimizer,
            cfg.nbs,
            cfg.close_mosaic,
            stated_keys(cfg.hyp) if not cfg.resume else frozenset(),
        )
        if self.is_main:
            LOGGER.info(recipe.summary)
        self.run.hyp = recipe.hyp
        hyp = recipe.hyp.to_dict() if recipe.changed else cfg.hyp  # args.yaml alone rebuilds the run
        return cfg.replace(optimizer=recipe.optimizer, nbs=recipe.nbs, close_mosaic=recipe.close_mosaic, hyp=hyp)

    def apply_freeze(self, layers: list[int]) -> None:
        """Freeze exactly ``layers`` (model indices); every other parameter trains."""
        for p in self.model.parameters():
            p.requires_grad = True
        if layers:
            freeze_layers(self.model, layers)
        self.frozen = list(layers)


def _memory(device: torch.device) -> str:
    if device.type == "cuda":
        return f" {torch.cuda.memory_reserved(device) / 1e9:.2f}G"
    return ""


__all__ = ["NonFiniteLoss", "TrainResult", "Trainer"]
