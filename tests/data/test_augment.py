from __future__ import annotations

import numpy as np
import pytest

from modyolo.data import augment as A

ZERO = {**A.DEFAULT_AUG, "translate": 0.0, "scale": 0.0, "degrees": 0.0, "shear": 0.0, "perspective": 0.0}


def _white_box_image(h=80, w=120, box=(30, 20, 70, 60)):
    img = np.zeros((h, w, 3), np.uint8)
    x1, y1, x2, y2 = box
    img[y1:y2, x1:x2] = 255
    cx, cy, bw, bh = (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h
    return img, np.array([[1, cx, cy, bw, bh]], np.float32)


def test_letterbox_modes():
    img = np.zeros((50, 100, 3), np.uint8)
    out, ratio, pad = A.letterbox(img, 64)
    assert out.shape == (64, 64, 3) and ratio == (0.64, 0.64) and pad == (0.0, 16.0)
    out, _, pad = A.letterbox(img, 64, auto=True, stride=32)
    assert out.shape == (32, 64, 3) and pad == (0.0, 0.0)
    out, ratio, _ = A.letterbox(img, 64, scale_fill=True)
    assert out.shape == (64, 64, 3) and ratio == (0.64, 1.28)
    out, ratio, _ = A.letterbox(np.zeros((20, 30, 3), np.uint8), 64, scaleup=False)
    assert ratio == (1.0, 1.0) and out.shape == (64, 64, 3)


@pytest.mark.parametrize("seed", range(5))
def test_mosaic_boxes_cover_the_objects(seed):
    """Whatever the warp, every box must enclose white pixels and every white blob a box."""
    rng = np.random.default_rng(seed)
    p = {**A.DEFAULT_AUG, "degrees": 10.0, "shear": 5.0, "perspective": 0.0005}
    imgs, labels = zip(*[_white_box_image() for _ in range(4)])
    out, lab = A.mosaic4(imgs, labels, 128, p, rng)
    assert out.shape == (128, 128, 3) and lab.shape[1] == 5
    white = out.max(2) > 200
    covered = np.zeros_like(white)
    for _, x1, y1, x2, y2 in lab:
        assert 0 <= x1 < x2 <= 128 and 0 <= y1 < y2 <= 128
        patch = white[int(y1) : int(np.ceil(y2)), int(x1) : int(np.ceil(x2))]
        assert patch.mean() > 0.3  # the box is mostly object
        covered[max(int(y1) - 1, 0) : int(np.ceil(y2)) + 1, max(int(x1) - 1, 0) : int(np.ceil(x2)) + 1] = True
    # objects without a box may only be slivers cut to < 10% of their (scaled) area (box_candidates)
    import cv2

    n, _, stats, _ = cv2.connectedComponentsWithStats((white & ~covered).astype(np.uint8))
    assert all(area < 0.1 * 40 * 40 * 1.5**2 for area in stats[1:, cv2.CC_STAT_AREA])


def test_random_perspective_identity_keeps_boxes():
    img, lb = _white_box_image()
    xyxy = np.array([[1, 30, 20, 70, 60]], np.float32)
    out, lab = A.random_perspective(img, xyxy, {**ZERO, "translate": 0.0}, np.random.default_rng(0))
    assert np.array_equal(out, img) and np.allclose(lab, xyxy)


def test_box_candidates_filters_slivers():
    before = np.array([[0, 0, 100, 100], [0, 0, 100, 100], [0, 0, 100, 100]], np.float32)
    after = np.array([[0, 0, 90, 90], [0, 0, 1, 90], [0, 0, 20, 20]], np.float32)
    assert A.box_candidates(before, after).tolist() == [True, False, False]


def test_flip_updates_labels():
    img, lb = _white_box_image()
    lb2 = lb.copy()  # cls, cx, cy, w, h
    out = A.random_flip(img, lb2, flipud=1.0, fliplr=1.0, rng=np.random.default_rng(0))
    assert np.array_equal(out, img[::-1, ::-1])
    assert np.allclose(lb2[0, 1:3], 1 - lb[0, 1:3]) and np.allclose(lb2[0, 3:], lb[0, 3:])


def test_hsv_changes_colour_in_place_and_is_seeded():
    img = np.full((8, 8, 3), (40, 120, 200), np.uint8)
    a, b = img.copy(), img.copy()
    A.augment_hsv(a, 0.5, 0.5, 0.5, np.random.default_rng(1))
    A.augment_hsv(b, 0.5, 0.5, 0.5, np.random.default_rng(1))
    assert np.array_equal(a, b) and not np.array_equal(a, img)


def test_copy_paste_adds_boxes_and_drops_covered():
    rng = np.random.default_rng(0)
    img = np.zeros((64, 64, 3), np.uint8)
    labels = np.array([[0, 10, 10, 20, 20]], np.float32)  # 10x10 box
    donor = np.full((64, 64, 3), 200, np.uint8)
    donor_labels = np.array([[2, 0, 0, 64, 64]], np.float32)  # pasting it covers everything
    _, out = A.copy_paste_boxes(img, labels, donor, donor_labels, 1.0, rng)
    assert out[:, 0].tolist() == [2] and (img == 200).all()
    img = np.zeros((64, 64, 3), np.uint8)
    _, out = A.copy_paste_boxes(img, labels, donor, np.array([[2, 0, 0, 4, 4]], np.float32), 1.0, rng)
    assert sorted(out[:, 0].tolist()) == [0, 2]


def test_mixup_concatenates_labels():
    a, b = np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), 200, np.uint8)
    la, lb = np.ones((2, 5), np.float32), np.zeros((1, 5), np.float32)
    img, lab = A.mixup(a, la, b, lb, np.random.default_rng(0))
    assert len(lab) == 3 and 60 < img.mean() < 140


def test_aug_params_takes_only_aug_keys():
    p = A.aug_params({"mosaic": 0.0, "lr0": 0.01})
    assert p["mosaic"] == 0.0 and "lr0" not in p and p["fliplr"] == 0.5
