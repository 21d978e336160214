"""Activation memory before training (nn/budget.py): the estimate's arithmetic, the refusal and the warning,
and ``modyolo train`` refusing a batch that cannot fit with exit 2, no traceback and no run folder."""

from __future__ import annotations

import logging
import re

import pytest
import torch

from modyolo.nn import budget
from modyolo.nn.model import DetectionModel


@pytest.fixture
def model(tiny_cfg):
    return DetectionModel(tiny_cfg())


def test_probe_leaves_the_model_as_it_was(model):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.eval()
    assert budget.saved_bytes(model, 64) > 0
    assert not model.training  # mode restored
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm statistics restored


def test_saved_bytes_grow_with_the_area(model):
    small, large = budget.saved_bytes(model, 64), budget.saved_bytes(model, 128)
    # every map is size/stride a side: 4x the pixels, about 4x the saved tensors (the constant part is tiny)
    assert 3.8 < large / small < 4.05


def test_estimate_is_linear_in_batch_and_area(model):
    a = budget.estimate_train_memory(model, 4, 256, optimizer="SGD")
    b = budget.estimate_train_memory(model, 8, 512, optimizer="SGD")
    assert b.batch == 8 and b.per_image == pytest.approx(4 * a.per_image, rel=0.01)
    assert b.activations - b.fixed == pytest.approx(8 * a.activations - 8 * a.fixed, rel=0.01)
    params = sum(p.numel() for p in model.parameters())
    assert a.state >= params * 4 * 3  # gradient + momentum + EMA copy, 4 B each
    adam = budget.estimate_train_memory(model, 4, 256, optimizer="AdamW")
    assert adam.state - a.state == params * 4  # the second moment


def test_enough_memory_passes_quietly(model, monkeypatch, caplog):
    monkeypatch.setenv("MODYOLO_MEMORY_LIMIT", "1T")
    with caplog.at_level(logging.WARNING, logger="modyolo.nn.budget"):
        est = budget.check_train_memory(model, 4, 256, torch.device("cpu"))
    assert est is not None and est.needed > 0 and not caplog.records


def test_refusal_names_the_flags_the_figures_and_a_batch_that_fits(model, monkeypatch):
    est = budget.estimate_train_memory(model, 64, 640)
    limit = est.needed // 4
    monkeypatch.setenv("MODYOLO_MEMORY_LIMIT", str(limit))
    with pytest.raises(budget.MemoryBudgetError) as info:
        budget.check_train_memory(model, 64, 640, torch.device("cpu"))
    msg = str(info.value)
    for words in ("--batch-size 64", "--img 640", "width_multiple 0.125", "MODYOLO_MEMORY_LIMIT", "try --batch-size"):
        assert words in msg, msg
    suggested = int(re.search(r"try --batch-size (\d+)", msg).group(1))
    assert 1 <= suggested < 64
    # the suggestion is accepted, without a warning even (it is sized to the warning's 70 %)
    assert budget.estimate_train_memory(model, suggested, 640).needed <= budget.WARN_FRACTION * limit
    assert info.value.exit_code == 2


def test_batch_1_too_big_suggests_a_smaller_image(model, monkeypatch):
    est = budget.estimate_train_memory(model, 1, 1280)
    monkeypatch.setenv("MODYOLO_MEMORY_LIMIT", str(est.needed // 2))
    with pytest.raises(budget.MemoryBudgetError, match=r"even --batch-size 1 does not fit: try --batch-size 1 --img"):
        budget.check_train_memory(model, 1, 1280, torch.device("cpu"))


def test_warns_above_70_percent(model, monkeypatch, caplog):
    est = budget.estimate_train_memory(model, 16, 320)
    monkeypatch.setenv("MODYOLO_MEMORY_LIMIT", str(int(est.needed / 0.85)))
    with caplog.at_level(logging.WARNING, logger="modyolo.nn.budget"):
        assert budget.check_train_memory(model, 16, 320, torch.device("cpu")) is not None
    assert any("85% of the" in r.getMessage() and "--batch-size 16" in r.getMessage() for r in caplog.records)


def test_multi_scale_counts_the_largest_size(model, monkeypatch):
    plain = budget.estimate_train_memory(model, 4, 480)
    monkeypatch.setenv("MODYOLO_MEMORY_LIMIT", str(int(plain.needed * 1.2)))
    assert budget.check_train_memory(model, 4, 320, torch.device("cpu")) is not None
    with pytest.raises(budget.MemoryBudgetError, match=r"--multi-scale"):
        budget.check_train_memory(model, 8, 320, torch.device("cpu"), multi_scale=True)


@pytest.mark.parametrize("raw", ["lots", "-1G", "nan", "0"])
def test_memory_limit_env_must_be_a_size(model, monkeypatch, raw):
    monkeypatch.setenv("MODYOLO_MEMORY_LIMIT", raw)
    with pytest.raises(budget.MemoryBudgetError, match="MODYOLO_MEMORY_LIMIT"):
        budget.check_train_memory(model, 4, 64, torch.device("cpu"))


@pytest.mark.parametrize(
    ("raw", "n"), [("512M", 512 * 2**20), ("8G", 8 * 2**30), ("2.5e9", 2_500_000_000), ("1gib", 2**30)]
)
def test_parse_bytes(raw, n):
    assert budget._parse_bytes(raw) == n


def test_room_on_cpu_is_a_positive_figure(monkeypatch):
    monkeypatch.delenv("MODYOLO_MEMORY_LIMIT", raising=False)
    room, what = budget.memory_room(torch.device("cpu"))
    assert room is not None and room > 0 and what


def test_cli_train_refuses_a_batch_that_cannot_fit(shapes, tmp_path, monkeypatch, capsys):
    from modyolo.cli import main

    monkeypatch.setenv("MODYOLO_MEMORY_LIMIT", "2G")
    project = tmp_path / "runs"
    argv = ["train", "--data", str(shapes), "--cfg", "yolov5n.yaml", "--epochs", "1", "--workers", "0"]
    rc = main([*argv, "--batch-size", "512", "--img", "1280", "--project", str(project), "--noval", "--noplots"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "modyolo train: error: --batch-size 512 --img 1280 with yolov5n.yaml" in err and "Traceback" not in err
    assert "allowed by MODYOLO_MEMORY_LIMIT=2G" in err and "try --batch-size" in err
    assert not project.exists()  # refused before the run folder, the loaders or autoanchor
