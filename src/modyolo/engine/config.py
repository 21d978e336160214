"""What a training run is asked to do: yolov5's ``train.py`` flags as one typed object.

The CLI (``cli/train.py``), the Python API (``modyolo.train(...)``), ``compare`` and ``tune`` all
build a :class:`TrainConfig`, so the flags mean the same thing everywhere and a run's
``args.yaml`` can rebuild it.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainConfig:
    data: str = "shapes"  # data YAML, or "shapes" for the embedded demo dataset
    cfg: str = ""  # model YAML ('' = take it from --weights)
    weights: str = ""  # '' = from scratch; a modyolo checkpoint or state_dict to start from
    hyp: Any = ""  # hyp YAML, shipped name or dict; '' = scratch-low's values, which --optimizer auto may fit
    epochs: int = 100
    batch_size: int = 16
    imgsz: int = 640
    rect: bool = False
    resume: str | bool = False  # True = the newest last.pt under project; or a path
    nosave: bool = False  # only save the final checkpoint
    noval: bool = False  # only validate the final epoch
    noautoanchor: bool = False
    noplots: bool = False
    cache: str | None = None  # None | ram | disk | encoded
    device: str = ""  # '' = cuda:0 if available else cpu; 'cpu', '0', 'cuda:1'
    multi_scale: bool = False  # image size varies +-50% per batch
    single_cls: bool = False
    optimizer: str = "auto"  # auto | SGD | Adam | AdamW; auto: the rule in engine/recipe_auto.py
    sam: bool = False  # sharpness-aware minimisation over the optimizer (rho from hyp)
    sync_bn: bool = False  # SyncBatchNorm under DDP
    workers: int = 2  # dataloader workers per process
    project: str = "runs/train"
    name: str = "exp"
    exist_ok: bool = False
    cos_lr: bool = False
    label_smoothing: float = 0.0
    patience: int = 100  # epochs without fitness improvement before stopping
    freeze: list[int] = field(default_factory=list)  # layer indices frozen for the whole run
    freeze_schedule: str = ""  # "10:0-9" = layers 0-9 frozen for the first 10 epochs
    save_period: int = -1  # save epoch<N>.pt every N epochs
    seed: int = 0
    deterministic: bool = True
    close_mosaic: int = -1  # no mosaic in the last N epochs; -1 = auto (engine/recipe_auto.py)
    loss: str = ""  # '' = the hyp's choice; 'bce' | 'vfl'
    fraction: float = 1.0  # seeded random fraction of the training set
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (engine/precision.py)
    bf16: bool = False  # alias of precision="bf16"
    channels_last: bool = True  # NHWC memory format: faster convs on CPU (benchmarks/bench_inference.py)
    backbone_weights: str = ""  # local torchvision/timm weights for the backbone row
    partial_weights: bool = False  # accept backbone weights that do not fit; the report lists what stays random
    lr_scale: float = 1.0  # multiply lr0 (recipe stages)
    nbs: int = 0  # nominal batch gradients accumulate to; 0 = auto (SGD: 64 as yolov5; auto's AdamW: the batch)
    max_batches: int = 0  # stop each epoch after N batches (smoke tests, tuning); 0 = all
    verbose: bool = True

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "arguments") -> TrainConfig:
        """Build from a dict, rejecting unknown keys with the nearest valid one."""
        known = {f.name for f in dataclasses.fields(cls)}
        for key in values:
            if key not in known:
                near = difflib.get_close_matches(key, known, n=1)
                hint = f"; did you mean {near[0]!r}?" if near else ""
                raise ValueError(f"{source}: unknown training option {key!r}{hint}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)
