import logging

import numpy as np
import torch
from engine_fakes import ANCHORS_PX, tiny_model

from modyolo.engine.autoanchor import anchor_metrics, check_anchor_order, check_anchors, kmeans, label_wh
from modyolo.engine.checkpoint import load_checkpoint, save_checkpoint


def planted_wh(n: int = 300, seed: int = 0) -> np.ndarray:
    """Very wide and very tall boxes (ratio 10:1) that yolov5's default anchors cannot match."""
    rng = np.random.default_rng(seed)
    wide = np.stack([rng.uniform(150, 250, n), rng.uniform(12, 22, n)], 1)
    tall = np.stack([rng.uniform(8, 12, n), rng.uniform(80, 120, n)], 1)
    return np.concatenate([wide, tall])


def test_bad_anchors_are_replaced_in_stride_order(tmp_path, caplog):
    model = tiny_model()
    wh = planted_wh()
    with caplog.at_level(logging.INFO, logger="modyolo.engine.autoanchor"):
        before, after, changed = check_anchors(wh, model, thr=4.0, imgsz=320, gen=200)
    assert before < 0.9 and after > 0.98 and changed
    assert "best possible recall" in caplog.text and "new anchors" in caplog.text
    head = model.head
    px = head.anchors * head.stride.view(-1, 1, 1)
    area = px.prod(-1).mean(-1)
    assert area[0] <= area[1] <= area[2]  # smallest anchors on stride 8
    assert anchor_metrics(wh, px.view(-1, 2), 4.0)[0] > 0.98
    # the anchors are a buffer, so the checkpoint carries them
    save_checkpoint(tmp_path / "last.pt", model=model, epoch=0)
    fresh = tiny_model()
    fresh.load_state_dict(load_checkpoint(tmp_path / "last.pt")["model"])
    assert torch.equal(fresh.head.anchors, head.anchors)


def test_fitting_anchors_are_kept():
    model = tiny_model()
    anchors = torch.tensor(ANCHORS_PX, dtype=torch.float64).view(-1, 2).numpy()
    wh = np.repeat(anchors, 20, 0) * np.random.default_rng(1).uniform(0.8, 1.2, (180, 1))
    old = model.head.anchors.clone()
    before, after, changed = check_anchors(wh, model, imgsz=640, gen=10)
    assert before == after > 0.98 and not changed and torch.equal(model.head.anchors, old)


def test_label_wh_letterboxes_to_imgsz():
    shapes = np.array([[640, 320], [100, 200]])
    labels = [np.array([[0, 0.5, 0.5, 0.5, 0.5]]), np.array([[1, 0.5, 0.5, 0.1, 0.2], [1, 0.3, 0.3, 1.0, 1.0]])]
    wh = label_wh(shapes, labels, 320)
    np.testing.assert_allclose(wh, [[160, 80], [16, 64], [160, 320]])  # 640x320 -> 320x160


def test_kmeans_finds_planted_clusters_and_order_check():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 10.0], [0.0, 10.0]])
    pts = np.concatenate([c + rng.normal(0, 0.3, (50, 2)) for c in centres])
    found = kmeans(pts, 3, rng)
    assert np.allclose(np.sort(found, 0), np.sort(centres, 0), atol=0.2)
    model = tiny_model()
    head = model.head
    px = head.anchors * head.stride.view(-1, 1, 1)
    with torch.no_grad():  # largest pixel anchors on the smallest stride
        head.anchors.copy_(px.flip(0) / head.stride.view(-1, 1, 1))
    assert check_anchor_order(head) and not check_anchor_order(head)
    torch.testing.assert_close(head.anchors * head.stride.view(-1, 1, 1), px)
