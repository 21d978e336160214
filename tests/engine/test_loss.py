import math

import pytest
import torch
from engine_fakes import make_batch, tiny_model
from torch import nn

from modyolo.engine.hyp import Hyp
from modyolo.engine.loss import DetectionLoss, bbox_ciou, scale_loss_gains, varifocal_bce


class OneLevelHead(nn.Module):
    def __init__(self, nc: int) -> None:
        super().__init__()
        self.nc, self.nl, self.na, self.no = nc, 1, 1, nc + 5
        self.register_buffer("anchors", torch.tensor([[[1.0, 1.0]]]))
        self.register_buffer("stride", torch.tensor([8.0]))


class OneLevelModel(nn.Module):
    def __init__(self, nc: int = 2) -> None:
        super().__init__()
        self.head = OneLevelHead(nc)


def bce(x: float, t: float) -> float:
    return max(x, 0) - x * t + math.log1p(math.exp(-abs(x)))


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def tiny_case():
    """A 4x4 grid, one target centred in cell (2, 2) of anchor size; only that cell has logits."""
    preds = torch.zeros(1, 1, 4, 4, 7)
    tx = math.log(0.6 / 0.4)  # sigmoid = 0.6 -> x offset 2*0.6-0.5 = 0.7 vs target 0.5
    preds[0, 0, 2, 2, 0] = tx
    preds[0, 0, 2, 2, 4] = 1.0  # objectness logit
    preds[0, 0, 2, 2, 6] = 2.0  # class 1 logit
    targets = torch.tensor([[0, 1, 0.625, 0.625, 0.25, 0.25]])
    # predicted box (0.7, 0.5, 1, 1) vs target (0.5, 0.5, 1, 1), cell units
    iou = 0.8 / 1.2
    ciou = iou - 0.2**2 / (1.2**2 + 1.0**2)
    return preds, targets, ciou


def test_bce_loss_matches_hand_computation():
    hyp = Hyp(box=0.05, obj=1.0, cls=0.5, label_smoothing=0.1)
    preds, targets, ciou = tiny_case()
    loss, parts = DetectionLoss(OneLevelModel(), hyp)([preds], targets)
    lbox = (1 - ciou) * 0.05
    lobj = (15 * math.log(2) + bce(1.0, ciou)) / 16 * 4.0 * 1.0  # balance 4.0 on a single level
    lcls = (bce(0.0, 0.05) + bce(2.0, 0.95)) / 2 * 0.5
    torch.testing.assert_close(parts, torch.tensor([lbox, lobj, lcls]), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss, torch.tensor([lbox + lobj + lcls]), rtol=1e-5, atol=1e-6)


def test_vfl_loss_matches_hand_computation():
    hyp = Hyp(box=0.05, obj=1.0, cls=0.5, vfl_alpha=0.75, vfl_gamma=2.0)
    preds, targets, ciou = tiny_case()
    _, parts = DetectionLoss(OneLevelModel(), hyp, loss_type="vfl")([preds], targets)
    neg = 0.75 * 0.5**2 * math.log(2)  # 15 negatives at logit 0: weight alpha * p**gamma
    lobj = (15 * neg + ciou * bce(1.0, ciou)) / 16 * 4.0
    lcls = (0.75 * 0.5**2 * bce(0.0, 0.0) + 1.0 * bce(2.0, 1.0)) / 2 * 0.5
    torch.testing.assert_close(parts, torch.tensor([(1 - ciou) * 0.05, lobj, lcls]), rtol=1e-5, atol=1e-6)


def test_varifocal_weights():
    logits = torch.tensor([0.0, 2.0, -1.0, 3.0])
    q = torch.tensor([0.0, 0.8, 0.0, 0.3])
    got = varifocal_bce(logits, q, q > 0, torch.tensor([1.0]), alpha=0.5, gamma=2.0)
    want = sum((qi if qi > 0 else 0.5 * sig(x) ** 2) * bce(x, qi) for x, qi in zip(logits.tolist(), q.tolist())) / 4
    assert got.item() == pytest.approx(want, rel=1e-6)


def test_focal_changes_loss_and_ciou_is_one_for_same_box():
    preds, targets, _ = tiny_case()
    plain = DetectionLoss(OneLevelModel(), Hyp())([preds], targets)[1]
    focal = DetectionLoss(OneLevelModel(), Hyp(fl_gamma=1.5))([preds], targets)[1]
    assert focal[1] < plain[1] and focal[0] == plain[0]
    box = torch.tensor([[2.0, 3.0, 4.0, 1.0]])
    assert bbox_ciou(box, box).item() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("loss_type", ["bce", "vfl"])
def test_gradients_reach_every_layer(loss_type):
    model = tiny_model()
    imgs, targets = make_batch(bs=2, size=64)
    loss, parts = DetectionLoss(model, scale_loss_gains(Hyp(), 3, 3, 64), loss_type=loss_type)(model(imgs), targets)
    assert loss.shape == (1,) and parts.shape == (3,) and not parts.requires_grad
    assert torch.isfinite(loss).all() and (parts > 0).all()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_gain_scaling_as_yolov5_train():
    h = scale_loss_gains(Hyp(box=0.05, cls=0.5, obj=1.0), nl=3, nc=20, imgsz=320)
    assert (h.box, h.cls, h.obj) == pytest.approx((0.05, 0.5 * 20 / 80, 0.25))
    h4 = scale_loss_gains(Hyp(), nl=4, nc=80, imgsz=640)
    assert h4.box == pytest.approx(0.05 * 3 / 4)


@pytest.mark.parametrize(
    "changes", [{"label_smoothing": 0.1}, {"fl_gamma": 1.5, "cls_pw": 2.0, "obj_pw": 0.5, "anchor_t": 2.9}]
)
def test_parity_with_yolov5_compute_loss(changes):
    loss_mod = pytest.importorskip(
        "yolov5.utils.loss", reason="yolov5 (pip yolov5==7.0.14) is not installed in this environment"
    )
    model = tiny_model()
    hyp = Hyp(**changes)
    model.hyp = hyp.to_dict()
    imgs, targets = make_batch(bs=2, size=64)
    preds = model(imgs)
    theirs = loss_mod.ComputeLoss(model)(preds, targets)
    ours = DetectionLoss(model, hyp)(preds, targets)
    torch.testing.assert_close(ours[0], theirs[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours[1], theirs[1], rtol=1e-5, atol=1e-6)
