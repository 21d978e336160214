import math

import torch
from engine_fakes import tiny_model

from modyolo.engine.ema import ModelEMA


def test_ramped_decay_and_update():
    model = tiny_model()
    ema = ModelEMA(model, decay=0.9999, tau=2000)
    assert not any(p.requires_grad for p in ema.ema.parameters()) and not ema.ema.training
    e0 = ema.ema.model[0][0].weight.clone()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
        model.model[0][1].num_batches_tracked.fill_(7)
    ema.update(model)
    d = 0.9999 * (1 - math.exp(-1 / 2000))
    assert ema.decay_at(1) == d
    torch.testing.assert_close(ema.ema.model[0][0].weight, d * e0 + (1 - d) * model.model[0][0].weight)
    assert ema.ema.model[0][1].num_batches_tracked.item() == 7  # integers copied, not averaged
    assert ema.decay_at(10**6) == 0.9999


def test_state_dict_roundtrip():
    model = tiny_model()
    ema = ModelEMA(model)
    for _ in range(3):
        ema.update(model)
    other = ModelEMA(tiny_model(seed=1))
    other.load_state_dict(ema.state_dict())
    assert other.updates == 3
    assert all(torch.equal(a, b) for a, b in zip(ema.ema.state_dict().values(), other.ema.state_dict().values()))
