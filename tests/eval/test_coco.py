"""Our mAP against pycocotools on the same detections (see modyolo/eval/coco.py for why the two
protocols differ, and by how much)."""

import json

import pytest
import torch

from modyolo.eval.coco import (
    COCO80_TO_91,
    COCO_STAT_NAMES,
    build_coco_gt,
    coco_evaluate,
    detections_to_coco_json,
    format_coco_stats,
)
from modyolo.eval.metrics import DetectionMetrics

from .synth import make_eval_set

pytest.importorskip("pycocotools")


def both(s: dict, protocol: str) -> tuple[dict, dict]:
    ours = DetectionMetrics(len(s["names"]), s["names"], protocol=protocol)
    ours.update(s["detections"], s["labels"])
    gt = build_coco_gt(s["images"], s["labels"], s["names"])
    dets = detections_to_coco_json(s["detections"], [im["id"] for im in s["images"]])
    return ours.compute(), coco_evaluate(gt, dets)


def test_fixture_has_the_hard_cases(eval_set):
    labels, dets = eval_set["labels"], eval_set["detections"]
    assert len(labels) >= 50 and len(eval_set["names"]) >= 5
    assert any(len(lab) == 0 and len(d) > 0 for lab, d in zip(labels, dets))  # no labels
    assert any(len(lab) > 0 and len(d) == 0 for lab, d in zip(labels, dets))  # no detections
    tiny = torch.cat([lab for lab in labels if len(lab)])
    assert ((tiny[:, 3] - tiny[:, 1]) < 8).sum() > 10  # tiny boxes
    assert max(len(d) for d in dets) <= 100  # pycocotools maxDets


@pytest.mark.parametrize("seed", [0, 1])
def test_coco_protocol_agrees_with_pycocotools_on_hard_cases(seed, eval_set):
    s = eval_set if seed == 0 else make_eval_set(seed)
    ours, coco = both(s, "coco")
    assert ours["mAP50"] > 0.3  # a meaningful, non-degenerate score
    assert abs(ours["mAP50"] - coco["mAP50"]) <= 0.005
    assert abs(ours["mAP50-95"] - coco["mAP50-95"]) <= 0.005
    # the two implementations are the same algorithm: only score rounding in the JSON remains
    assert abs(ours["mAP50-95"] - coco["mAP50-95"]) <= 1e-3


def test_yolov5_protocol_agrees_on_validation_like_output():
    # conf-0.001 style tails of low-confidence boxes, no crowds: yolov5's rules land within 0.005
    ours, coco = both(make_eval_set(2, crowds=False, tail=True), "yolov5")
    assert abs(ours["mAP50"] - coco["mAP50"]) <= 0.005
    assert abs(ours["mAP50-95"] - coco["mAP50-95"]) <= 0.005


def test_yolov5_protocol_differences_are_the_documented_ones(eval_set):
    # no low-confidence tail: yolov5's line to (recall 1, precision 0) adds area -> higher mAP
    ours, coco = both(eval_set, "yolov5")
    assert ours["mAP50-95"] > coco["mAP50-95"] + 0.01


def test_json_format_and_class_map():
    det = [torch.tensor([[10.0, 20.0, 30.0, 60.0, 0.123456, 2.0]]), torch.zeros(0, 6)]
    js = detections_to_coco_json(det, [42, 43], class_map=COCO80_TO_91)
    assert js == [{"image_id": 42, "category_id": 3, "bbox": [10.0, 20.0, 20.0, 40.0], "score": 0.12346}]
    assert len(COCO80_TO_91) == 80 and COCO80_TO_91[11] == 13 and COCO80_TO_91[-1] == 90
    with pytest.raises(ValueError, match="class_map"):
        detections_to_coco_json([torch.tensor([[0, 0, 1, 1, 0.5, 5.0]])], [1], class_map=[1, 2])


def test_paths_empty_results_and_bad_ids(tmp_path, eval_set):
    gt = build_coco_gt(eval_set["images"], eval_set["labels"], eval_set["names"])
    dets = detections_to_coco_json(eval_set["detections"], [im["id"] for im in eval_set["images"]])
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    stats = coco_evaluate(tmp_path / "gt.json", str(tmp_path / "dets.json"))
    assert list(stats) == list(COCO_STAT_NAMES) and stats == coco_evaluate(gt, dets)
    assert len(format_coco_stats(stats).splitlines()) == 12
    assert all(v == 0.0 for v in coco_evaluate(gt, []).values())
    with pytest.raises(ValueError, match="absent from the ground truth"):
        coco_evaluate(gt, [{"image_id": 99999, "category_id": 0, "bbox": [0, 0, 1, 1], "score": 0.5}])
    with pytest.raises(ValueError, match="cannot read"):
        coco_evaluate(tmp_path / "missing.json", dets)
    # restricting to a subset of images changes the result, as yolov5's imgIds does
    sub = coco_evaluate(gt, dets, image_ids=[im["id"] for im in eval_set["images"][:10]])
    assert sub["mAP50-95"] != stats["mAP50-95"]
