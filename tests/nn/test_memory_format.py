"""``DetectionModel.to(memory_format=...)`` with parameters of other ranks (dynamic conv's 5-D
kernel bank): PyTorch's own conversion raised "required rank 4 tensor to use channels_last format"."""

import copy

import torch

from modyolo.nn.graph import load_model_yaml
from modyolo.nn.model import DetectionModel


def _tiny_dynamic() -> DetectionModel:
    cfg, _ = load_model_yaml("yolov5l-dynamic.yaml")
    cfg = copy.deepcopy(cfg)
    cfg["width_multiple"], cfg["depth_multiple"] = 0.125, 0.33
    return DetectionModel(cfg, nc=3).eval()


def test_channels_last_converts_4d_tensors_and_keeps_dynamic_outputs():
    torch.manual_seed(0)
    model = _tiny_dynamic()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        want = model(x)[0]
    converted = copy.deepcopy(model).to(memory_format=torch.channels_last)
    banks = [p for p in converted.parameters() if p.dim() == 5]
    assert banks, "the dynamic config must have 5-D kernel banks for this test to mean anything"
    assert all(p.is_contiguous() for p in banks)
    convs = [p for p in converted.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    with torch.no_grad():
        got = converted(x.contiguous(memory_format=torch.channels_last))[0]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_to_with_dtype_and_memory_format_does_both_and_back():
    model = _tiny_dynamic()
    model.to(torch.float64, memory_format=torch.channels_last)
    assert all(p.dtype == torch.float64 for p in model.parameters())
    model.to(memory_format=torch.contiguous_format)
    assert all(p.is_contiguous() for p in model.parameters())
