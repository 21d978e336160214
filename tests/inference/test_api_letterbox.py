"""Python API: exact letterbox inverse on non-square images, Result helpers, source handling."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

import modyolo
from modyolo.api import Detector
from modyolo.data.augment import PAD_VALUE
from modyolo.inference.predictor import letterbox_image
from modyolo.inference.results import Result

FILL = 200  # the original image's constant colour; the letterbox pad is PAD_VALUE (114)


class ContentBoxModel(torch.nn.Module):
    """Stub detector: finds where the (constant-colour) original lies in its letterboxed input by
    reading pixels, and predicts two boxes there: the whole content and its middle half.

    Output is yolov5's inference contract ``[1, 2, 5 + 2]`` (cx, cy, w, h input px, obj, 2 classes).
    """

    def forward(self, x: torch.Tensor):
        content = (x[0, 0] * 255 - FILL).abs() < 1  # [H, W] bool: pixels of the original
        ys, xs = content.any(1).nonzero()[:, 0], content.any(0).nonzero()[:, 0]
        x1, x2 = float(xs.min()), float(xs.max() + 1)  # pixel edges, not centres
        y1, y2 = float(ys.min()), float(ys.max() + 1)
        w, h = x2 - x1, y2 - y1
        whole = [x1 + w / 2, y1 + h / 2, w, h, 1.0, 0.9, 0.0]
        middle = [x1 + w / 2, y1 + h / 2, w / 2, h / 2, 1.0, 0.0, 0.8]
        return torch.tensor([[whole, middle]]), None


def stub_detector() -> Detector:
    meta = {"format": "stub", "path": "stub", "stride": 32, "nc": 2, "dynamic": True, "imgsz": None}
    return Detector(ContentBoxModel(), ["whole", "middle"], meta, torch.device("cpu"))


@pytest.mark.parametrize("hw", [(97, 203), (203, 97), (64, 64), (33, 250)])
@pytest.mark.parametrize("imgsz", [64, 96, 320])
def test_letterbox_inverse_is_exact(hw, imgsz):
    h0, w0 = hw
    img = np.full((h0, w0, 3), FILL, np.uint8)
    det = stub_detector()
    for auto in (True, False):
        # dynamic -> minimal stride padding; fixed (an export's metadata) -> exactly imgsz x imgsz
        det.meta.update(dynamic=auto, imgsz=None if auto else (imgsz, imgsz))
        (r,) = det.predict(img, conf=0.1, imgsz=imgsz, agnostic=True)
        assert r.orig_shape == (h0, w0)
        by_class = {int(c): b for c, b in zip(r.class_ids, r.boxes)}
        np.testing.assert_allclose(by_class[0], [0, 0, w0, h0], atol=1e-3)
        np.testing.assert_allclose(by_class[1], [w0 / 4, h0 / 4, 3 * w0 / 4, 3 * h0 / 4], atol=1e-3)


def test_letterbox_geometry_matches_pixels():
    img = np.full((97, 203, 3), FILL, np.uint8)
    padded, lb = letterbox_image(img, 96, stride=32, auto=False)
    assert padded.shape[:2] == lb.input_shape == (96, 96)
    content = np.argwhere(np.abs(padded[..., 0].astype(int) - FILL) < 1)
    (top, left), (bottom, right) = content.min(0), content.max(0) + 1
    assert (lb.top, lb.left) == (top, left)
    assert lb.new_shape == (bottom - top, right - left)
    assert padded[0, 0, 0] == PAD_VALUE and padded[-1, -1, 0] == PAD_VALUE  # odd pad: 1 px more at the bottom
    box = np.array([[10.0, 20.0, 150.0, 90.0]])
    np.testing.assert_allclose(lb.to_original(lb.to_input(box), clip=False), box, atol=1e-9)


def test_result_helpers(tmp_path):
    img = np.full((97, 203, 3), FILL, np.uint8)
    (r,) = stub_detector().predict([img], conf=0.1, agnostic=True)
    assert len(r) == 2 and r.summary() == "1 whole, 1 middle"
    annotated = r.plot()
    assert annotated.shape == img.shape and annotated.dtype == np.uint8 and (annotated != img).any()
    assert (img == FILL).all()  # plot draws on a copy
    data = json.loads(r.to_json())
    assert data["orig_shape"] == [97, 203] and {d["name"] for d in data["detections"]} == {"whole", "middle"}
    lines = r.save_txt(tmp_path / "a.txt", save_conf=True).read_text().splitlines()
    rows = sorted([float(v) for v in line.split()] for line in lines)
    np.testing.assert_allclose(rows[0][:5], [0, 0.5, 0.5, 1, 1], atol=1e-5)
    np.testing.assert_allclose(rows[1][:5], [1, 0.5, 0.5, 0.5, 0.5], atol=1e-5)
    assert len(rows[0]) == 6
    crops = r.save_crops(tmp_path / "crops", "a")
    assert sorted(p.parent.name for p in crops) == ["middle", "whole"]


def test_predict_reports_and_skips_unreadable(tmp_path, caplog):
    cv2.imwrite(str(tmp_path / "good.png"), np.full((50, 70, 3), FILL, np.uint8))
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    det = stub_detector()
    with caplog.at_level("WARNING", logger="modyolo"):
        results = det.predict(tmp_path, conf=0.1)
    assert [r.path.endswith("good.png") for r in results] == [True]
    assert len(det.skipped) == 1 and det.skipped[0][0].endswith("bad.jpg")
    assert "bad.jpg" in caplog.text and "skipped" in caplog.text


def test_load_checkpoint_predict_val_info(checkpoint, shapes, tmp_path):
    model = modyolo.load(checkpoint)
    assert model.names == ["circle", "square", "triangle", "star", "cross"]
    assert model.meta["format"] == "checkpoint" and model.meta["has_ema"]
    results = model.predict(str(shapes.parent / "images" / "val"), conf=0.001, imgsz=64)
    assert len(results) == 4
    for r in results:  # boxes are in original pixels: inside each image
        h, w = r.orig_shape
        assert (r.boxes[:, [0, 2]] <= w).all() and (r.boxes[:, [1, 3]] <= h).all() and (r.boxes >= 0).all()
    summary = model.val(data=shapes, imgsz=64, batch_size=4, workers=0, plots=False, project=tmp_path, progress=False)
    assert set(summary) >= {"precision", "recall", "mAP50", "mAP50-95", "speed"}
    assert model.info(64, verbose=False)["parameters"] > 0


def test_lazy_public_api():
    assert modyolo.__version__
    assert {"load", "train", "DetectionModel", "Result"} <= set(dir(modyolo))
    assert modyolo.Result is Result
    with pytest.raises(AttributeError):
        modyolo.not_a_name  # noqa: B018


def test_load_yaml_gives_fresh_model():
    model = modyolo.load("yolov5n.yaml")
    assert model.meta["format"] == "yaml" and len(model.names) == model.meta["nc"]


def test_tta_maps_flipped_and_scaled_boxes_back():
    from modyolo.inference.predictor import letterbox_image, to_tensor, tta_forward

    img = np.full((97, 203, 3), FILL, np.uint8)
    padded, lb = letterbox_image(img, 128, auto=True)
    pred = tta_forward(ContentBoxModel(), to_tensor(padded, torch.device("cpu")), stride=32)
    assert pred.shape == (1, 6, 7)  # 2 boxes from each of the 3 passes
    whole = pred[0, 0::2, :4]  # (cx, cy, w, h) of the content box per pass, in the input's pixels
    # the flipped, 0.83-scaled and 0.67-scaled passes find the content where the unscaled one does
    # (up to a pixel or two of resampling at the content edges, divided back by the scale)
    assert (whole[1:] - whole[0]).abs().max() < 3
