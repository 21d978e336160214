import math

import pytest
import torch
from engine_fakes import tiny_model

from modyolo.engine.freeze import freeze_layers
from modyolo.engine.hyp import Hyp
from modyolo.engine.optim import build_optimizer, parameter_groups
from modyolo.engine.schedule import LRSchedule, accumulation_steps, lr_lambda, scaled_weight_decay


def test_three_groups_cover_every_trainable_parameter_once():
    model = tiny_model()
    opt = build_optimizer(model, "SGD", lr=0.01, momentum=0.9, weight_decay=1e-3)
    names = [g["name"] for g in opt.param_groups]
    assert names == ["bias", "weight", "norm"]
    assert [g["weight_decay"] for g in opt.param_groups] == [0.0, 1e-3, 0.0]
    assert all(g["nesterov"] and g["momentum"] == 0.9 for g in opt.param_groups)
    ids = [id(p) for g in opt.param_groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters()) and len(set(ids)) == len(ids)
    bn = [m.weight for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert {id(p) for p in opt.param_groups[2]["params"]} == {id(p) for p in bn}


@pytest.mark.parametrize("name, cls", [("adam", torch.optim.Adam), ("AdamW", torch.optim.AdamW)])
def test_adam_variants_and_frozen_exclusion(name, cls):
    model = tiny_model()
    frozen = freeze_layers(model, [0, 1])
    opt = build_optimizer(model, name, lr=1e-3, momentum=0.8, weight_decay=5e-4)
    assert isinstance(opt, cls) and opt.param_groups[0]["betas"] == (0.8, 0.999)
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert frozen and not any(id(p) in in_opt for p in model.model[0].parameters())
    assert sum(len(g) for g in parameter_groups(model)) == len(in_opt)
    with pytest.raises(ValueError, match="SGD, Adam, AdamW"):
        build_optimizer(model, "RMSprop")


def test_lr_lambdas_and_accumulation():
    lin, cos = lr_lambda(100, 0.01), lr_lambda(100, 0.01, cosine=True)
    assert lin(0) == cos(0) == 1.0
    assert lin(100) == pytest.approx(0.01) and cos(100) == pytest.approx(0.01)
    assert lin(50) == pytest.approx(0.505) and cos(50) == pytest.approx(0.505)
    assert cos(25) > lin(25)
    assert accumulation_steps(16) == 4 and accumulation_steps(128) == 1 and accumulation_steps(24) == 3
    assert scaled_weight_decay(5e-4, 16, 4) == pytest.approx(5e-4)
    assert scaled_weight_decay(5e-4, 24, 3) == pytest.approx(5e-4 * 72 / 64)


def test_warmup_ramps_bias_lr_down_other_lrs_and_momentum_up():
    model = tiny_model()
    hyp = Hyp(lr0=0.01, lrf=0.1, warmup_epochs=3, warmup_bias_lr=0.1, warmup_momentum=0.8, momentum=0.937)
    opt = build_optimizer(model, "SGD", hyp.lr0, hyp.momentum, hyp.weight_decay)
    sched = LRSchedule(opt, hyp, epochs=10, batches_per_epoch=20, batch_size=16)
    assert sched.warmup_iters == 100  # max(3 * 20, 100)
    assert sched.warmup(0, 0) == 1
    bias, weight, norm = opt.param_groups
    assert (bias["lr"], weight["lr"], norm["lr"]) == (0.1, 0.0, 0.0) and weight["momentum"] == 0.8
    acc = sched.warmup(50, 2)
    lf2 = 1 - 2 / 10 * 0.9
    assert weight["lr"] == pytest.approx(0.5 * 0.01 * lf2) and bias["lr"] == pytest.approx(0.05 + 0.5 * 0.01 * lf2)
    assert weight["momentum"] == pytest.approx((0.8 + 0.937) / 2) and acc == round(1 + 0.5 * 3)
    assert sched.warmup(100, 4) == 4 and weight["momentum"] == pytest.approx(0.937)
    sched.set_epoch(5)
    assert all(g["lr"] == pytest.approx(0.01 * (1 - 0.5 * 0.9)) for g in opt.param_groups)
    assert sched.warmup(101, 5) == 4 and weight["lr"] == pytest.approx(0.01 * 0.55)  # past warmup: untouched
    sched.scale_initial_lr(0.1)
    sched.set_epoch(0)
    assert weight["lr"] == pytest.approx(0.001)
    assert LRSchedule(opt, Hyp(warmup_epochs=0), 10, 20, 16).warmup_iters == 0
    assert math.isclose(LRSchedule(opt, hyp, 10, 200, 16).warmup_iters, 600)
