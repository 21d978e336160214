"""Every shipped config exports to ONNX and TorchScript and matches PyTorch (the issue's 1e-4)."""

from __future__ import annotations

import pytest
import torch

from modyolo.deploy.backends import load_backend
from modyolo.deploy.export import export
from modyolo.nn.graph import shipped_configs

from .tiny import IMG, assert_pred_close, tiny_cfg, tiny_model


def _needs_optional(name: str) -> None:
    rows = tiny_cfg(name)["backbone"]
    if any(r[2] == "Timm" for r in rows):
        pytest.importorskip("timm", reason=f"{name} needs the optional package timm")


@pytest.mark.parametrize("name", shipped_configs())
def test_shipped_config_exports_and_matches_pytorch(name, tmp_path):
    _needs_optional(name)
    model = tiny_model(name)
    if not getattr(model.head, "needs_nms", True):  # NMS-free: an ONNX graph of final detections, which
        paths = export(model, include=("onnx",), imgsz=IMG, out_dir=tmp_path)  # export checks vs PyTorch
        backend = load_backend(paths["onnx"], threads=1)
        assert backend.end2end and backend.names == model.names
        return
    paths = export(model, include=("onnx", "torchscript"), imgsz=IMG, out_dir=tmp_path)
    assert model.model[-1].export is False and not model.fused  # the caller's model is untouched
    # A batch of 3 through a batch-1 export: the backend runs it in chunks.
    x = torch.rand(3, 3, IMG, IMG, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ref = model(x)[0]
    for kind, path in paths.items():
        backend = load_backend(path, threads=1)
        assert backend.kind == kind and backend.names == model.names
        assert_pred_close(backend(x), ref)
