"""Backbone blocks and every shipped config: strides 8/16/32, forward+backward at 64 and 128 px,
fusing, the recipe spellings, and build-time errors for YAMLs that tap the wrong layers."""

import copy

import pytest
import torch

from modyolo.nn.graph import load_model_yaml, shipped_configs
from modyolo.nn.model import DetectionModel
from modyolo.nn.row import ModelConfigError

STEM = [-1, 1, "Conv", [32, 3, 1]]


def small(name: str, **overrides) -> dict:
    """A shipped config at width 0.125 (native backbones shrink; TorchVision/Timm rows cannot)."""
    cfg, _ = load_model_yaml(name)
    cfg = copy.deepcopy(cfg)
    cfg.update({"width_multiple": 0.125, "depth_multiple": min(cfg.get("depth_multiple", 1.0), 0.33), "nc": 3})
    cfg.update(overrides)
    return cfg


def tiny_model(rows: list, head: list | None = None, width: float = 1.0) -> DetectionModel:
    return DetectionModel(
        {"nc": 2, "depth_multiple": 1.0, "width_multiple": width, "anchors": 3, "backbone": rows, "head": head or []}
    )


def maps_and_loss(out) -> tuple[list[torch.Tensor], torch.Tensor]:
    """(the maps the head reads, a scalar touching every output) for the anchor-based heads' list
    and the anchor-free heads' dict(s) of ``boxes``/``scores``/``feats`` (end-to-end: two branches)."""
    if not isinstance(out, dict):
        return out, sum(o.mean() for o in out)
    branches = [out[k] for k in ("one2many", "one2one") if k in out] or [out]
    return branches[0]["feats"], sum(b["boxes"].mean() + b["scores"].mean() for b in branches)


@pytest.mark.parametrize("name", shipped_configs())
def test_shipped_config_trains_and_has_strides_8_16_32(name):
    if "timm" in name:
        pytest.importorskip("timm")  # an optional extra
    model = DetectionModel(small(name))
    assert model.stride.tolist() == [8.0, 16.0, 32.0]
    model.train()
    for size in (64, 128):
        maps, loss = maps_and_loss(model(torch.rand(2, 3, size, size)))
        assert [o.shape[2] for o in maps] == [size // 8, size // 16, size // 32]
        loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize(
    "name",
    [
        "yolov5s-resnet18.yaml",
        "yolov5s-resnet50.yaml",
        "yolov5-mobilenetv2.yaml",
        "yolov5s-hgnetv2.yaml",
        "yolov5l-dynamic.yaml",
        "yolov5s-torchvision-resnet50.yaml",
    ],
)
def test_fused_model_gives_the_same_detections(name):
    torch.manual_seed(0)
    model = DetectionModel(small(name))
    model.train()
    model(torch.rand(4, 3, 64, 64))  # move BN statistics away from identity so folding matters
    model.eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        before = model(x)[0]
        after = model.fuse()(x)[0]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # torchvision's too
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)


def test_recipe_basicblock_rows_build_as_resnet_stages():
    rows = [
        [-1, 1, "Conv", [64, 7, 2, 3]],
        [-1, 1, "nn.MaxPool2d", [3, 2, 1]],
        [-1, 2, "BasicBlock", [64]],
        [-1, 2, "BasicBlock", [128, 2]],
        [-1, 2, "BasicBlock", [256, 2]],
        [-1, 2, "BasicBlock", [512, 2]],
    ]
    model = tiny_model(rows, width=0.25)
    assert [r.stride for r in model.report] == [2, 4, 4, 8, 16, 32]  # the stride is applied once per stage
    stage = model.model[3]
    assert len(stage) == 2
    assert stage[0].conv1.stride == (2, 2) and stage[0].downsample is not None  # projected shortcut
    assert stage[1].conv1.stride == (1, 1) and stage[1].downsample is None  # identity shortcut
    assert model.model[2][0].downsample is None  # layer1: 64 -> 64 at stride 1


def test_resnet_bottleneck_widths_and_depth_scaling():
    model = DetectionModel(
        {
            "nc": 2,
            "depth_multiple": 0.5,
            "width_multiple": 1.0,
            "anchors": 3,
            "head": [],
            "backbone": [[-1, 1, "ResNetStem", [64]], [-1, 4, "ResNetBottleneck", [256]]],
        }
    )
    stage = model.model[1]
    assert len(stage) == 2  # 4 blocks x depth 0.5
    assert stage[0].conv1.out_channels == 64 and stage[0].conv3.out_channels == 256
    assert model.report[-1].channels == 256 and model.report[-1].stride == 4


def test_resnet_row_errors_name_the_layer():
    with pytest.raises(ModelConfigError, match=r"layer 1 \(BasicBlock\).*\[c2\] or \[c2, stride\]"):
        tiny_model([STEM, [-1, 1, "BasicBlock", [64, 2, 3]]])
    with pytest.raises(ModelConfigError, match="stride must be a positive integer"):
        tiny_model([STEM, [-1, 1, "BasicBlock", [64, 0]]])


def test_inverted_residual_as_the_recipe_writes_it():
    rows = [
        [-1, 1, "ConvBNReLU", [32, 3, 2]],
        [-1, 1, "InvertedResidual", [16, 1, 1]],
        [-1, 1, "InvertedResidual", [24, 2, 6]],
        [-1, 1, "InvertedResidual", [24, 1, 6]],
    ]
    model = tiny_model(rows)
    expand1, down, same = model.model[1], model.model[2], model.model[3]
    assert len(expand1.conv) == 2 and not expand1.use_residual  # no 1x1 expansion when t == 1; 32 != 16
    assert len(down.conv) == 3 and not down.use_residual  # stride 2
    assert same.use_residual and same.conv[0].conv.out_channels == 24 * 6
    assert [r.stride for r in model.report] == [2, 2, 4, 4]
    assert isinstance(model.model[0].act, torch.nn.ReLU6)


def test_inverted_residual_repeated_row_strides_once():
    model = tiny_model([STEM, [-1, 3, "InvertedResidual", [32, 2, 6]]])
    assert model.report[-1].stride == 2 and len(model.model[1]) == 3
    with pytest.raises(ModelConfigError, match=r"\[c2, stride, expand_ratio\]"):
        tiny_model([STEM, [-1, 1, "InvertedResidual", [24, 2]]])


def test_hgblock_shortcut_and_dense_aggregation():
    model = tiny_model([STEM, [-1, 3, "HGBlock", [16, 32, 3, True, True, True]]])
    block = model.model[1]
    assert len(block.m) == 3 and block.add  # c1 == c2 == 32 so the shortcut applies
    assert block.sc.conv.in_channels == 32 + 3 * 16


def test_concat_of_a_wrong_stride_tap_fails_at_build_naming_both_layers():
    cfg = small("yolov5s-resnet18.yaml")
    cfg["head"][6] = [[-1, 1], 1, "Concat", [1]]  # P3 concat tapping layer1 (stride 4) instead of layer2
    with pytest.raises(
        ModelConfigError, match=r"layer 12 \(Concat\).*layer 11 is 32x32 \(stride 8\).*layer 1 is 64x64"
    ):
        DetectionModel(cfg)


def test_detect_fed_in_the_wrong_order_fails_at_build():
    cfg = small("yolov5-mobilenetv2.yaml")
    cfg["head"][-1] = [[31, 28, 25], 1, "Detect", ["nc", "anchors"]]
    with pytest.raises(ModelConfigError, match=r"increasing strides.*layer 31 at stride 32"):
        DetectionModel(cfg)


def test_torchvision_row_errors():
    with pytest.raises(ModelConfigError, match="unknown torchvision classifier 'resnet05'; did you mean"):
        tiny_model([[-1, 1, "TorchVision", ["resnet05"]]])
    with pytest.raises(ModelConfigError, match="no feature map at stride 64"):
        tiny_model([[-1, 1, "TorchVision", ["resnet18", [5]]]])


def test_index_rows():
    rows = [[-1, 1, "TorchVision", ["mobilenet_v2", [2, 4]]], [0, 1, "Index", [-1]]]
    model = tiny_model(rows)
    assert model.report[0].channels == [32, 1280] and model.report[0].stride == [8, 32]
    assert model.report[1].channels == 1280
    assert not any(True for _ in model.model[0].net.classifier.parameters())  # classifier dropped
    with pytest.raises(ModelConfigError, match="index 2 is out of range"):
        tiny_model([rows[0], [0, 1, "Index", [2]]])
    with pytest.raises(ModelConfigError, match="returns 2 feature maps; add an Index row"):
        tiny_model([rows[0], [-1, 1, "Conv", [16, 3, 2]]])
    with pytest.raises(ModelConfigError, match="returns one"):
        tiny_model([STEM, [-1, 1, "Index", [0]]])
