import copy

import pytest
import torch
from engine_fakes import make_batch, tiny_model
from torch import nn

from modyolo.engine.hyp import Hyp
from modyolo.engine.loss import DetectionLoss, scale_loss_gains
from modyolo.engine.sam import SAM, bn_stats_frozen


def quad_loss(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return ((w * x).sum() - 1.0) ** 2 + (w**4).sum()


def test_first_second_step_restores_weights_and_uses_sharp_gradient():
    w = nn.Parameter(torch.tensor([0.5, -1.0, 2.0]))
    x = torch.tensor([1.0, 2.0, 0.5])
    sam = SAM(torch.optim.SGD([w], lr=0.1), rho=0.05)
    w0 = w.detach().clone()
    quad_loss(w, x).backward()
    g = w.grad.clone()
    norm = sam.first_step()
    assert w.grad is None and norm == pytest.approx(g.norm().item())
    e = 0.05 * g / g.norm()
    torch.testing.assert_close(w.detach(), w0 + e)
    quad_loss(w, x).backward()
    sharp = w.grad.clone()
    sam.second_step()
    assert torch.equal(w.detach(), w0)  # restored bit-exactly
    sam.step()
    torch.testing.assert_close(w.detach(), w0 - 0.1 * sharp)
    # the sharp gradient is the plain gradient at w0 + e
    w_e = (w0 + e).requires_grad_(True)
    quad_loss(w_e, x).backward()
    torch.testing.assert_close(sharp, w_e.grad)


def test_accumulation_banks_each_micro_batch_sharp_gradient():
    xs = [torch.tensor([1.0, 2.0, 0.5]), torch.tensor([-1.0, 0.5, 1.0])]
    w = nn.Parameter(torch.tensor([0.5, -1.0, 2.0]))
    sam = SAM(torch.optim.SGD([w], lr=0.1), rho=0.1, adaptive=True)
    w0 = w.detach().clone()
    expected = torch.zeros(3)
    for x in xs:
        quad_loss(w, x).backward()
        g = w.grad.clone()
        sam.first_step()
        e = 0.1 * w0**2 * g / (w0.abs() * g).norm()  # ASAM: perturbation scaled by |w|
        w_e = (w0 + e).requires_grad_(True)
        quad_loss(w_e, x).backward()
        expected += w_e.grad
        quad_loss(w, x).backward()
        sam.second_step()
        assert w.grad is None
    sam.step()
    torch.testing.assert_close(w.detach(), w0 - 0.1 * expected)


def test_misuse_is_reported():
    w = nn.Parameter(torch.ones(2))
    sam = SAM(torch.optim.SGD([w], lr=0.1))
    with pytest.raises(RuntimeError, match="backward"):
        sam.first_step()
    with pytest.raises(RuntimeError, match="without first_step"):
        sam.second_step()
    w.sum().backward()
    sam.first_step()
    with pytest.raises(RuntimeError, match="perturbed"):
        sam.step()


def test_bn_stats_frozen_keeps_running_stats_bit_identical():
    model = tiny_model()
    model.train()
    imgs, _ = make_batch()
    before = copy.deepcopy({k: v for k, v in model.state_dict().items() if "running" in k or "num_batches" in k})
    with bn_stats_frozen(model):
        out = model(imgs)
    after = {k: v for k, v in model.state_dict().items() if k in before}
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(m.track_running_stats for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    model(imgs)  # outside the block statistics move again
    assert not torch.equal(before["model.0.1.running_mean"], model.state_dict()["model.0.1.running_mean"])
    assert out[0].requires_grad


def test_sam_trains_the_detector_and_saves_plain_state():
    model = tiny_model()
    imgs, targets = make_batch(bs=2, size=64)
    loss_fn = DetectionLoss(model, scale_loss_gains(Hyp(), 3, 3, 64))
    sam = SAM(torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9), rho=0.05)
    losses = []
    for _ in range(4):
        loss, _ = loss_fn(model(imgs), targets)
        loss.backward()
        sam.first_step()
        with bn_stats_frozen(model):
            loss_fn(model(imgs), targets)[0].backward()
        sam.second_step()
        sam.step()
        sam.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    state = sam.state_dict()
    other = SAM(torch.optim.SGD(tiny_model().parameters(), lr=0.5, momentum=0.9), rho=0.2)
    other.load_state_dict(state)
    assert other.rho == 0.05 and other.param_groups[0]["lr"] == 0.01
