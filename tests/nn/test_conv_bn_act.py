"""The shared ``ConvBNAct``: the families built on it keep their origins' names and BatchNorm, and
the generic fuse folds every one of them to the same outputs."""

import pytest
import torch
from torch import nn

from modyolo.nn.blocks.conv import ConvBNAct
from modyolo.nn.blocks.mobilenet import ConvBNReLU
from modyolo.nn.blocks.resnet import ResNetStem
from modyolo.nn.blocks.yolo import Conv
from modyolo.nn.fuse import fuse_model

KEYS = ["conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked"]


@pytest.mark.parametrize(
    ("block", "eps", "momentum", "act"),
    [
        (Conv(8, 16, 3, 2), 1e-3, 0.03, nn.SiLU),  # yolov5's BatchNorm and default activation
        (ConvBNReLU(8, 16, 3, 2), 1e-5, 0.1, nn.ReLU6),  # torchvision's
        (ConvBNReLU(8, 16, 1, act=False), 1e-5, 0.1, nn.Identity),  # MobileNetV2's linear projection
        (ResNetStem(8, 16, 3), 1e-5, 0.1, nn.ReLU),
        (ConvBNAct(8, 16, 3, act=nn.GELU()), 1e-5, 0.1, nn.GELU),
    ],
)
def test_families_share_the_layout_and_fuse(block, eps, momentum, act):
    assert isinstance(block, ConvBNAct)
    assert list(block.state_dict()) == KEYS  # the names yolov5 / ultralytics / torchvision files use
    assert (block.bn.eps, block.bn.momentum) == (eps, momentum)
    assert type(block.act) is act


def test_fuse_through_a_parent_gives_the_same_outputs():
    torch.manual_seed(0)
    model = nn.Sequential(Conv(3, 8, 3, 2), ConvBNReLU(8, 8, 3, g=8), ResNetStem(8, 16, 3), ConvBNAct(16, 4, 1))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        assert fuse_model(model) == 4
        assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
        torch.testing.assert_close(model(x), before, rtol=1e-4, atol=1e-5)
