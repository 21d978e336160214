"""Validation of loaded weights as ``modyolo val`` and ``Detector.val`` run it: the data split, the
validator, ``--save-txt`` / ``--save-json`` / ``--coco-eval`` outputs and the zero-metric diagnosis.

The verb's flags are parsed in :mod:`modyolo.cli.val`; this module is what it calls.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from modyolo.eval.validator import ValResult
from modyolo.structures import FITNESS, MAP50, MAP50_95, PRECISION, RECALL

LOGGER = logging.getLogger("modyolo.eval.val")
DIAGNOSIS_BATCHES = 2  # batches the raw-vs-EMA check re-evaluates (it only needs "zero or not")


@dataclass
class ValOutcome:
    """What one validation produced: the validator's result, the run folder and extras."""

    result: ValResult
    save_dir: Path
    coco: dict[str, float] = field(default_factory=dict)  # pycocotools' 12 numbers when --coco-eval
    json_path: Path | None = None
    diagnosis: Any = None  # diagnose.Diagnosis when the metrics were zero

    def summary(self) -> dict[str, Any]:
        m = self.result.metrics
        out: dict[str, Any] = {k: float(m[k]) for k in (PRECISION, RECALL, MAP50, MAP50_95, FITNESS)}
        out.update(speed=dict(self.result.speed), save_dir=str(self.save_dir))
        if self.coco:
            out["coco"] = dict(self.coco)
        if self.diagnosis is not None:
            out["diagnosis"] = self.diagnosis.cause
        return out


def _metric_names(model_names: list[str], data_names: list[str], single_cls: bool) -> list[str]:
    """Names covering every class id that labels or detections can carry (metrics index by id)."""
    if single_cls:
        return [model_names[0] if model_names else "item"]
    longest = data_names if len(data_names) >= len(model_names) else model_names
    return [data_names[i] if i < len(data_names) else model_names[i] for i in range(len(longest))]


def validate_model(
    model: Any,
    names: list[str],
    meta: dict,
    *,
    data: str | os.PathLike = "shapes",
    imgsz: int = 640,
    batch_size: int = 32,
    conf_thres: float = 0.001,
    iou_thres: float = 0.6,
    max_det: int = 300,
    task: str = "val",
    device: str | torch.device = "cpu",
    workers: int = 2,
    single_cls: bool = False,
    augment: bool = False,
    verbose: bool = False,
    save_txt: bool = False,
    save_conf: bool = False,
    save_json: bool = False,
    coco_eval: bool = False,
    project: str | os.PathLike = "runs/val",
    name: str = "exp",
    exist_ok: bool = False,
    plots: bool = True,
    diagnose: bool = True,
    progress: bool = True,
    cfg: Any = None,
    rect: bool | None = None,
) -> ValOutcome:
    """Validate a loaded model (from ``predictor.load_model``) on ``data``'s ``task`` split.

    Used by ``modyolo val`` and ``Detector.val``. ``task="speed"`` forces conf 0.25 / iou 0.45
    and no JSON or plots, as yolov5 does. ``rect``: rectangular batches (None: yes unless the
    model takes a fixed input shape); their letterbox shapes depend on ``batch_size`` (the images
    of a batch share one shape), so a barely trained model's metrics move with it.
    """
    from modyolo.data.dataset_yaml import load_data_config
    from modyolo.data.loader import create_dataloader
    from modyolo.eval.validator import validate
    from modyolo.inference.predictor import TTAModel, check_imgsz, select_device
    from modyolo.logs import attach_run_log
    from modyolo.paths import increment_path

    if task == "speed":
        conf_thres, iou_thres, save_json, coco_eval, plots = 0.25, 0.45, False, False, False
    save_json = save_json or coco_eval
    dev = select_device(device)
    data_cfg = load_data_config(data)
    split = "test" if task == "test" else "val"
    sources = getattr(data_cfg, split)
    if not sources:
        raise ValueError(f"{data_cfg.source}: --task {task} needs a '{split}' entry in the data YAML")
    model_nc = int(meta.get("nc") or len(names))
    if model_nc and model_nc != data_cfg.nc and not single_cls:
        LOGGER.warning(
            "%s has %d classes but %s has %d; these weights were trained on other data (pass the matching --data)",
            meta.get("path"),
            model_nc,
            data_cfg.source,
            data_cfg.nc,
        )
    stride = int(meta.get("stride", 32))
    dynamic = bool(meta.get("dynamic", True))
    if dynamic:
        imgsz = check_imgsz(imgsz, stride)
    else:  # an export with a fixed input shape: square batches of exactly that size
        h, w = meta["imgsz"]
        if h != w:
            raise ValueError(
                f"{meta.get('path')} takes a fixed {h}x{w} input; validation letterboxes to squares: "
                "re-export with a square --img or with --dynamic"
            )
        imgsz = int(h)
    if rect and not dynamic:
        raise ValueError(
            f"{meta.get('path')} takes a fixed {imgsz}x{imgsz} input; --rect needs a .pt or an export with --dynamic"
        )
    # yolov5: rectangular batches unless timing or a fixed input shape. A fixed-shape export sees square
    # letterboxed images instead, so its numbers equal the .pt's validated with --no-rect, not with rect batches.
    rect = (dynamic if rect is None else rect) and task != "speed"
    if not dynamic:
        LOGGER.info(
            "%s takes a fixed %dx%d input: square letterboxed batches (compare it with the .pt validated "
            "with --no-rect)",
            meta.get("path"),
            imgsz,
            imgsz,
        )
    loader, dataset = create_dataloader(
        sources,
        imgsz,
        batch_size,
        stride,
        augment=False,
        rect=rect,
        workers=workers,
        shuffle=False,
        prefix=f"{split}: ",
        single_cls=single_cls,
        pad=0.5 if rect else 0.0,
        names=data_cfg.names,
        nc=data_cfg.nc,
        persistent=False,
        progress=progress,
    )
    save_dir = increment_path(Path(project) / name, exist_ok=exist_ok)
    attach_run_log(save_dir)
    metric_names = _metric_names(list(names), list(data_cfg.names), single_cls)
    collector = _Collector(save_dir, metric_names, save_txt, save_conf, save_json, data_cfg, split, single_cls)
    eval_model = TTAModel(model, stride) if augment else model
    result = validate(
        eval_model,
        loader,
        names=metric_names,
        conf_thres=conf_thres,
        iou_thres=iou_thres,
        max_det=max_det,
        single_cls=single_cls,
        plots=plots,
        save_dir=save_dir,
        verbose=False,
        progress=progress,
        device=dev,
        on_image=collector if (save_txt or save_json) else None,
    )
    nc_table = len(metric_names)
    _say(result.table(per_class=(verbose or nc_table < 50) and nc_table > 1))
    sp = result.speed
    _say(
        f"Speed: {sp['preprocess']:.1f}ms pre-process, {sp['inference']:.1f}ms inference, {sp['nms']:.1f}ms NMS "
        f"per image at shape ({min(batch_size, len(dataset))}, 3, {imgsz}, {imgsz})"
    )
    outcome = ValOutcome(result, save_dir)
    if save_json:
        outcome.json_path = collector.write_json(Path(str(meta.get("path") or "model")).stem)
        _say(f"COCO-format detections saved to {outcome.json_path}")
        if coco_eval:
            from modyolo.eval.coco import coco_evaluate, format_coco_stats

            outcome.coco = coco_evaluate(collector.gt, collector.dets, image_ids=collector.image_ids)
            _say(format_coco_stats(outcome.coco))
    from modyolo.eval.diagnose import needs_diagnosis

    if diagnose and needs_diagnosis(result.metrics):
        outcome.diagnosis = _diagnose(
            model, meta, result, dataset, loader, metric_names, conf_thres, iou_thres, max_det, single_cls, dev, cfg
        )
        _say(outcome.diagnosis.report())
    if save_txt:
        _say(f"{len(list((save_dir / 'labels').glob('*.txt')))} labels saved to {save_dir / 'labels'}")
    _say(f"Results saved to {save_dir}")
    return outcome


def _say(text: str) -> None:
    """A result for the person at the terminal (stdout) that the run's log.txt keeps as well."""
    from modyolo.logs import FILE_ONLY

    print(text)
    LOGGER.info("%s", text, extra=FILE_ONLY)


class _Collector:
    """``validate``'s per-image hook: YOLO txt files and COCO-format detections."""

    def __init__(
        self,
        save_dir: Path,
        names: list[str],
        save_txt: bool,
        save_conf: bool,
        save_json: bool,
        data_cfg: Any,
        split: str,
        single_cls: bool = False,
    ) -> None:
        self.save_dir, self.names = save_dir, names
        self.save_txt, self.save_conf, self.save_json = save_txt, save_conf, save_json
        self.dets: list[dict] = []
        self.image_ids: list[int | str] = []
        self.gt: dict = {}
        self._ids: dict[str, int | str] = {}
        if save_txt:
            (save_dir / "labels").mkdir(parents=True, exist_ok=True)
        if save_json:
            from modyolo.data.formats.coco import coco_image_ids, yolo_to_coco

            # the same numbering as the exported ground truth, so the JSON evaluates against it
            self.gt = yolo_to_coco(data_cfg, split)
            self._ids = {os.path.abspath(p): i for p, i in coco_image_ids(self.gt).items()}
            if single_cls:  # detections all say class 0: so must the ground truth
                for ann in self.gt["annotations"]:
                    ann["category_id"] = 0
                self.gt["categories"] = [{"id": 0, "name": names[0]}]

    def __call__(self, path: str, det: torch.Tensor, shape: tuple) -> None:
        from modyolo.inference.results import Result

        if self.save_txt:
            r = Result.from_detections(det, path, None, shape, self.names)
            r.save_txt(self.save_dir / "labels" / f"{Path(path).stem}.txt", self.save_conf)
        if self.save_json:
            from modyolo.eval.coco import detections_to_coco_json

            image_id = self._ids.get(os.path.abspath(path))
            if image_id is None:
                raise ValueError(
                    f"--save-json: {path} is not in the COCO ground truth built from the data YAML; "
                    "was the dataset changed during validation?"
                )
            self.image_ids.append(image_id)
            self.dets.extend(detections_to_coco_json([det], [image_id]))

    def write_json(self, stem: str) -> Path:
        path = self.save_dir / f"{stem}_predictions.json"
        path.write_text(json.dumps(self.dets))
        return path


def _diagnose(
    model: Any,
    meta: dict,
    result: ValResult,
    dataset: Any,
    loader: Any,
    names: list[str],
    conf_thres: float,
    iou_thres: float,
    max_det: int,
    single_cls: bool,
    dev: torch.device,
    cfg: Any,
):
    """Reload the weights unfused (BN statistics intact) and run the zero-metric checks."""
    from modyolo.eval.diagnose import diagnose
    from modyolo.eval.validator import validate
    from modyolo.inference.predictor import load_model

    unfused, ckpt, evaluate, sample = None, None, None, None
    fmt, path = meta.get("format"), meta.get("path")
    if fmt in ("checkpoint", "state_dict", "yaml") and path:
        unfused, _, _ = load_model(path, device=dev, fuse=False, cfg=cfg)
        imgs = next(iter(loader))[0][:2]
        sample = imgs.to(dev).float() / 255
        if fmt == "checkpoint":
            from modyolo.weights_io import load_checkpoint

            ckpt = load_checkpoint(path)
            reference = unfused

            def evaluate(state: Mapping[str, torch.Tensor]) -> Mapping[str, Any]:
                m = _copy_with(reference, state)
                r = validate(
                    m,
                    itertools.islice(loader, DIAGNOSIS_BATCHES),
                    names=names,
                    conf_thres=conf_thres,
                    iou_thres=iou_thres,
                    max_det=max_det,
                    single_cls=single_cls,
                    progress=False,
                    device=dev,
                )
                return r.metrics
    elif model is not None and hasattr(model, "named_modules"):
        unfused = model  # an in-memory model the caller built: inspect what was evaluated
    return diagnose(
        unfused,
        stats=result.stats,
        labels=list(dataset.labels),
        nc=int(meta.get("nc") or len(names)),
        conf_thres=conf_thres,
        files=list(dataset.im_files),
        sample=sample,
        ckpt=ckpt,
        evaluate=evaluate,
    )


def _copy_with(model: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> torch.nn.Module:
    import copy

    m = copy.deepcopy(model)
    m.load_state_dict(state, strict=True)
    return m.eval()
