"""Backbone weights from local files: torchvision state_dicts onto TorchVision rows and onto the
native ResNet / MobileNetV2 rows, with a transfer report; a load that transfers nothing fails."""

import copy
import logging

import pytest
import torch
import torchvision
from torch import nn

from modyolo.nn.graph import load_model_yaml
from modyolo.nn.model import DetectionModel
from modyolo.nn.pretrained import (
    WeightsMismatchError,
    load_backbone_weights,
    read_state_dict,
)
from modyolo.nn.row import ModelConfigError


def cfg(name: str, **overrides) -> dict:
    data, _ = load_model_yaml(name)
    data = copy.deepcopy(data)
    data["nc"] = 2
    data.update(overrides)
    return data


def random_torchvision(name: str) -> nn.Module:
    torch.manual_seed(0)
    net = torchvision.models.get_model(name, weights=None)
    for m in net.modules():  # non-trivial BN statistics, so a dropped buffer would be noticed
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def test_torchvision_resnet50_file_transfers_every_backbone_tensor(tmp_path):
    net = random_torchvision("resnet50")
    path = tmp_path / "resnet50.pth"
    torch.save(net.state_dict(), path)
    model = DetectionModel(cfg("yolov5s-torchvision-resnet50.yaml", width_multiple=0.125))
    report = load_backbone_weights(model, path)
    target = model.model[0].net.state_dict()
    learned = [k for k in target if not k.endswith("num_batches_tracked")]
    assert report.all_matched and sorted(report.matched) == sorted(learned)
    assert sorted(report.unused) == ["fc.bias", "fc.weight"]
    assert f"transferred {len(learned)}/{len(learned)} tensors" in report.summary()
    for key in ("conv1.weight", "layer4.2.bn3.running_var", "layer3.5.conv2.weight"):
        assert torch.equal(target[key], net.state_dict()[key])


def test_weights_at_build_time_from_the_row_or_the_pretrained_option(tmp_path):
    save_file = pytest.importorskip("safetensors.torch").save_file
    net = random_torchvision("resnet18")
    path = tmp_path / "r18.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    data = cfg("yolov5s-torchvision-resnet50.yaml", width_multiple=0.125)
    data["backbone"][0] = [-1, 1, "TorchVision", ["resnet18", [2, 3, 4], str(path)]]
    from_row = DetectionModel(data)
    assert from_row.model[0].transfer_report.all_matched
    data["backbone"][0] = [-1, 1, "TorchVision", ["resnet18", [2, 3, 4]]]
    from_option = DetectionModel(data, pretrained={0: str(path)})
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expect = net.layer4(net.layer3(net.layer2(net.layer1(net.maxpool(net.relu(net.bn1(net.conv1(x))))))))
        got = from_option.eval().model[0](x)[2]
    torch.testing.assert_close(got, expect)


def test_native_resnet50_rows_take_a_torchvision_file(tmp_path):
    net = random_torchvision("resnet50")
    path = tmp_path / "resnet50.pt"
    torch.save({"state_dict": net.state_dict()}, path)  # wrapped checkpoints unwrap
    model = DetectionModel(cfg("yolov5s-resnet50.yaml"))
    report = load_backbone_weights(model, path)
    assert report.all_matched and report.method == "layout"
    assert len(report.matched) == len(
        [
            k
            for k in net.state_dict()
            if k.startswith(("conv1", "bn1", "layer")) and not k.endswith("num_batches_tracked")
        ]
    )
    assert report.unused == ["fc.weight", "fc.bias"] and report.not_covered == ["5 (SPPF)"]
    assert torch.equal(model.state_dict()["model.3.5.conv2.weight"], net.layer3[5].conv2.weight)


def test_native_resnet18_rows_compute_what_torchvision_computes(tmp_path):
    net = random_torchvision("resnet18")
    path = tmp_path / "resnet18.pth"
    torch.save(net.state_dict(), path)
    model = DetectionModel(cfg("yolov5s-resnet18.yaml")).eval()
    assert load_backbone_weights(model, path).all_matched
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expect = net.layer4(net.layer3(net.layer2(net.layer1(net.maxpool(net.relu(net.bn1(net.conv1(x))))))))
        got = model.model[4](model.model[3](model.model[2](model.model[1](model.model[0](x)))))
    torch.testing.assert_close(got, expect)


def test_native_mobilenetv2_rows_compute_what_torchvision_computes(tmp_path):
    net = random_torchvision("mobilenet_v2")
    path = tmp_path / "mnv2.pth"
    torch.save(net.state_dict(), path)
    model = DetectionModel(cfg("yolov5-mobilenetv2.yaml")).eval()
    report = load_backbone_weights(model, path)
    assert report.all_matched and {k.split(".")[1] for k in report.unused} == {"18", "1"}  # last conv, fc
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expect = net.features[:18](x)
        got = x
        for row in model.model[:18]:
            got = row(got)
    torch.testing.assert_close(got, expect)


def test_a_narrower_model_reports_shape_mismatches(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(random_torchvision("resnet18").state_dict(), path)
    model = DetectionModel(cfg("yolov5s-resnet18.yaml", width_multiple=0.5))
    with pytest.raises(
        ValueError, match="transferred 0/100 .*100 shape mismatches.*Nothing was transferred.*width_multiple"
    ):
        load_backbone_weights(model, path)


def test_a_file_that_transfers_nothing_is_an_error(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(3)}, path)
    model = DetectionModel(cfg("yolov5s-torchvision-resnet50.yaml", width_multiple=0.125))
    with pytest.raises(ValueError, match="Nothing was transferred"):
        load_backbone_weights(model, path)
    data = cfg("yolov5s-torchvision-resnet50.yaml", width_multiple=0.125)
    with pytest.raises(ModelConfigError, match=r"layer 0 \(TorchVision\).*cannot load weights"):
        DetectionModel(data, pretrained={0: str(path)})


def test_modyolo_checkpoint_backbone_transfers_by_name(tmp_path):
    torch.manual_seed(1)
    source = DetectionModel(cfg("yolov5-mobilenetv2.yaml", width_multiple=0.25))
    path = tmp_path / "last.pt"
    torch.save({"model": source.state_dict(), "epoch": 3}, path)
    target = DetectionModel(cfg("yolov5-mobilenetv2.yaml", width_multiple=0.25, nc=5))
    report = load_backbone_weights(target, path)
    assert report.method == "name" and report.all_matched
    assert all(int(k.split(".")[1]) < 18 for k in report.matched)
    assert torch.equal(target.model[17].conv[1].conv.weight, source.model[17].conv[1].conv.weight)


def test_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_state_dict(tmp_path / "missing.pth")
    path = tmp_path / "empty.pth"
    torch.save({"epoch": 1}, path)
    with pytest.raises(ValueError, match="contains no tensors"):
        read_state_dict(path)


def test_a_file_of_another_network_is_an_error_naming_file_tensors_and_fix(tmp_path):
    """resnet50 weights on the resnet18 YAML transferred about half their tensors silently before."""
    path = tmp_path / "resnet50.pth"
    torch.save(random_torchvision("resnet50").state_dict(), path)
    model = DetectionModel(cfg("yolov5s-resnet18.yaml"))
    with pytest.raises(WeightsMismatchError) as e:
        load_backbone_weights(model, path)
    msg = str(e.value)
    assert str(path) in msg and "does not fit" in msg and "\n" not in msg
    assert "layer1.0.conv1.weight (64, 64, 1, 1) -> model.1.0.conv1.weight (64, 64, 3, 3)" in msg  # the first
    assert "torchvision resnet50 (ResNetBottleneck stages 3-4-6-3)" in msg
    assert "resnet18 (BasicBlock stages 2-2-2-2)" in msg and "--partial-weights" in msg


def test_a_deeper_network_of_the_same_kind_is_an_error(tmp_path):
    """resnet34 has resnet18's tensors and more: every target fills, the extra blocks give it away."""
    path = tmp_path / "resnet34.pth"
    torch.save(random_torchvision("resnet34").state_dict(), path)
    with pytest.raises(
        WeightsMismatchError,
        match=r"layer1\.2\.conv1\.weight \(no place in the model\).*"
        r"file is a torchvision resnet34",
    ):
        load_backbone_weights(DetectionModel(cfg("yolov5s-resnet18.yaml")), path)
    data = cfg("yolov5s-torchvision-resnet50.yaml", width_multiple=0.125)
    data["backbone"][0] = [-1, 1, "TorchVision", ["resnet18", [2, 3, 4]]]
    with pytest.raises(WeightsMismatchError, match=r"layer1\.2\..* \(no place in the model\).*state_dict of resnet18"):
        load_backbone_weights(DetectionModel(data), path)


def test_partial_load_says_what_was_left_random_and_is_logged(tmp_path, caplog):
    net = random_torchvision("resnet50")
    path = tmp_path / "resnet50.pth"
    torch.save(net.state_dict(), path)
    model = DetectionModel(cfg("yolov5s-resnet18.yaml"))
    before = model.state_dict()["model.1.0.conv1.weight"].clone()
    with caplog.at_level(logging.INFO, logger="modyolo"):
        report = load_backbone_weights(model, path, partial=True)
    assert report.partial and not report.fits and report.matched
    assert "model.1.0.conv1.weight" in report.left_random  # 1x1 in the file, 3x3 in the model
    assert torch.equal(model.state_dict()["model.1.0.conv1.weight"], before)  # really left as it was
    assert torch.equal(model.state_dict()["model.0.conv.weight"], net.conv1.weight)  # the stem did fit
    assert f"partial load: {len(report.left_random)} tensors left at their random initialisation" in report.summary()
    logged = [r for r in caplog.records if r.name.startswith("modyolo") and r.levelno == logging.INFO]
    assert any("left random: model." in r.getMessage() and str(path) in r.getMessage() for r in logged)


def test_a_fitting_load_is_logged_and_a_classifier_of_another_size_is_fine(tmp_path, caplog):
    net = random_torchvision("resnet18")
    net.fc = nn.Linear(512, 7)  # fine-tuned on 7 classes: the classifier is not part of the backbone
    path = tmp_path / "resnet18-7cls.pth"
    torch.save(net.state_dict(), path)
    data = cfg("yolov5s-torchvision-resnet50.yaml", width_multiple=0.125)
    data["backbone"][0] = [-1, 1, "TorchVision", ["resnet18", [2, 3, 4]]]
    model = DetectionModel(data)
    with caplog.at_level(logging.INFO, logger="modyolo"):
        report = load_backbone_weights(model, path)
    assert report.fits and sorted(report.unused) == ["fc.bias", "fc.weight"] and not report.extra
    assert any("transferred 100/100 tensors" in r.getMessage() for r in caplog.records)


def test_a_misfit_in_the_yaml_row_names_the_row(tmp_path):
    path = tmp_path / "resnet34.pth"
    torch.save(random_torchvision("resnet34").state_dict(), path)
    data = cfg("yolov5s-torchvision-resnet50.yaml", width_multiple=0.125)
    data["backbone"][0] = [-1, 1, "TorchVision", ["resnet18", [2, 3, 4], str(path)]]
    with pytest.raises(ModelConfigError, match=r"layer 0 \(TorchVision\).*cannot load weights.*does not fit"):
        DetectionModel(data)
