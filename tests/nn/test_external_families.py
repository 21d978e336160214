"""Every torchvision classifier family that exposes stages, and a few timm models, either build as
a TorchVision / Timm row with strides 8/16/32 and train (forward + backward at 64 px), or are
refused with a one-line message saying why and what to use instead. ``weights=None``: nothing is
downloaded. The heavier models are marked ``slow`` (CI runs them all the same)."""

import copy
import logging

import pytest
import torch

from modyolo.nn.graph import load_model_yaml
from modyolo.nn.model import DetectionModel
from modyolo.nn.row import ModelConfigError

SLOW = pytest.mark.slow


def detector(module: str, name: str, out=(2, 3, 4)) -> dict:
    """yolov5s-torchvision-resnet50.yaml (a row, three Index rows, a yolov5 head) with another trunk."""
    cfg, _ = load_model_yaml("yolov5s-torchvision-resnet50.yaml")
    cfg = copy.deepcopy(cfg)
    cfg.update({"nc": 2, "width_multiple": 0.125})
    cfg["backbone"][0] = [-1, 1, module, [name, list(out)]]
    return cfg


def builds_and_trains(module: str, name: str) -> DetectionModel:
    model = DetectionModel(detector(module, name))
    assert model.stride.tolist() == [8.0, 16.0, 32.0]
    assert model.report[0].stride == [8, 16, 32]
    model.train()
    out = model(torch.rand(2, 3, 64, 64))
    assert [tuple(o.shape[2:4]) for o in out] == [(8, 8), (4, 4), (2, 2)]
    sum(o.mean() for o in out).backward()
    trunk = [p for p in model.model[0].parameters() if p.requires_grad]
    assert trunk and all(p.grad is not None for p in trunk)  # pruned: nothing without a gradient
    return model


TORCHVISION_BUILD = [
    "resnet18",
    "resnext50_32x4d",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "regnet_x_400mf",
    "regnet_y_400mf",
    "shufflenet_v2_x0_5",
    "mnasnet0_5",
    "googlenet",
    pytest.param("efficientnet_v2_s", marks=SLOW),
    pytest.param("convnext_tiny", marks=SLOW),
    pytest.param("swin_t", marks=SLOW),
    pytest.param("swin_v2_t", marks=SLOW),
    pytest.param("densenet121", marks=SLOW),
    pytest.param("wide_resnet50_2", marks=SLOW),
]


@pytest.mark.parametrize("name", TORCHVISION_BUILD)
def test_torchvision_family_builds_with_strides_8_16_32(name):
    builds_and_trains("TorchVision", name)


@SLOW
def test_swin_stages_come_out_nchw():
    """Swin's stages return [B, H, W, C]; a 64-px input must give [B, C, 8, 8] ... not H=C."""
    model = DetectionModel(detector("TorchVision", "swin_t"))
    row = model.model[0]
    assert row.nhwc and model.report[0].channels == [192, 384, 768]
    maps = row(torch.rand(1, 3, 64, 64))
    assert [tuple(m.shape) for m in maps] == [(1, 192, 8, 8), (1, 384, 4, 4), (1, 768, 2, 2)]


@pytest.mark.parametrize(
    "name, why",
    [
        ("vit_b_16", "plain vision transformer.*no feature pyramid"),
        ("maxvit_t", "fixed to its 224-px training size"),
        ("inception_v3", "unpadded convolutions"),
        ("alexnet", "no feature map at stride 8.*none of its maps is at a power-of-two stride"),
        ("squeezenet1_1", "no feature map at stride 8"),
    ],
)
def test_torchvision_families_without_a_pyramid_are_refused_with_what_to_use(name, why):
    with pytest.raises(ModelConfigError, match=rf"layer 0 \(TorchVision\).*{name}.*{why}.*use a CNN with stages") as e:
        DetectionModel(detector("TorchVision", name))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "name", ["resnet18", "mobilenetv3_small_050", "convnext_atto", "efficientnet_b0", "regnetx_002"]
)
def test_timm_model_builds_with_strides_8_16_32(name):
    pytest.importorskip("timm")
    model = builds_and_trains("Timm", name)
    assert model.model[0].net.feature_info.reduction() == [8, 16, 32]


def test_timm_out_indices_mean_strides_as_for_torchvision():
    """ConvNeXt's feature_info starts at stride 4: timm's own index 2 would be stride 16, and
    [2, 3, 4] overflowed with an IndexError. The row's index i is stride 2**(i+1) for every model."""
    pytest.importorskip("timm")
    model = DetectionModel(detector("Timm", "convnext_atto"))
    assert model.model[0].timm_indices == [1, 2, 3] and model.report[0].stride == [8, 16, 32]
    with pytest.raises(
        ModelConfigError,
        match=r"convnext_atto has no feature map at stride 2 \(out index 0\); "
        r"its maps are at out indices 1 \(stride 4\), 2 \(stride 8\)",
    ):
        DetectionModel(detector("Timm", "convnext_atto", out=(0, 2, 3)))


def test_timm_vit_is_refused_for_its_missing_pyramid():
    pytest.importorskip("timm")
    with pytest.raises(
        ModelConfigError,
        match=r"layer 0 \(Timm\).*no feature pyramid: all its feature maps are at "
        r"stride 16.*use a CNN with stages",
    ):
        DetectionModel(detector("Timm", "vit_tiny_patch16_224"))


def test_indices_that_do_not_give_8_16_32_are_flagged_naming_layer_indices_and_strides(caplog):
    """torchvision convnext_tiny with [1, 2, 3] gives strides 4/8/16: say so, and which indices give 8/16/32.
    The yolov5 head after it (anchors for P3/8-P5/32) does not fit those strides either."""
    rows = [[-1, 1, "TorchVision", ["convnext_tiny", [1, 2, 3]]]]
    with caplog.at_level(logging.WARNING, logger="modyolo"):
        model = DetectionModel(
            {"nc": 2, "depth_multiple": 1.0, "width_multiple": 1.0, "anchors": 3, "backbone": rows, "head": []}
        )
    assert model.report[0].stride == [4, 8, 16]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "layer 0 (TorchVision)" in m and "out_indices [1, 2, 3]" in m and "strides 4/8/16" in m and "[2, 3, 4]" in m
        for m in warned
    ), warned
