"""Fixtures for the deploy tests."""

from __future__ import annotations

import pytest

from .tiny import IMG, tiny_model


@pytest.fixture(scope="module")
def yolov5n_exports(tmp_path_factory):
    """(model, {"onnx": path, "torchscript": path}) for tiny yolov5n, fixed batch 1 at 64 px."""
    from modyolo.deploy.export import export

    model = tiny_model("yolov5n.yaml")
    out = tmp_path_factory.mktemp("v5n")
    return model, export(model, include=("onnx", "torchscript"), imgsz=IMG, out_dir=out)
