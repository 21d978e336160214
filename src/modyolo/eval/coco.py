"""COCO-format detections and the official COCO evaluator (pycocotools).

``--save-json`` writes ``detections_to_coco_json`` output; ``--coco-eval`` feeds it with the
ground truth (a COCO annotation file, or ``build_coco_gt`` from YOLO labels) to
``coco_evaluate``, which returns pycocotools' 12 summary numbers by name.

``DetectionMetrics(protocol="coco")`` reproduces pycocotools on the same detections (measured
difference <= 1e-4 on the hard-case fixture of ``tests/eval``, from the 5-decimal score rounding
alone). The default ``protocol="yolov5"`` reproduces yolov5's val.py instead, and differs from
pycocotools for these reasons:

* Matching: pycocotools walks detections by score and lets each take the best still-free label;
  yolov5 (``metrics.match_predictions``) lets each take its best label and counts it false if a
  more confident detection already has that label. Only crowded, overlapping labels differ.
  On the fixture's crowds (4 same-class labels overlapping at IoU ~0.6) yolov5 scores 0.01-0.04
  lower in mAP50; without crowds the rules agree.
* AP integration: pycocotools reads the precision envelope at 101 recall points (step, from the
  right) and averages; yolov5 interpolates linearly at the same points, including a line from the
  last recall reached down to (recall 1, precision 0), and integrates with the trapezoid rule.
  That line adds area when detections stop at a high precision (+0.03 to +0.06 mAP50-95 on the
  fixture without a low-confidence tail), almost none when a conf-0.001 tail drives precision
  towards 0 as real validation does (then within 0.004), and caps a perfect class at 0.995.
* pycocotools keeps at most ``maxDets=100`` detections per image and category (yolov5 keeps
  ``max_det=300`` per image), ignores ``iscrowd=1`` labels, and reports AP for the 'all' area
  range only in its first two numbers. YOLO labels have no crowd flag, so ``build_coco_gt``
  writes ``iscrowd=0`` and ``area = w*h``; an image with more than 100 detections of one class is
  the case where the two counts diverge.
* Scores are rounded to 5 decimals in the JSON (as yolov5 writes them), which can create ties.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .boxes import xyxy2xywh

# COCO's 80 detection category ids, in the order of the 80-class YOLO ids (COCO skips 10 ids).
COCO80_TO_91 = [i for i in range(1, 91) if i not in {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}]

COCO_STAT_NAMES = (
    "mAP50-95",
    "mAP50",
    "mAP75",
    "mAP50-95_small",
    "mAP50-95_medium",
    "mAP50-95_large",
    "AR1",
    "AR10",
    "AR100",
    "AR100_small",
    "AR100_medium",
    "AR100_large",
)
_STAT_LINES = (
    "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]",
    "Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ]",
    "Average Precision  (AP) @[ IoU=0.75      | area=   all | maxDets=100 ]",
    "Average Precision  (AP) @[ IoU=0.50:0.95 | area= small | maxDets=100 ]",
    "Average Precision  (AP) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ]",
    "Average Precision  (AP) @[ IoU=0.50:0.95 | area= large | maxDets=100 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets= 10 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area= small | maxDets=100 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area= large | maxDets=100 ]",
)


def _category(cls: int, class_map: Sequence[int] | None, where: str) -> int:
    if class_map is None:
        return cls
    if not 0 <= cls < len(class_map):
        raise ValueError(
            f"{where}: class id {cls} has no entry in class_map (length {len(class_map)}); "
            "pass a map covering every class id"
        )
    return int(class_map[cls])


def detections_to_coco_json(
    detections: Sequence[torch.Tensor],
    image_ids: Sequence[int | str],
    class_map: Sequence[int] | None = None,
) -> list[dict]:
    """COCO results list from per-image detections.

    Args:
        detections: per image ``Tensor[n, 6]`` (x1, y1, x2, y2, conf, cls), original-image pixels.
        image_ids: the COCO ``image_id`` of each image (yolov5 uses the file stem, as int when
            it is numeric).
        class_map: class id -> COCO ``category_id`` (e.g. ``COCO80_TO_91``); identity if None.

    Returns ``[{image_id, category_id, bbox: [x, y, w, h] (top-left, pixels, 3 decimals),
    score (5 decimals)}]``.
    """
    if len(detections) != len(image_ids):
        raise ValueError(f"detections_to_coco_json: {len(detections)} detection tensors but {len(image_ids)} image ids")
    out = []
    for det, image_id in zip(detections, image_ids):
        if det.shape[0] == 0:
            continue
        det = det.detach().cpu().double()
        xywh = xyxy2xywh(det[:, :4])
        xywh[:, :2] -= xywh[:, 2:] / 2  # centre -> top-left corner
        for box, score, cls in zip(xywh.tolist(), det[:, 4].tolist(), det[:, 5].tolist()):
            out.append(
                {
                    "image_id": image_id,
                    "category_id": _category(int(cls), class_map, f"detections_to_coco_json(image {image_id!r})"),
                    "bbox": [round(v, 3) for v in box],
                    "score": round(score, 5),
                }
            )
    return out


def build_coco_gt(
    images: Sequence[Mapping[str, Any]],
    labels: Sequence[torch.Tensor | np.ndarray],
    names: Sequence[str] | Mapping[int, str],
    class_map: Sequence[int] | None = None,
) -> dict:
    """COCO ground-truth dict from YOLO labels already in pixels.

    Args:
        images: per image ``{"id", "file_name", "width", "height"}``.
        labels: per image ``[m, 5]`` (cls, x1, y1, x2, y2), pixels of that image.
        names: class names by YOLO class id; become the categories.
        class_map: class id -> category id, identity if None.

    Every annotation gets ``iscrowd=0`` and ``area = w * h`` (see the module docstring).
    """
    names = dict(names) if isinstance(names, Mapping) else dict(enumerate(names))
    if len(images) != len(labels):
        raise ValueError(f"build_coco_gt: {len(images)} images but {len(labels)} label arrays")
    anns: list[dict[str, Any]] = []
    for img, lab in zip(images, labels):
        lab = torch.as_tensor(lab, dtype=torch.float64).reshape(-1, 5)
        for cls, x1, y1, x2, y2 in lab.tolist():
            w, h = x2 - x1, y2 - y1
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": img["id"],
                    "iscrowd": 0,
                    "area": w * h,
                    "category_id": _category(int(cls), class_map, f"build_coco_gt(image {img['id']!r})"),
                    "bbox": [x1, y1, w, h],
                }
            )
    cats = [
        {"id": _category(i, class_map, "build_coco_gt"), "name": n, "supercategory": "none"} for i, n in names.items()
    ]
    return {
        "info": {"description": "modyolo ground truth"},
        "licenses": [],
        "images": [dict(i) for i in images],
        "annotations": anns,
        "categories": cats,
    }


def _load_json(x: Any, what: str) -> Any:
    if isinstance(x, (str, Path)):
        try:
            return json.loads(Path(x).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(
                f"coco_evaluate: cannot read {what} JSON {str(x)!r}: {e}; "
                f"pass a COCO {what} file or an in-memory object"
            ) from e
    return x


def coco_evaluate(
    gt: Mapping | str | Path,
    dets: Sequence[Mapping] | str | Path,
    image_ids: Sequence[int | str] | None = None,
    verbose: bool = False,
) -> dict[str, float]:
    """Run pycocotools' bbox evaluation and return its 12 numbers keyed by ``COCO_STAT_NAMES``.

    Args:
        gt: COCO ground truth (dict or path to an instances JSON).
        dets: results list (as from ``detections_to_coco_json``) or a path to one.
        image_ids: evaluate only these images (yolov5 restricts to the images it validated);
            default all images in ``gt``.
        verbose: let pycocotools print its progress and table (otherwise captured).

    With no detections at all every number is 0.0 (pycocotools itself cannot load an empty
    result list).
    """
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as e:
        raise ImportError("coco_evaluate needs pycocotools: pip install 'modyolo[coco]'") from e
    gt_data = _load_json(gt, "ground-truth")
    det_data = [dict(d) for d in _load_json(dets, "detections")]  # loadRes adds keys in place
    if not det_data:
        return {k: 0.0 for k in COCO_STAT_NAMES}
    gt_ids = {img["id"] for img in gt_data["images"]}
    unknown = {d["image_id"] for d in det_data} - gt_ids
    if unknown:
        raise ValueError(
            f"coco_evaluate: detections reference {len(unknown)} image ids absent from the ground truth, "
            f"e.g. {sorted(map(str, unknown))[:3]}; image ids must match the annotation file's 'images'"
        )
    sink = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with sink:
        coco_gt = COCO()
        coco_gt.dataset = json.loads(json.dumps(gt_data))  # pycocotools mutates it; keep the caller's
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(det_data)
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        if image_ids is not None:
            ev.params.imgIds = list(image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {k: float(v) for k, v in zip(COCO_STAT_NAMES, ev.stats)}


def format_coco_stats(stats: Mapping[str, float]) -> str:
    """pycocotools' 12-line summary text from ``coco_evaluate``'s dict."""
    return "\n".join(f" {line} = {stats[k]:0.3f}" for line, k in zip(_STAT_LINES, COCO_STAT_NAMES))
