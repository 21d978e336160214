import cv2
import numpy as np
import torch

from modyolo.eval.metrics import DetectionMetrics
from modyolo.eval.plots import draw_detections, plot_confusion_matrix, plot_metrics, plot_val_images


def test_plot_metrics_writes_all_pngs(tmp_path, eval_set):
    m = DetectionMetrics(len(eval_set["names"]), eval_set["names"])
    m.update(eval_set["detections"][:20], eval_set["labels"][:20])
    paths = plot_metrics(m, tmp_path / "run")
    assert sorted(p.name for p in paths) == sorted(
        ["PR_curve.png", "F1_curve.png", "P_curve.png", "R_curve.png", "confusion_matrix.png"]
    )
    for p in paths:
        img = cv2.imread(str(p))
        assert img is not None and img.shape[0] > 100 and img.std() > 1  # a real, non-blank picture


def test_plots_survive_empty_runs(tmp_path):
    m = DetectionMetrics(3)
    m.update([torch.zeros(0, 6)], [torch.zeros(0, 5)])
    assert len(plot_metrics(m, tmp_path)) == 5
    assert plot_confusion_matrix(np.zeros((4, 4)), tmp_path / "cm.png").exists()


def test_draw_detections_draws_inside_a_copy():
    img = np.zeros((60, 100, 3), np.uint8)
    out = draw_detections(img, torch.tensor([[20.0, 30.0, 60.0, 55.0]]), [1], [0.87], names=["a", "b"])
    assert img.sum() == 0  # input untouched
    assert out[30:56, 20].any() and out[30:56, 60].any()  # left/right edges drawn
    assert not out[40:50, 30:50].any()  # interior left empty
    assert out[:30, 20:60].any()  # the "b 0.87" tag sits above the box
    bare = draw_detections(img, torch.tensor([[20.0, 30.0, 60.0, 55.0]]), [1], hide_labels=True)
    assert not bare[:28].any()


def test_val_images_put_labels_beside_predictions(tmp_path, eval_set):
    imgs = [np.full((im["height"], im["width"], 3), 200, np.uint8) for im in eval_set["images"][:3]]
    path = plot_val_images(
        imgs,
        eval_set["labels"][:3],
        eval_set["detections"][:3],
        tmp_path / "val_batch0.jpg",
        eval_set["names"],
        cell=128,
    )
    grid = cv2.imread(str(path))
    assert grid.shape == (20 + 3 * 128, 2 * 128 + 2, 3)
