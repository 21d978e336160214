"""One variant of a comparison: its model YAML (or finished run), built, validated, shown and timed.

Stages, each of which may fail without stopping the other variants: ``build`` (model YAML ->
params, GFLOPs; once, here, before any training), training and validation per seed (the jobs of
:mod:`modyolo.tools.compare_jobs`, which call :func:`validate_weights`), then, on one trained model
per variant, ``samples`` (detections on the images shown side by side). Exporting and timing
happen for all variants together, round-robin (:mod:`modyolo.tools.compare_formats`).
"""

from __future__ import annotations

import copy
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from modyolo.tools.compare_table import VariantResult

DISPLAY_CONF, DISPLAY_IOU = 0.25, 0.45  # detection settings for the pictures (val uses 0.001 / 0.6)
VAL_CONF, VAL_IOU = 0.001, 0.6


@dataclass
class Variant:
    """What to compare: a model YAML to train (``cfg``) or finished weights to reuse (``weights``)."""

    name: str
    source: str
    cfg: dict | None = None  # the model YAML as a dict (None for reused weights)
    cfg_path: Path | None = None  # where that YAML was written for the record
    weights: Path | None = None  # reused checkpoint
    run_dir: Path | None = None  # reused run folder (results.csv, args.yaml)
    error: str = ""  # a problem found while preparing (unreadable YAML, missing run)


@dataclass
class SampleSet:
    """The val images every variant predicts for the side-by-side view.

    paths: image files; labels: per image ``float32 [n, 5]`` (cls, x1, y1, x2, y2) original pixels.
    """

    paths: list[str]
    labels: list[np.ndarray]


@dataclass
class VariantOutcome:
    result: VariantResult
    model: Any = None  # the trained network (unfused, eval), for the timing phase
    sample_set: SampleSet | None = None
    tracebacks: list[tuple[str, str]] = field(default_factory=list)


def _unique(name: str, taken: set[str]) -> str:
    out, n = name, 2
    while out in taken:
        out, n = f"{name}-{n}", n + 1
    taken.add(out)
    return out


def prepare_variants(
    cfgs: Sequence[str | Path | dict], runs: Sequence[str | Path], names: Sequence[str] | None, cfg_dir: Path
) -> list[Variant]:
    """Variants with unique names; each model YAML is loaded now and written to ``cfg_dir/<name>.yaml``.

    A YAML that cannot be read becomes a variant carrying the error (reported as a failed build).
    """
    from modyolo.nn.graph import load_model_yaml

    names = list(names or [])
    taken: set[str] = set()
    out: list[Variant] = []
    for i, cfg in enumerate(cfgs):
        label = str(cfg.get("yaml_file", "<dict>")) if isinstance(cfg, dict) else str(cfg)
        default = Path(label).stem if not isinstance(cfg, dict) else str(cfg.get("name") or Path(label).stem)
        v = Variant(_unique(names[i] if i < len(names) else default, taken), label)
        try:
            v.cfg, _ = load_model_yaml(cfg)
            v.cfg.pop("name", None)
            cfg_dir.mkdir(parents=True, exist_ok=True)
            v.cfg_path = cfg_dir / f"{v.name}.yaml"
            v.cfg_path.write_text(yaml.safe_dump(v.cfg, sort_keys=False), encoding="utf-8")
        except Exception as e:
            v.error = f"build: {type(e).__name__}: {' '.join(str(e).split())}"
        out.append(v)
    for j, run in enumerate(runs):
        p = Path(run)
        k = len(cfgs) + j
        v = Variant(_unique(names[k] if k < len(names) else (p.stem if p.suffix else p.name), taken), str(p))
        if p.is_dir():
            v.run_dir = p
            v.weights = next((w for w in (p / "weights" / "best.pt", p / "weights" / "last.pt") if w.is_file()), None)
            if v.weights is None:
                v.error = f"reuse: no weights/best.pt or weights/last.pt in {p}; is the run finished?"
        elif p.is_file():
            v.weights = p
            parent = p.parent.parent  # runs/train/exp/weights/best.pt -> runs/train/exp
            v.run_dir = parent if (parent / "results.csv").is_file() else None
        else:
            v.error = f"reuse: {p} is neither a run folder nor a checkpoint file"
        out.append(v)
    return out


def read_history(run_dir: Path | None) -> dict[str, list[float]]:
    """A run's results.csv as columns (empty when there is none)."""
    if run_dir is None or not (Path(run_dir) / "results.csv").is_file():
        return {}
    from modyolo.engine.loggers import read_results

    return {k: [float(x) for x in v] for k, v in read_results(Path(run_dir) / "results.csv").items()}


def build_variant(r: VariantResult, variant: Variant, nc: int, imgsz: int) -> str | None:
    """Build a model-YAML variant once, here, for its params and GFLOPs.

    Returns None when it built (or is a reused run), else the error text for ``errors.log`` (a
    traceback when there is one) with the row marked failed. A variant that cannot build gets
    no training jobs: every seed would fail the same way.
    """
    if variant.error:
        r.status, r.error = "failed", variant.error
        return variant.error
    if variant.cfg is None:
        return None
    try:
        _describe(r, variant.cfg, nc, imgsz)
        return None
    except Exception as e:
        r.fail("build", e)
        return traceback.format_exc()


def finish_variant(
    r: VariantResult,
    weights: str | Path,
    data_cfg: Any,
    imgsz: int,
    *,
    samples: int,
    sample_set: SampleSet | None,
    describe: bool = False,
) -> VariantOutcome:
    """Load one trained model of the variant for what needs only one: the samples and the timing.

    describe: fill params/GFLOPs from the loaded model (reused runs have no YAML built here).
    Never raises; a failure is recorded in the row (load) or the tracebacks (describe, samples).
    """
    from modyolo.inference.predictor import load_model

    out = VariantOutcome(r)
    try:
        model, _, _ = load_model(weights, device="cpu", fuse=False)
    except Exception as e:
        r.fail("load", e)
        out.tracebacks.append(("load", traceback.format_exc()))
        return out
    out.model = model
    if describe:
        try:
            _describe_model(r, model, imgsz)
        except Exception:
            out.tracebacks.append(("build", traceback.format_exc()))
    if samples > 0:
        out.sample_set = sample_set or _sample_set(data_cfg, samples)
        try:
            r.samples = _predict_samples(model, out.sample_set, imgsz)
        except Exception:
            out.tracebacks.append(("samples", traceback.format_exc()))
    return out


def _describe(r: VariantResult, cfg: dict, nc: int, imgsz: int) -> bool:
    from modyolo.nn.model import DetectionModel

    model = DetectionModel(cfg, nc=nc)
    _describe_model(r, model, imgsz)
    return True


def _describe_model(r: VariantResult, model: torch.nn.Module, imgsz: int) -> None:
    """Params of the model as built (BN not folded, as yolov5 reports) and GFLOPs at ``imgsz``."""
    from modyolo.nn.inspect import count_flops

    r.params = int(sum(p.numel() for p in model.parameters()))
    try:
        r.gflops = float(count_flops(model, imgsz)) / 1e9
    except Exception as e:  # a block the counter cannot trace: the cell says so instead of vanishing
        r.gflops_error = f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"


def _val_loader(loaders: dict, data_cfg: Any, imgsz: int, batch: int, stride: int, workers: int):
    """The val loader, shared by variants of the same stride (same images, same letterbox)."""
    from modyolo.data.loader import create_dataloader

    key = (str(data_cfg.source), imgsz, batch, stride)
    if key not in loaders:
        loaders[key] = create_dataloader(
            data_cfg.val,
            imgsz,
            batch,
            stride,
            augment=False,
            rect=True,
            pad=0.5,
            workers=workers,
            shuffle=False,
            prefix="val: ",
            names=data_cfg.names,
            nc=data_cfg.nc,
            persistent=False,
            progress=False,
        )[0]
    return loaders[key]


def validate_weights(
    weights: str | Path,
    data_cfg: Any,
    imgsz: int,
    batch: int,
    workers: int,
    *,
    verbose: bool = False,
    loaders: dict | None = None,
):
    """Validate ``weights`` (EMA, fused) on the val split at conf 0.001, IoU 0.6.

    Returns ``(model, ValResult, Records)``: the unfused eval model, the validation result and its
    per-image records with the image paths (what compare's bootstrap resamples).
    """
    from modyolo.eval.validator import validate
    from modyolo.inference.predictor import load_model
    from modyolo.tools.compare_stats import Records

    model, _, _ = load_model(weights, device="cpu", fuse=False)
    loader = _val_loader(
        {} if loaders is None else loaders, data_cfg, imgsz, batch, max(int(model.stride.max()), 32), workers
    )
    fused = copy.deepcopy(model).fuse()
    paths: list[str] = []
    res = validate(
        fused,
        loader,
        names=list(data_cfg.names),
        conf_thres=VAL_CONF,
        iou_thres=VAL_IOU,
        progress=verbose,
        on_image=lambda path, det, shape: paths.append(str(path)),
    )
    return model, res, Records.from_tracker(res.tracker, paths)


def _sample_set(data_cfg: Any, n: int) -> SampleSet:
    """The first ``n`` val images (sorted by path) that hold objects, with their labels in pixels."""
    import cv2

    from modyolo.data.formats.yolo import img2label_paths, list_image_files

    files = list_image_files(data_cfg.val)
    paths, labels = [], []
    for img_path, lab_path in zip(files, img2label_paths(files)):
        if len(paths) >= n:
            break
        img = cv2.imread(img_path)
        if img is None or not Path(lab_path).is_file():
            continue
        rows = np.loadtxt(lab_path, ndmin=2, dtype=np.float32).reshape(-1, 5)
        if not len(rows):
            continue
        h, w = img.shape[:2]
        xyxy = np.stack(
            [
                (rows[:, 1] - rows[:, 3] / 2) * w,
                (rows[:, 2] - rows[:, 4] / 2) * h,
                (rows[:, 1] + rows[:, 3] / 2) * w,
                (rows[:, 2] + rows[:, 4] / 2) * h,
            ],
            1,
        )
        paths.append(img_path)
        labels.append(np.concatenate([rows[:, :1], xyxy], 1))
    return SampleSet(paths, labels)


def _predict_samples(model: torch.nn.Module, samples: SampleSet, imgsz: int) -> list[np.ndarray]:
    import cv2

    from modyolo.inference.predictor import predict_image

    fused = copy.deepcopy(model).fuse()
    out = []
    for path in samples.paths:
        det, _ = predict_image(
            fused,
            cv2.imread(path),
            imgsz=imgsz,
            stride=int(model.stride.max()),
            device=torch.device("cpu"),
            conf=DISPLAY_CONF,
            iou=DISPLAY_IOU,
        )
        out.append(det.numpy().astype(np.float32))
    return out


__all__ = [
    "SampleSet",
    "Variant",
    "VariantOutcome",
    "build_variant",
    "finish_variant",
    "prepare_variants",
    "read_history",
    "validate_weights",
]
