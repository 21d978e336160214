"""End-to-end training behaviour on a tiny model and dataset."""

import math

import pytest
import torch

from modyolo.api import train
from modyolo.engine.callbacks import Callbacks
from modyolo.engine.checkpoint import load_checkpoint
from modyolo.engine.config import TrainConfig
from modyolo.engine.trainer import NonFiniteLoss, Trainer
from modyolo.eval.validator import validate


def test_train_writes_run_folder_and_plain_checkpoints(train_kwargs):
    result = train(**{**train_kwargs, "epochs": 2, "noplots": False})
    d = result.save_dir
    for name in (
        "weights/last.pt",
        "weights/best.pt",
        "results.csv",
        "hyp.yaml",
        "args.yaml",
        "results.png",
        "labels.png",
        "train_batch0.jpg",
    ):
        assert (d / name).exists(), name
    rows = (d / "results.csv").read_text().strip().splitlines()
    assert len(rows) == 3 and rows[0].startswith("epoch,box_loss,obj_loss,cls_loss,precision")
    ckpt = load_checkpoint(d / "weights/last.pt")  # weights_only=True inside
    assert (
        ckpt["epoch"] == 1 and ckpt["names"] == ["circle", "square", "triangle", "star", "cross"][: len(ckpt["names"])]
    )
    assert ckpt["model_yaml"]["width_multiple"] == 0.125
    assert all(math.isfinite(v) for v in result.history[-1].values())
    assert result.epochs_completed == 2


def test_run_folders_increment(train_kwargs):
    a = train(**train_kwargs).save_dir
    b = train(**train_kwargs).save_dir
    assert a.name == "exp" and b.name == "exp2"


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(train_kwargs, tmp_path):
    full = train(**{**train_kwargs, "epochs": 3, "name": "full"})

    class Interrupt(Exception):
        pass

    def stop_after_first_epoch(trainer, epoch, row):
        if epoch == 0:
            raise KeyboardInterrupt

    cb = Callbacks()
    cb.add("on_fit_epoch_end", stop_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        Trainer(TrainConfig.from_dict({**train_kwargs, "epochs": 3, "name": "cut"}), cb, evaluator=validate).fit()
    last = tmp_path / "runs" / "cut" / "weights" / "last.pt"
    assert load_checkpoint(last)["epoch"] == 0
    resumed = train(**{**train_kwargs, "resume": str(last)})
    assert resumed.epochs_completed == 3
    a = load_checkpoint(full.last)
    b = load_checkpoint(resumed.last)
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=0, atol=0, msg=f"{key} differs after resume")
    for key, value in a["ema"]["model"].items():
        torch.testing.assert_close(b["ema"]["model"][key], value, rtol=0, atol=0, msg=f"EMA {key} differs")


def test_frozen_layers_and_their_bn_statistics_do_not_change(train_kwargs):
    trainer = Trainer(
        TrainConfig.from_dict({**train_kwargs, "epochs": 2, "freeze": list(range(10))}), evaluator=validate
    )
    before = {k: v.clone() for k, v in trainer.model.state_dict().items() if k.split(".")[1] in map(str, range(10))}
    trainer.fit()
    after = trainer.model.state_dict()
    assert before and any(k.endswith("running_mean") for k in before)
    for k, v in before.items():
        assert torch.equal(after[k], v), f"frozen {k} changed"
    head_key = next(k for k in after if k.startswith("model.24.m.0.weight"))
    assert head_key  # the unfrozen head exists (and trained: checked by the loss test suite)


def test_freeze_schedule_unfreezes_and_rebuilds_the_optimizer(train_kwargs):
    trainer = Trainer(
        TrainConfig.from_dict({**train_kwargs, "epochs": 2, "freeze_schedule": "1:0-9"}), evaluator=validate
    )
    frozen_key = "model.0.conv.weight"
    start = trainer.model.state_dict()[frozen_key].clone()
    assert not trainer.model.model[0].conv.weight.requires_grad
    trainer.fit()
    assert trainer.frozen == []
    assert trainer.model.model[0].conv.weight.requires_grad
    assert not torch.equal(trainer.model.state_dict()[frozen_key], start), "unfrozen layer never trained"


@pytest.mark.parametrize(
    "option",
    [
        {"sam": True},
        {"loss": "vfl"},
        {"optimizer": "AdamW"},
        {"bf16": True},
        {"multi_scale": True, "cos_lr": True, "rect": True},
    ],
)
def test_training_options_run_and_change_weights(train_kwargs, option):
    trainer = Trainer(TrainConfig.from_dict({**train_kwargs, **option}), evaluator=validate)
    start = {k: v.clone() for k, v in trainer.model.state_dict().items() if v.is_floating_point()}
    result = trainer.fit()
    changed = [k for k, v in trainer.model.state_dict().items() if k in start and not torch.equal(v, start[k])]
    assert changed, f"{option}: no weight changed"
    assert all(math.isfinite(v) for k, v in result.history[-1].items())


def test_non_finite_loss_names_step_parts_and_checkpoint(train_kwargs, monkeypatch):
    trainer = Trainer(TrainConfig.from_dict(train_kwargs), evaluator=validate)
    real = trainer.loss_fn

    def nan_loss(preds, targets):
        loss, parts = real(preds, targets)
        return loss * float("nan"), parts

    trainer.loss_fn = nan_loss
    with pytest.raises(NonFiniteLoss, match=r"epoch 0, step 0 \(box, obj, cls = .*last good checkpoint"):
        trainer.fit()


def test_weights_transfer_to_a_new_class_count(train_kwargs, tiny_model_cfg):
    first = train(**train_kwargs)
    trainer = Trainer(TrainConfig.from_dict({**train_kwargs, "cfg": "", "weights": str(first.best), "name": "ft"}))
    ref = load_checkpoint(first.best)["ema"]["model"]
    torch.testing.assert_close(trainer.model.state_dict()["model.0.conv.weight"], ref["model.0.conv.weight"])


def test_unknown_option_suggests_the_near_name(train_kwargs):
    with pytest.raises(ValueError, match="did you mean 'epochs'"):
        TrainConfig.from_dict({**train_kwargs, "epoch": 3})


def test_recipe_runs_stages_from_the_previous_best(train_kwargs, tmp_path):
    from modyolo.engine.recipe import run_recipe

    recipe = tmp_path / "stages.yaml"
    recipe.write_text(
        "stages:\n  - {name: frozen, epochs: 1, freeze: '0-9', fraction: 0.5}\n"
        "  - {name: all, epochs: 1, freeze: '', lr_scale: 0.1}\n"
    )
    results = run_recipe(recipe, TrainConfig.from_dict(train_kwargs), evaluator=validate)
    assert [r.save_dir.name for r in results] == ["frozen", "all"]
    args = (results[1].save_dir / "args.yaml").read_text()
    assert "frozen/weights/best.pt" in args
