"""The zero-metric checks one by one, on planted causes."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from modyolo.eval.diagnose import (
    check_candidates,
    check_fused,
    check_label_classes,
    check_nonfinite,
    check_raw_vs_ema,
    diagnose,
    needs_diagnosis,
)


class ConvBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn(self.conv(x))


def test_needs_diagnosis():
    assert needs_diagnosis({"instances": np.array([3, 0]), "mAP50-95": 0.0, "precision": 0.2, "recall": 0.1})
    assert needs_diagnosis({"instances": np.array([3]), "mAP50-95": 0.1, "precision": 0.0, "recall": 0.0})
    assert not needs_diagnosis({"instances": np.array([0, 0]), "mAP50-95": 0.0, "precision": 0.0, "recall": 0.0})
    assert not needs_diagnosis({"instances": np.array([2]), "mAP50-95": 0.3, "precision": 0.5, "recall": 0.4})


def test_nonfinite_names_module_and_parameter():
    m = nn.Sequential(ConvBN(), ConvBN())
    assert check_nonfinite(m).ok
    m[1].bn.running_mean[2] = float("inf")
    c = check_nonfinite(m)
    assert not c.ok and "1.bn.running_mean (1/4 non-finite)" in c.detail and "(1.bn.running_mean)" in c.cause
    m[1].bn.running_mean.zero_()
    with torch.no_grad():
        m[0].conv.weight[0, 0, 0, 0] = float("nan")
    c = check_nonfinite(m)
    assert not c.ok and "parameter 0.conv.weight" in c.detail


def test_label_classes():
    labels = [
        np.array([[0, 0.5, 0.5, 0.1, 0.1], [7, 0.5, 0.5, 0.1, 0.1]]),
        np.zeros((0, 5)),
        np.array([[6, 0.1, 0.1, 0.1, 0.1]]),
    ]
    c = check_label_classes(labels, nc=5, files=["a.jpg", "b.jpg", "c.jpg"])
    assert not c.ok and "2/3 labels" in c.detail and "[6, 7]" in c.detail and "a.jpg, c.jpg" in c.detail
    assert check_label_classes(labels, nc=8).ok
    empty = check_label_classes([np.zeros((0, 5))], nc=5)
    assert not empty.ok and "no labels" in empty.cause


def test_candidates():
    none = check_candidates({"candidates_before_nms": 0, "detections_after_nms": 0, "max_objectness": 0.0004}, 0.001)
    assert not none.ok and "0.0004" in none.cause
    weak = check_candidates({"candidates_before_nms": 50, "detections_after_nms": 20, "max_objectness": 0.02}, 0.001)
    assert not weak.ok and "barely" in weak.cause
    assert check_candidates({"candidates_before_nms": 50, "detections_after_nms": 20, "max_objectness": 0.9}, 0.001).ok


def test_raw_vs_ema():
    good, bad = {"w": torch.ones(1)}, {"w": torch.zeros(1)}
    score = lambda sd: {"mAP50": float(sd["w"]) * 0.4, "mAP50-95": float(sd["w"]) * 0.2}  # noqa: E731
    c = check_raw_vs_ema(score, {"model": good, "ema": {"model": bad, "updates": 3}})
    assert not c.ok and "3" in c.cause and "0.400" in c.cause
    assert check_raw_vs_ema(score, {"model": good, "ema": {"model": good, "updates": 900}}).ok
    assert check_raw_vs_ema(score, {"model": good, "ema": None}) is None


class Fusable(nn.Module):
    """Conv+BN with a deliberately wrong ``fuse`` (drops the BN) to plant a fusing bug."""

    def __init__(self, wrong: bool) -> None:
        super().__init__()
        self.block, self.wrong = ConvBN(), wrong
        self.block.bn.running_mean.fill_(0.5)

    def forward(self, x):
        return self.block(x) if not self.wrong or hasattr(self.block, "bn") else self.block.conv(x)

    def fuse(self):
        if self.wrong:
            del self.block.bn
        else:
            from modyolo.nn.fuse import fuse_model

            fuse_model(self.block)
        return self


def test_fused_vs_unfused_detects_a_wrong_fuse():
    x = torch.rand(1, 3, 16, 16)
    assert not check_fused(Fusable(wrong=True).eval(), x).ok
    assert check_fused(Fusable(wrong=False).eval(), x).ok


def test_diagnose_orders_causes():
    m = nn.Sequential(ConvBN())
    m[0].bn.running_var[0] = float("nan")
    d = diagnose(
        m,
        stats={"candidates_before_nms": 0, "detections_after_nms": 0, "max_objectness": 0.0},
        labels=[np.array([[9, 0.5, 0.5, 0.2, 0.2]])],
        nc=2,
        conf_thres=0.001,
    )
    assert d.cause.startswith("NaN/inf in BatchNorm") and len(d.causes) == 3
    assert "Likely cause: NaN/inf" in d.report()
