"""Parity with the yolov5 package on the same YAML: parameter count, GFLOPs, strict state_dict
loading and identical outputs (unfused and fused)."""

import warnings

import pytest
import torch

from modyolo.nn.graph import resolve_cfg_path
from modyolo.nn.model import DetectionModel

yolo = pytest.importorskip(
    "yolov5.models.yolo", reason="the yolov5==7.0.14 peer is not installed (make test installs it from tests/peers.txt)"
)


def randomise_bn(state_dict: dict) -> dict:
    """BN statistics away from their defaults, so the comparison sees eps and momentum choices."""
    g = torch.Generator().manual_seed(1)
    out = {}
    for k, v in state_dict.items():
        if k.endswith("running_var"):
            v = torch.rand(v.shape, generator=g) + 0.5
        elif k.endswith("running_mean"):
            v = torch.rand(v.shape, generator=g) - 0.5
        out[k] = v
    return out


@pytest.mark.parametrize("name", ["yolov5n.yaml", "yolov5s.yaml", "yolov5s-v5.yaml"])
def test_state_dict_loads_strictly_and_outputs_agree(name):
    torch.manual_seed(0)
    path = str(resolve_cfg_path(name))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = yolo.Model(path)
    ours = DetectionModel(path)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    state = randomise_bn(ref.state_dict())
    ref.load_state_dict(state)
    ours.load_state_dict(state, strict=True)
    ref.eval(), ours.eval()
    x = torch.rand(2, 3, 160, 128)
    with torch.no_grad():
        torch.testing.assert_close(ours(x)[0], ref(x)[0], atol=1e-4, rtol=1e-4)
        ref.fuse(), ours.fuse()
        torch.testing.assert_close(ours(x)[0], ref(x)[0], atol=1e-4, rtol=1e-4)


def yolov5_gflops(model, img_size: int = 640) -> float:
    """GFLOPs as yolov5's model_info computes them: thop at the max stride, scaled to img_size."""
    import copy

    thop = pytest.importorskip("thop", reason="thop (yolov5's FLOP counter) is not installed")
    stride = int(model.stride.max())
    x = torch.zeros(1, 3, stride, stride)
    flops = thop.profile(copy.deepcopy(model), inputs=(x,), verbose=False)[0] / 1e9 * 2
    return flops * (img_size / stride) ** 2


@pytest.mark.parametrize("name,expected", [("yolov5n.yaml", 1872157), ("yolov5s.yaml", 7235389)])
def test_param_count_and_gflops_match_yolov5(name, expected):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = yolo.Model(str(resolve_cfg_path(name)))
    assert sum(p.numel() for p in ref.parameters()) == expected
    info = DetectionModel(name).info(640, verbose=False)
    assert info["parameters"] == expected
    # thop counts a few ops (upsample, concat, pooling) differently from torch's flop counter,
    # hence the 3% tolerance.
    theirs = yolov5_gflops(ref)
    assert abs(info["gflops"] - theirs) / theirs < 0.03, (info["gflops"], theirs)
