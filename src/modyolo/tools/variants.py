"""One variant of a comparison, from model YAML (or finished run) to a filled :class:`VariantResult`.

Stages, each of which may fail without stopping the others' variants: ``build`` (model YAML ->
params, GFLOPs), ``train`` (or reuse a run), ``val`` (best weights on the shared val split),
``samples`` (detections on the images shown side by side), ``export`` (ONNX for timing). Timing
itself happens for all variants together (:func:`time_variants`), round-robin.
"""

from __future__ import annotations

import copy
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import yaml

from modyolo.tools.compare_table import VariantResult
from modyolo.tools.latency import LatencyProtocol, export_onnx, measure_onnx, measure_torch

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
    onnx_file: Path | None = None
    sample_set: SampleSet | None = None
    tracebacks: list[tuple[str, str]] = field(default_factory=list)


def _unique(name: str, taken: set[str]) -> str:
    out, n = name, 2
    while out in taken:
        out, n = f"{name}-{n}", n + 1
    taken.add(out)
    return out


def prepare_variants(cfgs: Sequence[str | Path | dict], runs: Sequence[str | Path], names: Sequence[str] | None,
                     cfg_dir: Path) -> list[Variant]:
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


def evaluate_variant(variant: Variant, data_cfg: Any, train: dict[str, Any], protocol: LatencyProtocol,
                     save_dir: Path, *, onnx: bool, samples: int, verbose: bool,
                     sample_set: SampleSet | None, loaders: dict | None = None) -> VariantOutcome:
    """Build, train (or reuse), validate, predict samples and export one variant; never raises.

    loaders: a dict the caller keeps across variants so they share one val loader per stride.
    """
    r = VariantResult(variant.name, variant.source)
    out = VariantOutcome(r)
    if variant.error:
        r.status, r.error = "failed", variant.error
        return out

    def stage(name: str, fn, *a: Any) -> Any:
        try:
            return fn(*a)
        except Exception as e:  # one variant's failure is a row in the table, not the end of the run
            r.fail(name, e)
            out.tracebacks.append((name, traceback.format_exc()))
            return None

    if variant.cfg is not None:
        if stage("build", _describe, r, variant.cfg, data_cfg.nc, int(train["imgsz"])) is None:
            return out
        if stage("train", _train, r, variant, data_cfg, train, save_dir, verbose) is None:
            return out
    else:
        r.weights, r.run_dir = str(variant.weights), str(variant.run_dir or "")
        r.history = read_history(variant.run_dir)
        secs = r.history.get("epoch_seconds")
        r.train_seconds, r.epochs = (float(sum(secs)), len(secs)) if secs else (None, None)
    model = stage("val", _validate, r, data_cfg, train, verbose, {} if loaders is None else loaders)
    if model is None:
        return out
    out.model = model
    if variant.cfg is None:
        stage("build", _describe_model, r, model, int(train["imgsz"]))
    if samples > 0:
        out.sample_set = sample_set or _sample_set(data_cfg, samples)
        r.samples = _predict_samples(model, out.sample_set, int(train["imgsz"]))
    if onnx:
        try:
            out.onnx_file = export_onnx(model, protocol, save_dir / "onnx" / variant.name)
        except Exception as e:  # the export's own message names the layer; keep it in the ONNX cell
            r.latency_onnx_error = f"export failed: {type(e).__name__}: {' '.join(str(e).split())[:300]}"
            out.tracebacks.append(("export", traceback.format_exc()))
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


def _train(r: VariantResult, variant: Variant, data_cfg: Any, train: dict[str, Any], save_dir: Path,
           verbose: bool) -> bool:
    from modyolo.engine.config import TrainConfig
    from modyolo.engine.trainer import Trainer

    settings = {**train, "data": str(data_cfg.source), "cfg": str(variant.cfg_path), "project": str(save_dir / "train"),
                "name": variant.name, "exist_ok": True, "verbose": verbose}
    result = Trainer(TrainConfig.from_dict(settings, source=f"compare settings for {variant.name}")).fit()
    weights = result.best if result.best is not None and result.best.is_file() else result.last
    if weights is None or not weights.is_file():
        raise RuntimeError(f"training finished without writing weights in {result.save_dir / 'weights'}")
    r.weights, r.run_dir = str(weights), str(result.save_dir)
    r.train_seconds, r.epochs = float(result.train_seconds), int(result.epochs_completed)
    r.history = read_history(result.save_dir)
    return True


def _val_loader(loaders: dict, data_cfg: Any, imgsz: int, batch: int, stride: int, workers: int):
    """The val loader, shared by variants of the same stride (same images, same letterbox)."""
    from modyolo.data.loader import create_dataloader

    key = (str(data_cfg.source), imgsz, batch, stride)
    if key not in loaders:
        loaders[key] = create_dataloader(data_cfg.val, imgsz, batch, stride, augment=False, rect=True, pad=0.5,
                                          workers=workers, shuffle=False, prefix="val: ", names=data_cfg.names,
                                          nc=data_cfg.nc, persistent=False, progress=False)[0]
    return loaders[key]


def _validate(r: VariantResult, data_cfg: Any, train: dict[str, Any], verbose: bool, loaders: dict):
    """Validate the variant's weights (EMA, fused) on the val split; returns the unfused eval model."""
    from modyolo.eval.predictor import load_model
    from modyolo.eval.validator import validate

    model, names, _ = load_model(r.weights, device="cpu", fuse=False)
    imgsz = int(train["imgsz"])
    loader = _val_loader(loaders, data_cfg, imgsz, int(train.get("batch_size", 16)) * 2, max(int(model.stride.max()), 32),
                         int(train.get("workers", 0)))
    fused = copy.deepcopy(model).fuse()
    res = validate(fused, loader, names=list(data_cfg.names), conf_thres=VAL_CONF, iou_thres=VAL_IOU,
                   progress=verbose)
    m = res.metrics
    r.precision, r.recall, r.map50, r.map50_95 = (float(m[k]) for k in ("precision", "recall", "mAP50", "mAP50-95"))
    inst = np.asarray(m["instances"])
    r.per_class = {str(data_cfg.names[int(c)]): {"ap50": float(a50), "ap": float(a), "instances": int(inst[int(c)])}
                   for c, a50, a in zip(m["classes"], m["ap50"], m["ap"])}
    ap = res.tracker.result
    if len(ap.classes):
        r.pr_curve = (ap.px.tolist(), ap.pr_curve.mean(0).tolist())
    return model


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
        xyxy = np.stack([(rows[:, 1] - rows[:, 3] / 2) * w, (rows[:, 2] - rows[:, 4] / 2) * h,
                         (rows[:, 1] + rows[:, 3] / 2) * w, (rows[:, 2] + rows[:, 4] / 2) * h], 1)
        paths.append(img_path)
        labels.append(np.concatenate([rows[:, :1], xyxy], 1))
    return SampleSet(paths, labels)


def _predict_samples(model: torch.nn.Module, samples: SampleSet, imgsz: int) -> list[np.ndarray]:
    import cv2

    from modyolo.eval.predictor import predict_image

    fused = copy.deepcopy(model).fuse()
    out = []
    for path in samples.paths:
        det, _ = predict_image(fused, cv2.imread(path), imgsz=imgsz, stride=int(model.stride.max()),
                               device=torch.device("cpu"), conf=DISPLAY_CONF, iou=DISPLAY_IOU)
        out.append(det.numpy().astype(np.float32))
    return out


def time_variants(results: list[VariantResult], models: dict[str, Any], onnx_files: dict[str, Path],
                  protocol: LatencyProtocol) -> None:
    """Fill the latency cells of ``results`` (PyTorch and ONNX Runtime), all variants round-robin.

    A variant whose forward fails at the protocol's size gets the error in its cell and is left
    out of the round, so it cannot stop the others' timing.
    """
    by_name = {r.name: r for r in results}
    x = torch.zeros(protocol.batch, 3, protocol.imgsz, protocol.imgsz)
    runnable = {}
    for name, model in models.items():
        try:
            with torch.inference_mode():
                model(x)
            runnable[name] = model
        except Exception as e:
            by_name[name].latency_torch_error = f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
    try:
        for name, lat in measure_torch(runnable, protocol).items():
            by_name[name].latency_torch = lat
    except Exception as e:
        for name in runnable:
            by_name[name].latency_torch_error = f"{type(e).__name__}: {e}"
    if onnx_files:
        try:
            for name, lat in measure_onnx(onnx_files, protocol).items():
                by_name[name].latency_onnx = lat
        except Exception as e:
            for name in onnx_files:
                by_name[name].latency_onnx_error = f"onnxruntime: {type(e).__name__}: {' '.join(str(e).split())[:200]}"


__all__ = ["Variant", "SampleSet", "VariantOutcome", "prepare_variants", "evaluate_variant", "time_variants",
           "read_history"]
