"""``modyolo train --backbone-weights`` as a user runs it: a file of another network stops the run
with a one-line error naming the file, the first mismatching tensors and the fix; with
``--partial-weights`` the run goes on and the transfer report (what stayed random) reaches the
terminal and the run's log."""

import pytest
import torch
import torchvision

from modyolo.cli import main as cli_main
from modyolo.data.synthetic import make_shapes_dataset


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return str(make_shapes_dataset(tmp_path_factory.mktemp("shapes"), n_train=4, n_val=2, seed=0, img_size=(64, 96)))


@pytest.fixture(scope="module")
def resnet50_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "resnet50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    return path


def train(shapes, weights, tmp_path, *extra: str) -> int:
    return cli_main(
        [
            "train",
            "--data",
            shapes,
            "--cfg",
            "yolov5s-resnet18.yaml",
            "--backbone-weights",
            str(weights),
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
            *extra,
        ]
    )


def test_train_with_weights_of_another_network_fails_clearly(shapes, resnet50_file, tmp_path, capsys):
    assert train(shapes, resnet50_file, tmp_path) == 1
    err = capsys.readouterr().err.strip().splitlines()
    line = err[-1]
    assert line.startswith("modyolo train: error: ") and str(resnet50_file) in line and "does not fit" in line
    assert "layer1.0.conv1.weight (64, 64, 1, 1) -> model.1.0.conv1.weight (64, 64, 3, 3)" in line
    assert "the file is a torchvision resnet50" in line and "resnet18 (BasicBlock" in line
    assert "--partial-weights" in line
    assert not (tmp_path / "runs" / "exp" / "weights" / "last.pt").exists()  # nothing trained


@pytest.mark.slow
def test_partial_weights_trains_and_the_report_reaches_the_user(shapes, resnet50_file, tmp_path, capsys):
    assert train(shapes, resnet50_file, tmp_path, "--partial-weights") == 0
    err = capsys.readouterr().err
    assert f"{resnet50_file}: transferred" in err and "tensors left at their random initialisation" in err
    assert "left random: model.1.0.conv1.weight" in err
    run = tmp_path / "runs" / "exp"
    assert "tensors left at their random initialisation" in (run / "log.txt").read_text()
    assert (run / "weights" / "last.pt").exists()
