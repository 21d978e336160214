import copy

import pytest
import torch
from engine_fakes import make_batch, tiny_model

from modyolo.engine.freeze import (
    FreezeStage,
    freeze_layers,
    frozen_at,
    hold_frozen_bn,
    parse_freeze,
    parse_freeze_schedule,
)
from modyolo.engine.hyp import Hyp
from modyolo.engine.loss import DetectionLoss, scale_loss_gains
from modyolo.engine.optim import build_optimizer


def test_parse_freeze_specs():
    assert parse_freeze(3) == [0, 1, 2] == parse_freeze("3") == parse_freeze([3]) == parse_freeze(["3"])
    assert parse_freeze([0, 4, 2]) == [0, 2, 4] == parse_freeze("0,2,4") == parse_freeze(["0", "2", "4"])
    assert parse_freeze("0-2,5") == [0, 1, 2, 5] and parse_freeze(None) == [] and parse_freeze(0) == []
    with pytest.raises(ValueError, match="--freeze"):
        parse_freeze("0-x")


def test_parse_freeze_schedule():
    stages = parse_freeze_schedule("10:0-9")
    assert stages == [FreezeStage(10, tuple(range(10)))]
    stages = parse_freeze_schedule("5:0-9; 10:0-4")
    assert frozen_at(stages, 0) == list(range(10)) and frozen_at(stages, 5) == list(range(5))
    assert frozen_at(stages, 10) == [] and frozen_at(stages, 12, base=[0]) == [0]
    with pytest.raises(ValueError, match="EPOCHS:LAYERS"):
        parse_freeze_schedule("0-9")
    with pytest.raises(ValueError, match="increase"):
        parse_freeze_schedule("10:0-3;5:0-1")


def test_frozen_layers_and_their_bn_statistics_stay_bit_identical():
    model = tiny_model()
    frozen = [0, 1]
    names = freeze_layers(model, frozen)
    assert names and all(n.startswith(("model.0.", "model.1.")) for n in names)
    before = copy.deepcopy({k: v for k, v in model.state_dict().items() if k.startswith(("model.0.", "model.1."))})
    trained_before = model.model[3][0].weight.detach().clone()
    opt = build_optimizer(model, "SGD", 0.05, 0.9, 5e-4)
    loss_fn = DetectionLoss(model, scale_loss_gains(Hyp(), 3, 3, 64))
    for step in range(3):
        model.train()
        hold_frozen_bn(model, frozen)
        imgs, targets = make_batch(seed=step)
        loss_fn(model(imgs), targets)[0].backward()
        opt.step()
        opt.zero_grad()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights, running stats, counters
    assert not torch.equal(trained_before, model.model[3][0].weight)
    assert model.model[2][1].num_batches_tracked.item() == 3


def test_without_hold_bn_stats_drift_and_unfreeze_restores_training():
    model = tiny_model()
    freeze_layers(model, [0])
    rm = model.model[0][1].running_mean.clone()
    model.train()
    model(make_batch()[0])
    assert not torch.equal(rm, model.model[0][1].running_mean)  # the flaw hold_frozen_bn fixes
    freeze_layers(model, [])
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError, match="layers 0-5"):
        freeze_layers(model, [6])
