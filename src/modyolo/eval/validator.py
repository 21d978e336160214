"""The validation loop: model outputs -> NMS -> matches in original-image pixels -> metrics.

Used by training (every epoch, on the EMA weights), by ``modyolo val`` and by the Python API.
``model`` is anything callable on a float ``[B, 3, H, W]`` 0-1 batch that returns yolov5's
inference output (``(pred, raw_maps)`` or just ``pred: [B, N, 5+nc]``) — a DetectionModel or
an exported backend.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from modyolo.eval.boxes import scale_boxes, xywh2xyxy
from modyolo.eval.metrics import DetectionMetrics
from modyolo.eval.nms import non_max_suppression

VAL_PLOT_BATCHES = 2  # batches drawn as labels-vs-predictions pictures


@dataclass
class ValResult:
    metrics: dict[str, Any]  # DetectionMetrics.compute(): precision, recall, mAP50, mAP50-95, per class
    loss: torch.Tensor | None  # mean (box, obj, cls) over batches, when compute_loss was given
    speed: dict[str, float]  # ms per image: preprocess, inference, nms
    tracker: DetectionMetrics
    stats: dict[str, Any] = field(default_factory=dict)  # counts the zero-mAP diagnosis reads

    def table(self, per_class: bool = True) -> str:
        return self.tracker.table(per_class)


@torch.inference_mode()
def validate(
    model: Callable,
    dataloader,
    *,
    names: Sequence[str],
    conf_thres: float = 0.001,
    iou_thres: float = 0.6,
    max_det: int = 300,
    single_cls: bool = False,
    compute_loss: Callable | None = None,
    plots: bool = False,
    save_dir: Path | None = None,
    verbose: bool = False,
    progress: bool = True,
    device: torch.device | None = None,
    on_image: Callable[[str, torch.Tensor, tuple], None] | None = None,
) -> ValResult:
    """Run ``model`` over ``dataloader`` (batches from ``DetectionDataset.collate_fn``).

    on_image: called per image with (path, detections ``[n, 6]`` xyxy in original pixels, original
        shape ``(h0, w0)``) — how ``--save-txt`` / ``--save-json`` collect their output.
    """
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    if device is None:
        param = next(model.parameters(), None) if hasattr(model, "parameters") else None
        device = param.device if param is not None else torch.device("cpu")
    nc = len(names)
    tracker = DetectionMetrics(nc, names=list(names))
    loss_sum = torch.zeros(3, device=device)
    times = np.zeros(3)
    stats = {"candidates_before_nms": 0, "detections_after_nms": 0, "max_objectness": 0.0, "batches": 0}
    seen_images = 0
    plot_batches: list[tuple] = []
    channels_last = getattr(model, "channels_last", False) or _is_channels_last(model)  # once, not per batch
    end2end = bool(getattr(model, "end2end", False))
    if end2end and single_cls and not (getattr(model, "agnostic", False) or getattr(model, "nc", 0) == 1):
        raise ValueError(
            f"{getattr(model, 'path', 'this model')} has class-aware NMS inside its graph, but --single-cls "
            "suppresses across classes (as yolov5 and ultralytics do): re-export with --nms --agnostic-nms, "
            "or validate a model exported without --nms"
        )
    bar = tqdm(
        dataloader,
        desc=f"{'Class':>22}{'Images':>11}{'Instances':>11}{'P':>11}{'R':>11}{'mAP50':>11}{'mAP50-95':>11}",
        bar_format="{l_bar}{bar:10}{r_bar}",
        disable=not progress,
    )
    for imgs, targets, paths, shapes in bar:
        t0 = time.perf_counter()
        imgs = imgs.to(device, non_blocking=True).float() / 255
        if channels_last:
            imgs = imgs.contiguous(memory_format=torch.channels_last)
        targets = targets.to(device)
        b, _, h, w = imgs.shape
        t1 = time.perf_counter()
        if end2end:  # an exported graph that ends in NMS (export --nms): its detections, no Python NMS
            dets = _end_to_end(model, imgs, conf_thres, iou_thres, max_det, stats)
            t2 = t3 = time.perf_counter()
        else:
            out = model(imgs)
            pred, raw = (out[0], out[1]) if isinstance(out, (tuple, list)) else (out, None)
            pred = pred.float()
            t2 = time.perf_counter()
            if compute_loss is not None and raw is not None:
                loss_sum += compute_loss(raw if isinstance(raw, dict) else [r.float() for r in raw], targets)[1]
            stats["max_objectness"] = max(stats["max_objectness"], float(pred[..., 4].max()) if pred.numel() else 0.0)
            stats["candidates_before_nms"] += int((pred[..., 4] > conf_thres).sum())
            dets = non_max_suppression(
                pred, conf_thres, iou_thres, multi_label=True, agnostic=single_cls, max_det=max_det
            )
            t3 = time.perf_counter()
        labels_px = targets[:, 2:] * torch.tensor((w, h, w, h), device=device)
        batch_dets, batch_labels = [], []
        for si, det in enumerate(dets):
            lab = targets[targets[:, 0] == si]
            lab_xyxy = xywh2xyxy(labels_px[targets[:, 0] == si])
            det = det.clone()
            if single_cls:
                det[:, 5] = 0
            h0w0, ratio_pad = shapes[si] if shapes[si] is not None else ((h, w), None)
            det[:, :4] = scale_boxes((h, w), det[:, :4], h0w0, ratio_pad)
            lab_xyxy = scale_boxes((h, w), lab_xyxy, h0w0, ratio_pad)
            labels = torch.cat((lab[:, 1:2], lab_xyxy), 1)
            batch_dets.append(det)
            batch_labels.append(labels)
            stats["detections_after_nms"] += len(det)
            if on_image is not None:
                on_image(paths[si], det, tuple(h0w0))
        tracker.update(batch_dets, batch_labels)
        seen_images += b
        stats["batches"] += 1
        times += (t1 - t0, t2 - t1, t3 - t2)
        if plots and len(plot_batches) < VAL_PLOT_BATCHES:
            plot_batches.append((list(paths), batch_labels, batch_dets))
    metrics = tracker.compute()
    speed = dict(zip(("preprocess", "inference", "nms"), (times * 1e3 / max(seen_images, 1)).tolist()))
    result = ValResult(
        metrics, (loss_sum / max(stats["batches"], 1)).cpu() if compute_loss else None, speed, tracker, stats
    )
    if verbose:
        print(tracker.table(per_class=nc > 1))
        print("Speed: %.1fms pre-process, %.1fms inference, %.1fms NMS per image" % tuple(speed.values()))
    if plots and save_dir is not None:
        _save_plots(tracker, plot_batches, Path(save_dir), names)
    if hasattr(model, "train") and was_training:
        model.train()
    return result


def _end_to_end(
    model: Callable, imgs: torch.Tensor, conf_thres: float, iou_thres: float, max_det: int, stats: dict
) -> list[torch.Tensor]:
    """Detections from a graph with NMS inside (class-aware, multi-label as validation wants).

    Its objectness is not an output: ``max_objectness`` records the best detection's conf (a lower
    bound) and ``candidates_before_nms`` the detections kept, so the zero-mAP diagnosis still reads.
    """
    det, num = model(imgs, conf_thres, iou_thres, True)
    dets = [d[: int(k)].float()[:max_det] for d, k in zip(det, num)]
    stats["max_objectness"] = max([stats["max_objectness"], *(float(d[:, 4].max()) for d in dets if len(d))])
    stats["candidates_before_nms"] += int(sum(len(d) for d in dets))
    return dets


def _is_channels_last(model: Any) -> bool:
    first = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
    return (
        first is not None
        and first.dim() == 4
        and first.is_contiguous(memory_format=torch.channels_last)
        and not first.is_contiguous()
    )


def _save_plots(tracker: DetectionMetrics, batches: list[tuple], save_dir: Path, names: Sequence[str]) -> None:
    import cv2

    from modyolo.eval.plots import plot_metrics, plot_val_images

    save_dir.mkdir(parents=True, exist_ok=True)
    plot_metrics(tracker, save_dir)
    for i, (paths, labels, dets) in enumerate(batches):
        images = [cv2.imread(p) for p in paths]
        keep = [k for k, im in enumerate(images) if im is not None]
        plot_val_images(
            [images[k] for k in keep],
            [labels[k] for k in keep],
            [dets[k] for k in keep],
            save_dir / f"val_batch{i}_pred.jpg",
            names=list(names),
        )
