"""report.html renders in a real headless browser (Chromium), and the page holds what it should.

Built from synthetic results (no training), so the test checks the page, not the models. Skips
when no Chromium is installed (``apt-get install chromium``).
"""

import os
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from modyolo.tools.compare_table import VariantResult
from modyolo.tools.latency import Latency, LatencyProtocol
from modyolo.tools.report import find_browser, render_screenshot, write_report
from modyolo.tools.variants import SampleSet

NAMES = ["circle", "square", "triangle"]


def _results() -> list[VariantResult]:
    px = np.linspace(0, 1, 1000)
    out = []
    for k, (name, quality, ms) in enumerate((("fast", 0.4, 8.0), ("accurate", 0.7, 20.0), ("worse", 0.3, 25.0))):
        r = VariantResult(name, f"{name}.yaml", params=1_000_000 * (k + 1), gflops=1.5 * (k + 1),
                          latency_torch=Latency(ms, ms * 0.9, ms * 1.2, 30, "channels_last"),
                          latency_onnx=Latency(ms / 2, ms / 2, ms / 2, 30, "onnx"), train_seconds=60.0 * (k + 1),
                          epochs=3, precision=quality, recall=quality, map50=quality + 0.2, map50_95=quality)
        r.per_class = {n: {"ap50": quality + 0.1 * j, "ap": quality - 0.05 * j, "instances": 10} for j, n in
                       enumerate(NAMES)}
        r.pr_curve = (px.tolist(), (1 - px * (1 - quality)).tolist())
        r.history = {"epoch": [0, 1, 2], "mAP50": [0.1, quality, quality + 0.2], "mAP50-95": [0.05, 0.2, quality],
                     "box_loss": [0.1, 0.08, 0.06], "obj_loss": [0.03, 0.02, 0.02], "cls_loss": [0.04, 0.03, 0.02],
                     "val_box_loss": [0.09, 0.07, 0.06], "val_obj_loss": [0.02] * 3, "val_cls_loss": [0.03] * 3}
        r.samples = [np.array([[20, 20, 60, 60, 0.9, 0]], np.float32)]
        out.append(r)
    failed = VariantResult("broken", "broken.yaml")
    failed.fail("build", ValueError("unknown module 'C3x' in layer 2 of broken.yaml; did you mean 'C3'?"))
    return out + [failed]


@pytest.fixture
def report(tmp_path):
    img = np.full((96, 128, 3), 200, np.uint8)
    cv2.circle(img, (40, 40), 20, (30, 60, 220), -1)
    path = tmp_path / "val_0.jpg"
    cv2.imwrite(str(path), img)
    samples = SampleSet([str(path)], [np.array([[0, 20, 20, 60, 60]], np.float32)])
    return write_report(_results(), LatencyProtocol(imgsz=320), tmp_path, sample_set=samples, names=NAMES,
                        train={"epochs": 3, "imgsz": 320})


def test_page_content(report):
    page = report.read_text()
    assert page.startswith("<!DOCTYPE html>") and not re.search(r"https?://|<script|<link", page, re.I)
    assert page.count("data:image/png;base64,") == 4 and page.count("data:image/jpeg;base64,") == 4
    assert "unknown module &#x27;C3x&#x27;" in page  # the failed variant's error, escaped
    assert re.search(r'<td class="best">0\.700</td>', page)  # the best mAP50-95 is marked
    for stem in ("pr_curves", "pareto", "per_class_ap", "training_curves"):
        assert (report.parent / f"{stem}.png").stat().st_size > 10_000


@pytest.mark.skipif(find_browser() is None, reason="no Chromium on PATH (apt-get install chromium)")
def test_renders_in_headless_chromium(report, tmp_path):
    # `make report-check` sets MODYOLO_SCREENSHOT_DIR so a person can look at the screenshot.
    out_dir = Path(os.environ.get("MODYOLO_SCREENSHOT_DIR") or tmp_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    png = render_screenshot(report, out_dir / "report_screenshot.png", width=1400, height=3000)
    img = cv2.imread(str(png))
    assert img is not None and img.shape[:2] == (3000, 1400)
    top = img[:600]
    assert (top < 128).any(axis=2).mean() > 0.002  # text and table lines were drawn, not a blank page
    # The embedded figures rendered as pictures: many distinct colours appear below the table.
    colours = np.unique(img[600:].reshape(-1, 3) // 32, axis=0)
    assert len(colours) > 20
