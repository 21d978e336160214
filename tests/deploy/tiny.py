"""Tiny detectors for the export tests: every shipped config, scaled down to export in ~1 s."""

from __future__ import annotations

import torch

from modyolo.nn.graph import load_model_yaml
from modyolo.nn.model import DetectionModel

IMG = 64  # export size: two stride-32 cells, enough for every level of the heads
# Whole external backbones ignore width_multiple; swap in the smallest member of the same family
# (same adapter, same Index rows) so the test exercises the adapter's export, not ResNet-50's size.
SMALLER_EXTERNAL = {"TorchVision": "resnet18", "Timm": "mobilenetv3_small_050"}


def tiny_cfg(name: str, nc: int = 3) -> dict:
    """The shipped YAML ``name`` at width 1/16, depth 0.2 and ``nc`` classes."""
    cfg, _ = load_model_yaml(name)
    cfg.update(width_multiple=0.0625, depth_multiple=0.2, nc=nc)
    for row in cfg["backbone"]:
        if row[2] in SMALLER_EXTERNAL and row[3]:
            row[3] = [SMALLER_EXTERNAL[row[2]], *row[3][1:]]
    return cfg


def tiny_model(name: str = "yolov5n.yaml", nc: int = 3, seed: int = 0) -> DetectionModel:
    """A randomly initialised tiny model with BN statistics away from their defaults.

    Non-default BN statistics make the test see whether fusing (done by the exporter) is exact.
    """
    torch.manual_seed(seed)
    model = DetectionModel(tiny_cfg(name, nc))
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    model.names = [f"class{i}" for i in range(nc)]
    return model.eval()


def assert_pred_close(out: torch.Tensor, ref: torch.Tensor) -> None:
    """``[B, N, 5+nc]``: boxes (pixels) to 1e-3 px + 1e-4 relative; scores to 1e-4."""
    assert out.shape == ref.shape
    torch.testing.assert_close(out[..., :4], ref[..., :4], rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(out[..., 4:], ref[..., 4:], rtol=0, atol=1e-4)
