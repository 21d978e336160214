"""The ``modyolo train`` flags (yolov5's train.py flags and their aliases) and the
:class:`TrainConfig` they build; ``modyolo tune`` takes the same flags.
"""

from __future__ import annotations

import argparse

from modyolo.engine.config import TrainConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    p.add_argument("--data", default=d.data, help="data YAML, or 'shapes' for the embedded demo dataset")
    p.add_argument("--cfg", default=d.cfg, help="model YAML (path or shipped name, e.g. yolov5s-resnet18.yaml)")
    p.add_argument(
        "--weights", default=d.weights, help="initial weights: a modyolo checkpoint or a state_dict ('' = scratch)"
    )
    p.add_argument(
        "--hyp",
        default=d.hyp,
        help="hyp YAML or scratch-low|scratch-med|scratch-high|finetune "
        "(default: scratch-low's values; --optimizer auto fits lr0/momentum/lrf/warmup_epochs)",
    )
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument(
        "--batch-size", "--batch", dest="batch_size", type=int, default=d.batch_size, help="total batch size"
    )
    p.add_argument(
        "--img", "--imgsz", "--img-size", dest="imgsz", type=int, default=d.imgsz, help="train/val image size (pixels)"
    )
    p.add_argument("--rect", action="store_true", help="rectangular training batches")
    p.add_argument("--resume", nargs="?", const=True, default=False, help="resume the newest (or the given) last.pt")
    p.add_argument("--nosave", action="store_true", help="only save the final checkpoint")
    p.add_argument("--noval", action="store_true", help="only validate the final epoch")
    p.add_argument("--noautoanchor", action="store_true", help="keep the YAML's anchors")
    p.add_argument("--noplots", action="store_true", help="save no pictures")
    p.add_argument(
        "--cache",
        nargs="?",
        const="ram",
        default=None,
        choices=["ram", "disk", "encoded"],
        help="cache images: ram (decoded), disk (.npy) or encoded (compressed in RAM)",
    )
    p.add_argument("--device", default=d.device, help="cpu, 0, cuda:1 ('' = CUDA if available)")
    p.add_argument("--multi-scale", action="store_true", help="vary image size +-50%%")
    p.add_argument("--single-cls", action="store_true", help="train every class as one")
    p.add_argument(
        "--optimizer",
        choices=["auto", "SGD", "Adam", "AdamW"],
        default=d.optimizer,
        help="auto: AdamW stepping every batch for short runs, yolov5's SGD for long ones "
        "(the rule is logged; see README); SGD: yolov5's recipe",
    )
    p.add_argument("--sam", action="store_true", help="sharpness-aware minimisation around the optimizer (hyp 'rho')")
    p.add_argument(
        "--loss", choices=["bce", "vfl"], default=d.loss or None, help="objectness/class loss (default: the hyp's)"
    )
    p.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm under DDP")
    p.add_argument("--workers", type=int, default=d.workers, help="dataloader workers per process")
    p.add_argument("--project", default=d.project)
    p.add_argument("--name", default=d.name)
    p.add_argument("--exist-ok", action="store_true")
    p.add_argument("--cos-lr", action="store_true", help="cosine LR schedule")
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    p.add_argument("--patience", type=int, default=d.patience, help="early stopping patience (epochs)")
    p.add_argument("--freeze", nargs="+", default=[], help="'10' = first 10 layers, or indices '0 1 2' / '0-9'")
    p.add_argument("--freeze-schedule", default="", help="'10:0-9' = layers 0-9 frozen for 10 epochs, then trained")
    p.add_argument("--recipe", default="", help="staged training recipe YAML (see modyolo.engine.recipe)")
    p.add_argument(
        "--nbs",
        type=int,
        default=d.nbs,
        help="nominal batch size gradients accumulate to (0 = auto: 64 as yolov5, the batch for auto's AdamW)",
    )
    p.add_argument("--fraction", type=float, default=d.fraction, help="seeded random fraction of the train set")
    p.add_argument("--save-period", type=int, default=d.save_period, help="save a checkpoint every N epochs")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument(
        "--close-mosaic",
        type=int,
        default=d.close_mosaic,
        help="no mosaic in the last N epochs (-1 = auto: min(10, epochs // 3) with --optimizer auto, else 0)",
    )
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16", "fp16"],
        default=d.precision,
        help="auto: bf16 autocast on CPUs with native bf16, fp16 AMP on CUDA, else fp32",
    )
    p.add_argument("--bf16", dest="precision", action="store_const", const="bf16", help="= --precision bf16")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false", help="keep NCHW tensors")
    p.add_argument("--backbone-weights", default="", help="local torchvision/timm weights for the backbone row")
    p.add_argument(
        "--partial-weights",
        action="store_true",
        help="load --backbone-weights that do not fit the backbone (keep the tensors that do, "
        "leave the rest random; the report lists them) instead of stopping with an error",
    )
    p.add_argument(
        "--evolve",
        type=int,
        nargs="?",
        const=30,
        default=0,
        help="hyperparameter search for N trials (the same as `modyolo tune --trials N`)",
    )
    p.add_argument("--quiet", dest="verbose", action="store_false", help="no progress bars")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    from modyolo.engine.freeze import parse_freeze

    values = {k: v for k, v in vars(args).items() if k not in {"recipe", "evolve"}}
    values["freeze"] = parse_freeze(args.freeze) if args.freeze else []
    values["loss"] = args.loss or ""
    return TrainConfig.from_dict(values)
