import random

import numpy as np
import pytest
import torch
from engine_fakes import make_batch, tiny_model
from torch import nn

from modyolo.engine.checkpoint import (
    CheckpointError,
    EarlyStopping,
    capture_rng_state,
    fitness,
    inference_state_dict,
    load_checkpoint,
    restore_rng_state,
    resume_training,
    save_checkpoint,
    strip_checkpoint,
)
from modyolo.engine.ema import ModelEMA
from modyolo.engine.hyp import Hyp
from modyolo.engine.loss import DetectionLoss, scale_loss_gains
from modyolo.engine.optim import build_optimizer
from modyolo.engine.schedule import LRSchedule, scaled_weight_decay

EPOCHS, BATCHES, BS = 3, 3, 2


def run_epochs(model, opt, sched, ema, loss_fn, start: int, stop: int) -> None:
    """A compact trainer loop: warmup, accumulation, EMA per step, flush at epoch end."""
    pending = 0
    for epoch in range(start, stop):
        sched.set_epoch(epoch)
        model.train()
        for i in range(BATCHES):
            ni = i + BATCHES * epoch
            accumulate = sched.warmup(ni, epoch)
            seed = int(torch.randint(0, 10_000, (1,)))  # data order drawn from the torch RNG
            imgs, targets = make_batch(BS, 64, seed=seed + random.randint(0, 9) + int(np.random.randint(0, 9)))
            loss, _ = loss_fn(model(imgs), targets)
            loss.backward()
            pending += 1
            if pending >= accumulate or i == BATCHES - 1:  # flush at epoch end: resume is exact
                opt.step()
                opt.zero_grad()
                ema.update(model)
                pending = 0


def build(seed: int):
    model = tiny_model(seed=seed)
    hyp = Hyp(warmup_epochs=1.0)
    opt = build_optimizer(model, "SGD", hyp.lr0, hyp.momentum, scaled_weight_decay(hyp.weight_decay, BS, 2, 4))
    sched = LRSchedule(opt, hyp, EPOCHS, BATCHES, BS, nominal_batch=4)
    return model, opt, sched, ModelEMA(model), DetectionLoss(model, scale_loss_gains(hyp, 3, 3, 64)), hyp


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    seed_all(0)
    model, opt, sched, ema, loss_fn, _ = build(0)
    run_epochs(model, opt, sched, ema, loss_fn, 0, EPOCHS)
    straight = model.state_dict(), ema.ema.state_dict()

    seed_all(0)
    model, opt, sched, ema, loss_fn, hyp = build(0)
    run_epochs(model, opt, sched, ema, loss_fn, 0, 1)
    save_checkpoint(
        tmp_path / "last.pt",
        model=model,
        ema=ema,
        optimizer=opt,
        epoch=0,
        hyp=hyp,
        names=["a", "b", "c"],
        train_args={"save_dir": tmp_path, "imgsz": 64},
    )
    seed_all(123)  # a new process: other RNG state, other initial weights
    model, opt, sched, ema, loss_fn, _ = build(1)
    start = resume_training(load_checkpoint(tmp_path / "last.pt"), model=model, optimizer=opt, ema=ema)
    assert start == 1
    run_epochs(model, opt, sched, ema, loss_fn, start, EPOCHS)
    for want, got in zip(straight, (model.state_dict(), ema.ema.state_dict())):
        assert want.keys() == got.keys()
        assert all(torch.equal(want[k], got[k]) for k in want)


def test_plain_data_atomic_write_and_strip(tmp_path):
    model = tiny_model()
    ema = ModelEMA(model)
    path = save_checkpoint(
        tmp_path / "w" / "best.pt",
        model=model,
        ema=ema,
        epoch=4,
        best_fitness=0.5,
        hyp=Hyp(),
        metrics={"mAP50": np.float32(0.5)},
        names={0: "a"},
    )
    assert [p.name for p in path.parent.iterdir()] == ["best.pt"]  # no temp file left
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["format"] == "modyolo.checkpoint" and ckpt["epoch"] == 4 and ckpt["hyp"]["lr0"] == 0.01
    assert ckpt["model_yaml"] == model.yaml and ckpt["metrics"]["mAP50"] == 0.5
    stripped = load_checkpoint(strip_checkpoint(path, tmp_path / "s.pt"))
    assert stripped["optimizer"] is None and stripped["ema"] is None
    assert all(torch.equal(v, stripped["model"][k]) for k, v in inference_state_dict(ckpt).items())
    with pytest.raises(TypeError, match=r"\['train_args'\]\['bad'\]"):
        save_checkpoint(tmp_path / "x.pt", model=model, epoch=0, train_args={"bad": object()})
    assert not (tmp_path / "x.pt").exists()


def test_load_errors_are_explained(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_checkpoint(junk)
    pickled = tmp_path / "pickled.pt"
    torch.save({"model": nn.Conv2d(1, 1, 1)}, pickled)
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        load_checkpoint(pickled)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    listing = tmp_path / "list.pt"
    torch.save([1, 2], listing)
    with pytest.raises(CheckpointError, match="neither"):
        load_checkpoint(listing)
    bare = tmp_path / "sd.pt"
    torch.save(tiny_model().state_dict(), bare)
    ckpt = load_checkpoint(bare)
    assert ckpt["format"] == "state_dict"
    with pytest.raises(CheckpointError, match="resume"):
        resume_training(ckpt, model=tiny_model())


def test_pickled_yolov5_model_gets_conversion_hint(tmp_path):
    pytest.importorskip("yolov5.models.yolo", reason="yolov5 is not installed; cannot write a pickled yolov5 model")
    from yolov5.models.common import Conv

    path = tmp_path / "yolov5n.pt"
    torch.save({"model": Conv(3, 4)}, path)
    with pytest.raises(CheckpointError, match="pickled yolov5 model.*state_dict"):
        load_checkpoint(path)


def test_rng_roundtrip():
    state = capture_rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a


def test_fitness_and_early_stopping():
    assert fitness({"mAP50": 0.5, "mAP50-95": 0.3}) == pytest.approx(0.32)
    assert fitness([0.9, 0.8, 0.5, 0.3]) == pytest.approx(0.32)
    stopper = EarlyStopping(patience=2)
    assert [stopper(e, f) for e, f in enumerate([0.1, 0.2, 0.15, 0.19, 0.3])] == [False, False, False, True, False]
    assert not any(EarlyStopping(0)(e, 0.0 - e) for e in range(50))
    other = EarlyStopping(2)
    other.load_state_dict(stopper.state_dict())
    assert other.best_epoch == 4
