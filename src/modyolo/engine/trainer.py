"""The training loop: yolov5's recipe, with everything around the step hung on callbacks.

``Trainer(config).fit()`` builds the model, data, loss, optimizer (optionally SAM), schedule and
EMA, runs the epochs and returns a :class:`TrainResult`. Validation, checkpoints, logging and
plots happen at epoch ends; the per-batch step is :meth:`Trainer._step`.
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

from modyolo.engine import setup
from modyolo.engine.callbacks import Callbacks, StopTraining
from modyolo.engine.checkpoint import EarlyStopping, capture_rng_state, fitness, save_checkpoint
from modyolo.engine.config import TrainConfig
from modyolo.engine.distributed import broadcast_flag, destroy
from modyolo.engine.ema import ModelEMA
from modyolo.engine.freeze import freeze_layers, frozen_at, hold_frozen_bn
from modyolo.engine.hyp import stated_keys
from modyolo.engine.precision import describe as describe_precision
from modyolo.engine.precision import resolve_precision
from modyolo.engine.recipe_auto import resolve_recipe
from modyolo.engine.sam import bn_stats_frozen
from modyolo.nn.hooks import TrainState, broadcast_train_state
from modyolo.structures import LOSS_PARTS

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
    def __init__(self, config: TrainConfig, callbacks: Callbacks | None = None) -> None:
        self.cfg = config
        self.callbacks = callbacks or Callbacks()
        self.run = setup.prepare_run(config)  # paths, device, DDP, seed, hyp, data config
        self.device = self.run.device
        self.dist = self.run.dist
        self.is_main = self.dist.is_main
        self.model, self.ckpt = setup.build_model(config, self.run)
        self.names = self.run.names
        self.frozen: list[int] = []
        self.schedule_stages = setup.freeze_stages(config)
        # A resumed run rebuilds the optimizer over the layers trainable when it was saved, so the
        # saved optimizer state lines up; _begin_epoch then switches sets exactly as before.
        saved_epoch = int(self.run.resume_ckpt["epoch"]) if self.run.resume_ckpt else 0
        self._apply_freeze(frozen_at(self.schedule_stages, saved_epoch, config.freeze))
        self.train_loader, self.dataset = setup.train_loader(config, self.run, self.model)
        config = self.cfg = self._resolve_recipe(config)
        self.val_loader = setup.val_loader(config, self.run, self.model) if self.is_main else None
        self.hyp = setup.autoanchor_and_gains(config, self.run, self.model, self.dataset)
        self.loss_fn = setup.build_loss(config, self.model, self.hyp)
        self.ema = ModelEMA(self.model) if self.is_main else None
        self.optimizer, self.schedule = setup.build_optimization(config, self.run, self.model, len(self.train_loader))
        self.start_epoch, self.best_fitness = 0, 0.0
        self.stopper = EarlyStopping(config.patience)
        if config.resume:
            self.start_epoch, self.best_fitness = setup.resume_state(self)
        self.train_model = setup.wrap_distributed(config, self.run, self.model)
        self.precision = resolve_precision(config.precision, self.device, sam=config.sam, bf16_alias=config.bf16)
        if self.is_main:
            LOGGER.info(describe_precision(self.precision, config.channels_last))
        self.autocast = self.precision.autocast()
        self.scaler = self.precision.grad_scaler()
        setup.write_run_files(config, self.run)
        if self.is_main:
            setup.attach_default_callbacks(self)

    # -- the loop ---------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        cfg, nb = self.cfg, len(self.train_loader)
        self.callbacks.run("on_train_start", self)
        t_start, seen_steady, t_steady = time.time(), 0, 0.0
        history: list[dict[str, float]] = []
        metrics: dict[str, float] = {}
        stopped = ""
        epoch = saved = self.start_epoch - 1  # saved: the last epoch whose end state is in last.pt
        try:
            for epoch in range(self.start_epoch, cfg.epochs):
                self._begin_epoch(epoch)
                t_epoch = time.time()
                mean_loss, images = self._train_epoch(epoch, nb)
                if epoch > self.start_epoch or cfg.epochs - self.start_epoch == 1:
                    seen_steady += images
                    t_steady += time.time() - t_epoch
                if self.is_main:
                    metrics, row = self._end_epoch(epoch, mean_loss, t_epoch)
                    saved = epoch if not cfg.nosave else saved
                    history.append(row)
                    stop = self.stopper(epoch, metrics["fitness"])
                    stopped = f"no improvement for {cfg.patience} epochs" if stop else ""
                else:
                    stop = False
                try:
                    if self.is_main:
                        self.callbacks.run("on_fit_epoch_end", self, epoch, history[-1])
                except StopTraining as e:
                    stop, stopped = True, e.reason
                if broadcast_flag(stop, self.dist, self.device):
                    LOGGER.info("stopping after epoch %d: %s", epoch, stopped or "rank 0 decided")
                    break
        except KeyboardInterrupt:
            path = self.run.weights_dir / "last.pt"
            if self.is_main and saved != epoch and not path.exists():
                # Interrupted in the first epoch: keep the partial weights, marked unfinished,
                # so --resume repeats that epoch. Later, last.pt already holds the exact end of
                # the previous epoch, which is the better resume point and is left as it is.
                self._save(epoch - 1, metrics, path)
            if self.is_main:
                LOGGER.warning("interrupted in epoch %d; continue with --resume %s", epoch, path)
            raise
        finally:
            destroy(self.dist)
        result = TrainResult(
            save_dir=self.run.save_dir,
            last=self.run.weights_dir / "last.pt" if self.is_main else None,
            best=self.run.weights_dir / "best.pt" if self.is_main else None,
            metrics=metrics,
            epochs_completed=epoch + 1,
            train_seconds=time.time() - t_start,
            train_images_per_s=seen_steady / t_steady if t_steady else 0.0,
            stopped_early=stopped,
            history=history,
        )
        if self.is_main:
            self.callbacks.run("on_train_end", self, result)
        return result

    def _begin_epoch(self, epoch: int) -> None:
        cfg = self.cfg
        wanted = frozen_at(self.schedule_stages, epoch, cfg.freeze)
        if wanted != self.frozen:
            self._apply_freeze(wanted)
            self.optimizer, self.schedule = setup.build_optimization(cfg, self.run, self.model, len(self.train_loader))
            LOGGER.info("epoch %d: frozen layers now %s; optimizer groups rebuilt", epoch, wanted or "none")
        if cfg.close_mosaic > 0 and epoch >= cfg.epochs - cfg.close_mosaic and self.dataset.mosaic:
            self.dataset.mosaic = False  # also when a resumed run starts inside the closing epochs
            LOGGER.info("epoch %d: mosaic off for the last %d epochs", epoch, cfg.close_mosaic)
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
        if self.ema is not None:
            self.ema.update(self.model)

    # -- epoch end ------------------------------------------------------------------------------
    def _end_epoch(self, epoch: int, mean_loss: torch.Tensor, t_epoch: float) -> tuple[dict[str, float], dict]:
        cfg = self.cfg
        self.ema.update_attr(self.model)
        final = epoch + 1 == cfg.epochs
        if not cfg.noval or final:
            metrics = setup.validate(self, plots=final and not cfg.noplots)
        else:
            metrics = {"precision": 0.0, "recall": 0.0, "mAP50": 0.0, "mAP50-95": 0.0}
        metrics["fitness"] = fitness(metrics)
        improved = metrics["fitness"] >= self.best_fitness  # ties too, so best.pt always exists (yolov5)
        if improved:
            self.best_fitness = metrics["fitness"]
        names = getattr(self.loss_fn, "names", LOSS_NAMES)  # the head's loss names its parts
        row = {
            "epoch": epoch,
            **{k: float(v) for k, v in zip(names, mean_loss.tolist())},
            **{k: float(metrics[k]) for k in ("precision", "recall", "mAP50", "mAP50-95")},
            **{f"val_{k}": float(metrics.get(f"val_{k}", 0.0)) for k in names},
            **{f"lr{j}": float(g["lr"]) for j, g in enumerate(self.optimizer.param_groups)},
            "epoch_seconds": time.time() - t_epoch,
        }
        if not cfg.nosave or final:
            last = self._save(epoch, metrics, self.run.weights_dir / "last.pt")
            if improved:
                last_bytes = last.read_bytes()
                _atomic_write(self.run.weights_dir / "best.pt", last_bytes)
            if cfg.save_period > 0 and (epoch + 1) % cfg.save_period == 0:
                _atomic_write(self.run.weights_dir / f"epoch{epoch}.pt", last.read_bytes())
        return metrics, row

    def _save(self, epoch: int, metrics: dict[str, float], path: Path) -> Path:
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

    def _apply_freeze(self, layers: list[int]) -> None:
        for p in self.model.parameters():
            p.requires_grad = True
        if layers:
            freeze_layers(self.model, layers)
        self.frozen = list(layers)


def _memory(device: torch.device) -> str:
    if device.type == "cuda":
        return f" {torch.cuda.memory_reserved(device) / 1e9:.2f}G"
    return ""


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def train(**kwargs: Any) -> TrainResult:
    """Python API: ``modyolo.train(data="shapes", cfg="yolov5n.yaml", epochs=10, imgsz=320)``."""
    return Trainer(TrainConfig.from_dict(kwargs)).fit()


__all__ = ["NonFiniteLoss", "TrainResult", "Trainer", "train"]
