"""A new block family brings its own pretrained mapping: one file (example_family/shufflenet.py),
one import line, one YAML (example_family/shufflenetv2-tiny.yaml), and ``nn/pretrained.py`` is not
edited. A torchvision ShuffleNetV2 file then transfers onto the rows through the family's
``pretrained_layout`` and reproduces torchvision's feature maps, from Python and from
``modyolo train --backbone-weights``."""

import importlib.util
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from modyolo.cli import main as cli_main
from modyolo.data.synthetic import make_shapes_dataset
from modyolo.nn.graph import load_model_yaml
from modyolo.nn.model import DetectionModel
from modyolo.nn.pretrained import WeightsMismatchError, load_backbone_weights, mapping_families
from modyolo.nn.registry import BLOCKS

HERE = Path(__file__).parent / "example_family"
YAML = HERE / "shufflenetv2-tiny.yaml"


@pytest.fixture(scope="module")
def family():
    """Import the family file (the 'one import line'); the shipped registry is restored afterwards."""
    items, canonical = dict(BLOCKS._items), dict(BLOCKS._canonical)
    spec = importlib.util.spec_from_file_location("example_shufflenet", HERE / "shufflenet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    BLOCKS._items, BLOCKS._canonical = items, canonical


def torchvision_file(path: Path, name: str = "shufflenet_v2_x0_5") -> tuple[nn.Module, Path]:
    torch.manual_seed(0)
    net = torchvision.models.get_model(name, weights=None)
    for m in net.modules():  # non-trivial BN statistics: a buffer left behind would show
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
    torch.save(net.state_dict(), path)
    return net.eval(), path


def test_the_family_is_found_through_the_registry(family):
    assert family.ShuffleStage in mapping_families()
    assert {f.__name__ for f in mapping_families()} >= {"ShuffleStage", "InvertedResidual"}


def test_torchvision_shufflenet_file_fits_and_reproduces_its_features(family, tmp_path):
    net, path = torchvision_file(tmp_path / "shufflenet.pth")
    cfg, _ = load_model_yaml(str(YAML))
    model = DetectionModel(cfg)
    report = load_backbone_weights(model, path)
    assert report.fits and report.method == "layout"
    backbone = sum(
        v.numel()
        for k, v in model.state_dict().items()
        if k.startswith(("model.0.", "model.1.", "model.2.", "model.3.")) and "num_batches" not in k
    )
    assert sum(model.state_dict()[k].numel() for k in report.matched) == backbone
    assert all(k.startswith(("conv5.", "fc.")) for k in report.unused)  # only the classifier is left over
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = net.maxpool(net.conv1(x))
        ours = model.model[0](x)
        torch.testing.assert_close(ours, ref)
        for row, stage in zip((1, 2, 3), (net.stage2, net.stage3, net.stage4)):
            ref, ours = stage(ref), model.model[row](ours)
            torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)


def test_a_wider_shufflenet_file_is_a_misfit(family, tmp_path):
    _, path = torchvision_file(tmp_path / "x1_0.pth", "shufflenet_v2_x1_0")
    cfg, _ = load_model_yaml(str(YAML))
    with pytest.raises(WeightsMismatchError, match="does not fit"):
        load_backbone_weights(DetectionModel(cfg), path)


@pytest.mark.slow
def test_train_cli_takes_the_new_familys_weights(family, tmp_path, capsys):
    _, path = torchvision_file(tmp_path / "shufflenet.pth")
    data = make_shapes_dataset(tmp_path / "shapes", n_train=4, n_val=2, seed=0, img_size=(64, 64))
    code = cli_main(
        [
            "train",
            "--data",
            str(data),
            "--cfg",
            str(YAML),
            "--backbone-weights",
            str(path),
            "--img",
            "64",
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--workers",
            "0",
            "--noplots",
            "--project",
            str(tmp_path / "runs"),
            "--name",
            "exp",
        ]
    )
    assert code == 0
    err = capsys.readouterr().err
    assert f"{path}: transferred" in err and "by layout" in err and "0 missing, 0 shape mismatches" in err
    assert (tmp_path / "runs" / "exp" / "weights" / "last.pt").exists()
