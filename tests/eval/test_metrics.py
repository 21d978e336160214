import numpy as np
import pytest
import torch

from modyolo.eval.metrics import (
    ConfusionMatrix,
    DetectionMetrics,
    ap_per_class,
    compute_ap,
    fitness,
    format_table,
    match_predictions,
    smooth,
)

T = torch.tensor


def test_match_predictions_thresholds_and_classes():
    labels = T([[0, 0, 0, 10, 10], [1, 20, 20, 30, 30]], dtype=torch.float32)
    dets = T(
        [
            [0, 0, 10, 10, 0.9, 0],  # exact: TP at every threshold
            [0, 0, 10, 8, 0.8, 0],  # duplicate of label 0 (IoU 0.8): label already taken -> FP
            [20, 20, 30, 27, 0.7, 1],  # IoU 0.7 with label 1: TP up to 0.70
            [20, 20, 30, 30, 0.6, 0],  # right place, wrong class: FP
        ]
    )
    c = match_predictions(dets, labels)
    assert c.shape == (4, 10)
    assert c[0].all() and not c[1].any() and not c[3].any()
    assert c[2].tolist() == [True] * 5 + [False] * 5  # 0.50 .. 0.70 inclusive (IoU >= t)


def test_yolov5_rule_vs_coco_rule_in_a_crowd():
    # two overlapping labels; the second detection's best label is taken by the first detection,
    # but it overlaps the other label by IoU 0.6
    labels = T([[0, 0, 0, 10, 10], [0, 0, 0, 10, 6]], dtype=torch.float32)
    dets = T([[0, 0, 10, 10, 0.9, 0], [0, 0, 10, 8.5, 0.8, 0]])
    # det 1: IoU 0.85 with label 0 (best), 6/8.5 = 0.706 with label 1
    y = match_predictions(dets, labels)
    c = match_predictions(dets, labels, rule="coco")
    assert not y[1, 0] and c[1, 0]  # yolov5: no fallback; COCO: falls back to label 1
    assert y[0].all() and c[0].all()
    with pytest.raises(ValueError, match="unknown rule"):
        match_predictions(dets, labels, rule="hungarian")


def test_compute_ap_known_values():
    # perfect class: yolov5's sentinel (1, 0) sits on the last point, so the top AP is 0.995
    assert compute_ap(np.array([1.0]), np.array([1.0]))[0] == pytest.approx(0.995)
    assert compute_ap(np.array([1.0]), np.array([1.0]), "coco")[0] == pytest.approx(1.0)
    # half the labels found at precision 1: yolov5 interpolates to (1, 0) -> 0.5 + 0.25
    assert compute_ap(np.array([0.5]), np.array([1.0]))[0] == pytest.approx(0.75)
    # COCO reads 101 points, recall <= 0.5 -> 51 of them at precision 1
    assert compute_ap(np.array([0.5]), np.array([1.0]), "coco")[0] == pytest.approx(51 / 101)
    # envelope: a later higher precision lifts earlier points
    ap, mpre, _ = compute_ap(np.array([0.25, 0.5, 0.75]), np.array([0.5, 0.4, 0.6]))
    assert list(mpre[1:4]) == [0.6, 0.6, 0.6]


def test_smooth_keeps_length_and_constants():
    y = np.full(1000, 0.3)
    assert np.allclose(smooth(y, 0.1), y)
    assert smooth(np.arange(1000.0), 0.05).shape == (1000,)


def test_ap_per_class_picks_max_f1_and_ignores_unlabelled_classes():
    tp = np.array([[1], [1], [0], [1], [0]], dtype=bool)
    conf = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    pred_cls = np.zeros(5)
    target_cls = np.zeros(4)
    res = ap_per_class(np.concatenate([tp, [[0]]]), np.append(conf, 0.95), np.append(pred_cls, 7), target_cls)
    assert res.classes.tolist() == [0] and res.instances.tolist() == [4]
    # best F1 once the 3rd TP (conf 0.6) is in: R 0.75; the curves are interpolated between
    # detections and F1 smoothed, so P lies between its values at conf 0.6 (0.75) and 0.5 (0.6)
    assert res.r[0] == pytest.approx(0.75) and 0.6 < res.p[0] <= 0.75
    assert res.tp.tolist() == [3] and res.fp.tolist() == [1]
    assert 0.5 < res.conf_at_max_f1 <= 0.7


def test_detection_metrics_end_to_end():
    m = DetectionMetrics(3, names=["a", "b", "c"])
    labels = [
        T([[0, 0, 0, 10, 10], [1, 20, 20, 40, 40]], dtype=torch.float32),
        torch.zeros(0, 5),
        T([[2, 5, 5, 9, 9.0]]),
    ]
    dets = [T([[0, 0, 10, 10, 0.9, 0], [20, 20, 40, 40, 0.8, 1]]), T([[1, 1, 5, 5, 0.3, 0]]), torch.zeros(0, 6)]
    m.update(dets, labels)
    r = m.compute()
    assert r["images"] == 3 and r["instances"].tolist() == [1, 1, 1] and r["detections"] == 3
    # a and b found perfectly (a has one FP at low conf, after its TP), c missed
    assert r["ap50"].tolist() == pytest.approx([0.995, 0.995, 0.0])  # 0.995: see compute_ap test
    assert r["mAP50"] == pytest.approx(2 * 0.995 / 3) and r["mAP50-95"] == pytest.approx(2 * 0.995 / 3)
    assert r["fitness"] == pytest.approx(0.1 * r["mAP50"] + 0.9 * r["mAP50-95"])
    table = m.table()
    lines = table.splitlines()
    assert lines[0].split() == ["Class", "Images", "Instances", "P", "R", "mAP50", "mAP50-95"]
    assert lines[1].split()[:3] == ["all", "3", "3"] and [ln.split()[0] for ln in lines[2:]] == ["a", "b", "c"]
    assert m.confusion.matrix[0, 0] == 1 and m.confusion.matrix[1, 1] == 1 and m.confusion.matrix[3, 2] == 1
    assert m.confusion.matrix[0, 3] == 1  # the unmatched detection on the label-free image


def test_empty_runs_give_zeros_and_say_why():
    m = DetectionMetrics(2)
    m.update([T([[0, 0, 4, 4, 0.5, 1.0]])], [torch.zeros(0, 5)])
    r = m.compute()
    assert r["mAP50"] == 0 and r["precision"] == 0 and r["fitness"] == 0
    assert "no labels found" in m.table()
    m2 = DetectionMetrics(2)
    m2.update([torch.zeros(0, 6)], [T([[1, 0, 0, 4, 4.0]])])
    assert m2.compute()["mAP50-95"] == 0 and m2.confusion.matrix[2, 1] == 1
    with pytest.raises(ValueError, match="one of each per image"):
        m2.update([torch.zeros(0, 6)], [])
    with pytest.raises(ValueError, match="unknown protocol"):
        DetectionMetrics(2, protocol="voc")


def test_confusion_matrix_rules():
    cm = ConfusionMatrix(nc=2, conf=0.25, iou_thres=0.45)
    labels = T([[0, 0, 0, 10, 10], [1, 20, 20, 30, 30], [1, 50, 50, 60, 60]], dtype=torch.float32)
    dets = T(
        [
            [0, 0, 10, 10, 0.9, 0],  # correct
            [20, 20, 30, 30, 0.8, 0],  # class confusion: pred 0, true 1
            [0, 0, 10, 9, 0.7, 0],  # duplicate: label 0 keeps its best detection -> false alarm
            [80, 80, 90, 90, 0.1, 1],  # below conf: ignored
        ]
    )
    cm.process_batch(dets, labels)
    expected = np.zeros((3, 3))
    expected[0, 0] = expected[0, 1] = 1
    expected[2, 1] = 1  # label at (50,50) missed
    expected[0, 2] = 1  # duplicate
    assert np.array_equal(cm.matrix, expected)
    tp, fp = cm.tp_fp()
    assert tp.tolist() == [1, 0] and fp.tolist() == [2, 0]
    assert np.allclose(cm.normalized().sum(0)[:2], 1.0)


def test_fitness_accepts_row_or_dict():
    assert fitness(np.array([0.5, 0.5, 0.6, 0.4])) == pytest.approx(0.42)
    assert fitness({"mAP50": 0.6, "mAP50-95": 0.4}) == pytest.approx(0.42)
    r = {
        "precision": 0.5,
        "recall": 0.25,
        "mAP50": 0.125,
        "mAP50-95": 0.0625,
        "images": 2,
        "instances": np.array([3, 0]),
        "classes": np.array([0]),
        "p": [0.5],
        "r": [0.25],
        "ap50": [0.125],
        "ap": [0.0625],
    }
    assert "0.125" in format_table(r, {0: "cat", 1: "dog"}) and "dog" not in format_table(r, {0: "cat", 1: "dog"})
