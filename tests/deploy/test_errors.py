"""A block that cannot be exported fails naming its layer, block and reason — not a stack trace."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from modyolo.deploy.diagnose import ExportError
from modyolo.deploy.export import export
from modyolo.nn.model import DetectionModel
from modyolo.nn.registry import BLOCKS
from modyolo.nn.row import YamlBlock

from .tiny import IMG, tiny_cfg, tiny_model

FFT_BLOCK = "DeployTestSpectralGate"  # unique names: the registry is global to the test session
PYOP_BLOCK = "DeployTestPythonOpGate"


class SpectralGate(YamlBlock, nn.Module):
    """1x1 conv gated by its FFT energy: fine in PyTorch and TorchScript, no ONNX equivalent."""

    def __init__(self, c1: int, c2: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y * torch.fft.rfft2(y).abs().mean((2, 3), keepdim=True).sigmoid()


class _Double(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x * 2


class PythonOpGate(YamlBlock, nn.Module):
    """A Python autograd.Function (a custom kernel stand-in): TorchScript cannot save it."""

    def __init__(self, c1: int, c2: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _Double.apply(self.conv(x))


@pytest.fixture(scope="module")
def registered():
    # Registered at run time, after collection, so registry-parametrised contract tests never see them.
    for name, cls in ((FFT_BLOCK, SpectralGate), (PYOP_BLOCK, PythonOpGate)):
        if name not in BLOCKS:
            BLOCKS.add(name, cls)


def _model_with(block: str) -> DetectionModel:
    cfg = tiny_cfg("yolov5n.yaml")
    assert cfg["backbone"][9][2] == "SPPF"
    cfg["backbone"][9] = [-1, 1, block, [1024]]  # same channels as the SPPF it replaces
    return DetectionModel(cfg).eval()


def test_onnx_error_names_layer_block_and_reason(registered, tmp_path):
    model = _model_with(FFT_BLOCK)
    with pytest.raises(ExportError) as info:
        export(model, include=("onnx",), imgsz=IMG, out_dir=tmp_path)
    msg = str(info.value)
    assert f"layer 9 ({FFT_BLOCK}, class SpectralGate) of yolov5n.yaml" in msg
    assert "fft_rfft2" in msg and "Fix:" in msg
    assert len(msg) < 700  # a sentence, not an IR dump
    assert info.value.__cause__ is not None  # the exporter's own error stays reachable
    assert not (tmp_path / "yolov5n.onnx").exists()  # no half-written file left behind


def test_torchscript_error_names_layer(registered, tmp_path):
    model = _model_with(PYOP_BLOCK)
    with pytest.raises(ExportError, match=rf"TorchScript export failed at layer 9 \({PYOP_BLOCK}"):
        export(model, include=("torchscript",), imgsz=IMG, out_dir=tmp_path)


def test_dynamic_conv_exports_fixed_but_names_its_layer_when_dynamic(tmp_path):
    model = tiny_model("yolov5l-dynamic.yaml")
    export(model, include=("onnx",), imgsz=IMG, batch_size=2, out_dir=tmp_path)  # fixed batch: fine
    with pytest.raises(ExportError, match=r"layer 10 \(Dynamic_conv2d.*drop --dynamic"):
        export(model, include=("onnx",), imgsz=IMG, dynamic=True, out_dir=tmp_path)


def test_image_size_not_a_stride_multiple_suggests_one(tmp_path):
    with pytest.raises(ValueError, match=r"multiple of the model's stride 32; use --img 96 64"):
        export(tiny_model(), include=("onnx",), imgsz=(90, 64), out_dir=tmp_path)


def test_unknown_format_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown export format.*'tflite'"):
        export(tiny_model(), include=("tflite",), imgsz=IMG, out_dir=tmp_path)
