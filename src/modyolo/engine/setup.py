"""Everything the trainer assembles before the first step, one function per piece.

Kept apart from ``trainer.py`` so the loop reads as a loop; each function takes the
:class:`TrainConfig` and the :class:`RunContext` and returns one thing.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from modyolo.data.dataset_yaml import DataConfig, load_data_config
from modyolo.data.loader import create_dataloader
from modyolo.device import select_device
from modyolo.engine.autoanchor import check_anchors, label_wh
from modyolo.engine.checkpoint import CheckpointError, EarlyStopping, load_checkpoint, resume_training
from modyolo.engine.config import TrainConfig
from modyolo.engine.distributed import DistInfo, dist_info_from_env, init_process_group
from modyolo.engine.ema import ModelEMA
from modyolo.engine.freeze import FreezeStage, parse_freeze_schedule
from modyolo.engine.hyp import Hyp, load_hyp, save_hyp
from modyolo.engine.loss import DetectionLoss, scale_loss_gains
from modyolo.engine.optim import build_optimizer
from modyolo.engine.sam import SAM
from modyolo.engine.schedule import LRSchedule, accumulation_steps, scaled_weight_decay
from modyolo.logs import attach_run_log
from modyolo.nn.budget import check_train_memory
from modyolo.nn.heads import loss_kind, uses_anchors
from modyolo.nn.model import DetectionModel
from modyolo.paths import increment_path

LOGGER = logging.getLogger("modyolo.train")


@dataclass
class RunContext:
    save_dir: Path
    weights_dir: Path
    device: torch.device
    dist: DistInfo
    hyp: Hyp
    data: DataConfig
    names: list[str]
    nc: int
    resume_ckpt: dict | None = None


def resolve_config(cfg: TrainConfig) -> tuple[TrainConfig, dict | None]:
    """The config the run trains with, and the checkpoint it resumes (None for a new run).

    A new run trains with ``cfg`` as given. ``--resume`` trains with the checkpoint's ``train_args``,
    except ``resume`` (the checkpoint's path, also when it was found as the newest ``last.pt``),
    ``epochs`` (a larger one given here extends the run), ``verbose`` and ``workers`` (this
    machine's), and ``exist_ok`` (the run folder is reused). ``cfg`` itself is never changed.
    """
    if not cfg.resume:
        return cfg, None
    path, resume_ckpt = _resume_checkpoint(cfg)
    saved = TrainConfig.from_dict(resume_ckpt["train_args"], "the checkpoint's train_args")
    epochs = cfg.epochs if cfg.epochs != TrainConfig.epochs and cfg.epochs > saved.epochs else saved.epochs
    resolved = saved.replace(
        resume=cfg.resume if _names_a_path(cfg.resume) else str(path),
        epochs=epochs,
        exist_ok=True,
        verbose=cfg.verbose,
        workers=cfg.workers,
    )
    return resolved, resume_ckpt


def prepare_run(cfg: TrainConfig, resume_ckpt: dict | None = None) -> RunContext:
    """Device / DDP, seeds, hyp, the data config and the run folder, for a config from :func:`resolve_config`."""
    dist = dist_info_from_env()
    device = select_device(cfg.device, dist.local_rank if dist.enabled else None)
    init_process_group(dist, device)
    seed_everything(cfg.seed + max(dist.rank, 0), cfg.deterministic)
    hyp = load_hyp(resume_ckpt["hyp"] if resume_ckpt else cfg.hyp)
    if cfg.label_smoothing:
        hyp = hyp.replace(label_smoothing=cfg.label_smoothing)
    data = load_data_config(cfg.data)
    names = ["item"] if cfg.single_cls else list(data.names)
    if resume_ckpt is not None:
        save_dir = Path(cfg.resume if isinstance(cfg.resume, str) else resume_ckpt["_path"]).resolve().parents[1]
    else:  # the folder is created once the model has built (see write_run_files)
        save_dir = (
            increment_path(Path(cfg.project) / cfg.name, exist_ok=cfg.exist_ok, mkdir=False)
            if dist.is_main
            else Path(cfg.project) / cfg.name
        )
    return RunContext(save_dir, save_dir / "weights", device, dist, hyp, data, names, len(names), resume_ckpt)


def write_run_files(cfg: TrainConfig, run: RunContext) -> None:
    """Create the run folder with hyp.yaml and args.yaml (rank 0), once everything has built."""
    if run.dist.is_main:
        run.weights_dir.mkdir(parents=True, exist_ok=True)
        attach_run_log(run.save_dir)  # <run>/log.txt: every record, those logged before this point too
        save_hyp(run.hyp, run.save_dir / "hyp.yaml")
        (run.save_dir / "args.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def _names_a_path(resume: str | bool) -> bool:
    return isinstance(resume, str) and resume not in ("", "True", "true")


def _resume_checkpoint(cfg: TrainConfig) -> tuple[Path, dict]:
    """``--resume PATH``, or the newest ``<project>/*/weights/last.pt``; its path and contents."""
    if _names_a_path(cfg.resume):
        path = Path(str(cfg.resume))
    else:
        candidates = sorted(Path(cfg.project).glob("*/weights/last.pt"), key=lambda p: p.stat().st_mtime)
        if not candidates:
            raise FileNotFoundError(f"--resume: no runs/*/weights/last.pt under {cfg.project}; pass the path")
        path = candidates[-1]
    ckpt = load_checkpoint(path)
    if ckpt.get("format") == "state_dict" or not ckpt.get("train_args"):
        raise CheckpointError(f"{path} has no training state to resume; start a new run with --weights {path}")
    ckpt["_path"] = str(path)
    return path, ckpt


def seed_everything(seed: int, deterministic: bool = True) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def build_model(cfg: TrainConfig, run: RunContext) -> tuple[DetectionModel, dict | None]:
    """From --cfg (scratch), --weights (transfer matching tensors) or the resume checkpoint."""
    ckpt = run.resume_ckpt
    if ckpt is None and cfg.weights:
        ckpt = load_checkpoint(cfg.weights)
    model_cfg: Any = cfg.cfg or (ckpt or {}).get("model_yaml")
    if not model_cfg:
        raise ValueError("give a model YAML with --cfg, or --weights from a modyolo checkpoint (which stores its YAML)")
    anchors = run.hyp.anchors if run.hyp.anchors and not cfg.resume else None
    model = DetectionModel(model_cfg, nc=run.nc, anchors=int(anchors) if anchors else None).to(run.device)
    model.names = list(run.names)
    check_train_memory(
        model,
        cfg.batch_size // run.dist.world_size,
        cfg.imgsz,
        run.device,
        cfg.optimizer,
        cfg.precision,
        cfg.multi_scale,
    )
    if cfg.backbone_weights:
        from modyolo.nn.pretrained import load_backbone_weights

        load_backbone_weights(model, cfg.backbone_weights, partial=cfg.partial_weights)  # logs its report (INFO)
    if ckpt is not None and run.resume_ckpt is None:
        _transfer(model, ckpt, exclude_anchors=bool(cfg.cfg or anchors), source=cfg.weights)
    return model, ckpt


def _transfer(model: nn.Module, ckpt: dict, exclude_anchors: bool, source: str) -> None:
    """Copy every tensor whose name and shape match (a new nc changes only the head's convs)."""
    from modyolo.engine.checkpoint import inference_state_dict

    incoming = inference_state_dict(ckpt) if ckpt.get("format") != "state_dict" else ckpt["model"]
    own = model.state_dict()
    matched = {
        k: v
        for k, v in incoming.items()
        if k in own and v.shape == own[k].shape and not (exclude_anchors and k.endswith("anchors"))
    }
    if not matched:
        raise CheckpointError(
            f"--weights {source}: no tensor matches this model's names and shapes; "
            "is it for another architecture? Pass the matching --cfg"
        )
    model.load_state_dict(matched, strict=False)
    LOGGER.info("transferred %d/%d tensors from %s", len(matched), len(own), source)
    left = [k for k in own if k not in matched and not k.endswith(("num_batches_tracked", "anchors"))]
    if left:  # a partial load is never silent: say what starts from its random initialisation, and why
        shapes = [k for k in left if k in incoming and incoming[k].shape != own[k].shape]
        layers = sorted({".".join(k.split(".")[:2]) for k in left}, key=lambda s: (len(s), s))
        why = (
            f"{len(shapes)} differ in shape (e.g. {shapes[0]}: {tuple(incoming[shapes[0]].shape)} in the file, "
            f"{tuple(own[shapes[0]].shape)} here; a different nc changes the head)"
            if shapes
            else ""
        )
        LOGGER.warning(
            "--weights %s: partial load, %d tensors re-initialised in %s%s",
            source,
            len(left),
            ", ".join(layers[:8]) + (" ..." if len(layers) > 8 else ""),
            f"; {why}" if why else "",
        )


def freeze_stages(cfg: TrainConfig) -> list[FreezeStage]:
    return parse_freeze_schedule(cfg.freeze_schedule) if cfg.freeze_schedule else []


def _grid_size(model: DetectionModel) -> int:
    return max(int(model.stride.max()), 32)


def train_loader(cfg: TrainConfig, run: RunContext, model: DetectionModel):
    batch = max(cfg.batch_size // run.dist.world_size, 1)
    return create_dataloader(
        run.data.train,
        cfg.imgsz,
        batch,
        _grid_size(model),
        hyp=run.hyp.to_dict(),
        augment=True,
        cache=cfg.cache,
        rect=cfg.rect,
        workers=cfg.workers,
        shuffle=not cfg.rect,
        seed=cfg.seed,
        rank=run.dist.rank,
        world_size=run.dist.world_size,
        prefix="train: ",
        fraction=cfg.fraction,
        single_cls=cfg.single_cls,
        names=run.names,
        nc=run.nc,
        persistent=False,
        progress=cfg.verbose,
    )


def val_loader(cfg: TrainConfig, run: RunContext, model: DetectionModel):
    loader, _ = create_dataloader(
        run.data.val,
        cfg.imgsz,
        max(cfg.batch_size // run.dist.world_size, 1) * 2,
        _grid_size(model),
        hyp=run.hyp.to_dict(),
        augment=False,
        cache=None if cfg.cache == "disk" else cfg.cache,
        rect=True,
        workers=cfg.workers,
        shuffle=False,
        seed=cfg.seed,
        prefix="val: ",
        single_cls=cfg.single_cls,
        pad=0.5,
        names=run.names,
        nc=run.nc,
        persistent=True,
        progress=cfg.verbose,
    )
    return loader


def autoanchor_and_gains(cfg: TrainConfig, run: RunContext, model: DetectionModel, dataset) -> Hyp:
    """Fit anchors to the labels (unless told not to) and scale loss gains as yolov5 does.

    Heads without anchors (the anchor-free head) get neither: their gains apply as given."""
    if not uses_anchors(model.head):
        return run.hyp
    if not cfg.noautoanchor and not cfg.resume and run.dist.is_main and model.head is not None:
        wh = label_wh(np.asarray(dataset.shapes), dataset.labels, cfg.imgsz)
        check_anchors(wh, model, thr=run.hyp.anchor_t, imgsz=cfg.imgsz, seed=cfg.seed)
    if run.dist.enabled:  # every rank must train with rank 0's anchors
        torch.distributed.broadcast(model.head.anchors, 0)
        model.head.reset_grids()
    return scale_loss_gains(run.hyp, model.head.nl, run.nc, cfg.imgsz)


def build_loss(cfg: TrainConfig, model: DetectionModel, hyp: Hyp) -> DetectionLoss:
    """The loss the model's head asks for (``head.loss_kind``): yolov5's, or the anchor-free one."""
    if loss_kind(model.head) == "anchor_free":
        from modyolo.engine.loss_af import AnchorFreeLoss

        if cfg.loss:
            raise ValueError(
                f"--loss {cfg.loss}: chooses the anchor-based head's objectness loss; "
                f"{model.source} has the anchor-free head (BCE + CIoU + DFL); drop --loss"
            )
        return AnchorFreeLoss.from_hyp(model, hyp)  # type: ignore[return-value]
    if getattr(model.head, "uses_ota", False):  # yolov7 heads: OTA loss unless the hyp says loss_ota: 0
        from modyolo.engine.loss_ota import yolov7_loss

        return yolov7_loss(model, hyp, loss_type=cfg.loss or None)
    return DetectionLoss(model, hyp, loss_type=cfg.loss or None)


def build_optimization(cfg: TrainConfig, run: RunContext, model: DetectionModel, batches: int):
    batch = cfg.batch_size
    if cfg.nbs < 1:
        raise ValueError(f"--nbs (nominal batch size) must be >= 1, got {cfg.nbs}")
    accumulate = accumulation_steps(batch, cfg.nbs)
    decay = scaled_weight_decay(run.hyp.weight_decay, batch, accumulate, cfg.nbs)
    optimizer: Any = build_optimizer(model, cfg.optimizer, run.hyp.lr0 * cfg.lr_scale, run.hyp.momentum, decay)
    if cfg.sam:
        optimizer = SAM(optimizer, rho=run.hyp.rho, adaptive=run.hyp.sam_adaptive)
    schedule = LRSchedule(optimizer, run.hyp, cfg.epochs, batches, batch, cosine=cfg.cos_lr, nominal_batch=cfg.nbs)
    return optimizer, schedule


def resume_state(
    cfg: TrainConfig, ckpt: dict, model: nn.Module, optimizer: Any, ema: ModelEMA | None, stopper: EarlyStopping
) -> tuple[int, float]:
    """Load the checkpoint's weights, optimizer, EMA and early-stopping state in place; returns
    (the first epoch to train, the best fitness so far)."""
    start = resume_training(ckpt, model=model, optimizer=optimizer, ema=ema)
    extra = ckpt.get("extra") or {}
    if extra.get("early_stopping"):
        stopper.load_state_dict(extra["early_stopping"])
    if start >= cfg.epochs:
        raise ValueError(
            f"{cfg.resume} already finished {start} of {cfg.epochs} epochs; "
            "nothing to resume (pass a larger --epochs to train further)"
        )
    LOGGER.info("resuming %s from epoch %d of %d", cfg.resume, start, cfg.epochs)
    return start, float(ckpt.get("best_fitness") or 0.0)


def wrap_distributed(cfg: TrainConfig, run: RunContext, model: DetectionModel) -> nn.Module:
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    if not run.dist.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if cfg.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [run.device.index] if run.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, output_device=ids[0] if ids else None)
