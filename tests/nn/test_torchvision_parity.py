"""Pretrained backbones compute what their origin computes: a torchvision / timm state_dict with
random weights *and* random BatchNorm statistics, loaded into modyolo's native ResNet / MobileNetV2
rows or into a TorchVision / Timm row, reproduces the origin's stage outputs (max abs difference
<= 1e-4, eval mode). The reference is the origin's own ``forward`` of the whole classifier, with
forward hooks on the stage modules, not modyolo's way of calling them."""

import copy

import pytest
import torch
import torchvision
from torch import nn

from modyolo.nn.blocks.resnet import TORCHVISION_BN_EPS
from modyolo.nn.blocks.yolo import BN_EPS
from modyolo.nn.graph import load_model_yaml
from modyolo.nn.model import DetectionModel
from modyolo.nn.pretrained import load_backbone_weights

TOL = 1e-4


def _input() -> torch.Tensor:
    g = torch.Generator().manual_seed(123)
    return torch.rand(2, 3, 64, 64, generator=g) * 2 - 1


def randomise(net: nn.Module, seed: int = 0) -> nn.Module:
    """BN affine weights random, and BN running statistics random but realistic: first those of the
    net's own activations on a random batch (so activations stay O(1) through 100 layers, as in a
    trained net), then every channel's variance scaled by U(0.5, 2) and its mean shifted, so a
    wrong eps, a dropped buffer or a swapped tensor changes the outputs. Returns the net in eval mode."""
    g = torch.Generator().manual_seed(seed)

    def uniform(t: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
        return torch.rand(t.shape, generator=g) * (hi - lo) + lo

    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for m in bns:
            m.weight.copy_(uniform(m.weight, 0.5, 1.5))
            m.bias.copy_(uniform(m.bias, -0.2, 0.2))
            m.reset_running_stats()
            m.momentum = None  # a cumulative average: one batch sets the statistics
        net.train()
        net(torch.randn(4, 3, 64, 64, generator=g))
        for m in bns:
            m.momentum = 0.1
            m.running_var.mul_(uniform(m.running_var, 0.5, 2.0))
            m.running_mean.add_(uniform(m.running_mean, -0.3, 0.3) * m.running_var.sqrt())
    return net.eval()


def hooked(net: nn.Module, paths: list[str], x: torch.Tensor) -> list[torch.Tensor]:
    """Outputs of ``net``'s submodules at ``paths`` during one full ``net(x)`` (the origin's forward)."""
    got: dict[str, torch.Tensor] = {}
    handles = [net.get_submodule(p).register_forward_hook(lambda m, i, o, p=p: got.__setitem__(p, o)) for p in paths]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in handles:
            h.remove()
    return [got[p] for p in paths]


def assert_close(got: list[torch.Tensor], expect: list[torch.Tensor]) -> None:
    assert len(got) == len(expect)
    for g, e in zip(got, expect):
        assert g.shape == e.shape
        diff = (g - e).abs().max().item()
        assert diff <= TOL, f"max abs difference {diff:.3g} > {TOL} (largest activation {e.abs().max().item():.3g})"
        assert e.abs().max() > 0.1  # the comparison is not between two all-zero maps


def backbone_outputs(model: DetectionModel, rows: list[int], x: torch.Tensor) -> list[torch.Tensor]:
    """Outputs of the given backbone rows (the native backbones are plain chains, 'from' = -1)."""
    outs = {}
    with torch.no_grad():
        for i in range(max(rows) + 1):
            x = model.model[i](x)
            outs[i] = x
    return [outs[i] for i in rows]


def full_size(name: str) -> dict:
    cfg, _ = load_model_yaml(name)
    cfg = copy.deepcopy(cfg)
    cfg["nc"] = 2
    return cfg


def test_native_rows_use_torchvisions_eps_and_yolov5_blocks_keep_theirs():
    model = DetectionModel(full_size("yolov5-mobilenetv2.yaml"))
    native = [m for i in range(18) for m in model.model[i].modules() if isinstance(m, nn.BatchNorm2d)]
    head = [m for m in model.model[18].modules() if isinstance(m, nn.BatchNorm2d)]  # a yolov5 Conv
    assert native and {m.eps for m in native} == {TORCHVISION_BN_EPS} == {1e-5}
    assert head and {m.eps for m in head} == {BN_EPS} == {1e-3}


@pytest.mark.parametrize(
    "arch, cfg",
    [
        ("resnet18", "yolov5s-resnet18.yaml"),
        ("resnet34", "yolov5s-resnet34.yaml"),
        ("resnet50", "yolov5s-resnet50.yaml"),
        pytest.param("resnet101", "yolov5s-resnet101.yaml", marks=pytest.mark.slow),
    ],
)
def test_native_resnet_rows_reproduce_torchvision(tmp_path, arch, cfg):
    torch.manual_seed(0)
    net = randomise(torchvision.models.get_model(arch, weights=None))
    path = tmp_path / f"{arch}.pth"
    torch.save(net.state_dict(), path)
    model = DetectionModel(full_size(cfg)).eval()
    assert load_backbone_weights(model, path).fits
    x = _input()
    # rows 0-4: stem, layer1..layer4; the head taps layer2/3/4 (rows 2, 3, 4)
    assert_close(backbone_outputs(model, [2, 3, 4], x), hooked(net, ["layer2", "layer3", "layer4"], x))


def test_native_mobilenetv2_rows_reproduce_torchvision(tmp_path):
    torch.manual_seed(0)
    net = randomise(torchvision.models.mobilenet_v2(weights=None))
    path = tmp_path / "mobilenet_v2.pth"
    torch.save(net.state_dict(), path)
    model = DetectionModel(full_size("yolov5-mobilenetv2.yaml")).eval()
    assert load_backbone_weights(model, path).fits
    x = _input()
    # the ends of the stride-8/16/32 stages: torchvision's features.6 / .13 / .17 = rows 6 / 13 / 17
    assert_close(backbone_outputs(model, [6, 13, 17], x), hooked(net, ["features.6", "features.13", "features.17"], x))


def test_the_old_eps_would_fail_the_bar(tmp_path):
    """The bar is tight enough to catch the bug it guards against (yolov5's eps on a ResNet row)."""
    torch.manual_seed(0)
    net = randomise(torchvision.models.resnet18(weights=None))
    path = tmp_path / "resnet18.pth"
    torch.save(net.state_dict(), path)
    model = DetectionModel(full_size("yolov5s-resnet18.yaml")).eval()
    load_backbone_weights(model, path)
    for m in model.model[:5].modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps = BN_EPS
    x = _input()
    got, expect = backbone_outputs(model, [4], x)[0], hooked(net, ["layer4"], x)[0]
    assert (got - expect).abs().max() > 100 * TOL


def torchvision_row(name: str, path) -> nn.Module:
    model = DetectionModel(
        {
            "nc": 2,
            "depth_multiple": 1.0,
            "width_multiple": 1.0,
            "anchors": 3,
            "head": [],
            "backbone": [[-1, 1, "TorchVision", [name, [2, 3, 4], str(path)]]],
        }
    )
    row = model.model[0].eval()
    assert row.transfer_report.fits and row.strides == [8, 16, 32]
    return row


@pytest.mark.parametrize(
    "name",
    [
        "resnet18",
        "mobilenet_v2",
        "mobilenet_v3_small",
        "efficientnet_b0",
        "regnet_y_400mf",
        pytest.param("convnext_tiny", marks=pytest.mark.slow),
        pytest.param("swin_t", marks=pytest.mark.slow),
    ],
)
def test_torchvision_row_reproduces_torchvision(tmp_path, name):
    torch.manual_seed(0)
    net = randomise(torchvision.models.get_model(name, weights=None))
    path = tmp_path / f"{name}.pth"
    torch.save(net.state_dict(), path)
    row = torchvision_row(name, path)
    x = _input()
    with torch.no_grad():
        got = row(x)
    expect = hooked(net, [row.paths[j] for j in row.keep], x)
    if row.nhwc:  # Swin's stages return [B, H, W, C]; the row gives [B, C, H, W]
        expect = [e.permute(0, 3, 1, 2) for e in expect]
    assert_close(got, expect)


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_b0", "convnext_atto", "mobilenetv3_small_050"])
def test_timm_row_reproduces_timm(tmp_path, name):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    net = randomise(timm.create_model(name, pretrained=False))
    path = tmp_path / f"{name}.pth"
    torch.save(net.state_dict(), path)
    model = DetectionModel(
        {
            "nc": 2,
            "depth_multiple": 1.0,
            "width_multiple": 1.0,
            "anchors": 3,
            "head": [],
            "backbone": [[-1, 1, "Timm", [name, [2, 3, 4], str(path)]]],
        }
    )
    row = model.model[0].eval()
    assert row.transfer_report.fits and row.strides == [8, 16, 32]
    x = _input()
    with torch.no_grad():
        got = row(x)
    # the classifier's own modules at the feature_info entries the row picked
    modules = list(row.net.feature_info.module_name())  # one per out index
    assert_close(got, hooked(net, modules, x))
