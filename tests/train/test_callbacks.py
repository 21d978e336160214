"""The trainer's hooks: its own callbacks in a fixed order, replaceable by name; the evaluator passed
in; the caller's config never changed."""

import dataclasses

import pytest

from modyolo.api import train
from modyolo.engine.callbacks import Callbacks, StopTraining
from modyolo.engine.checkpoint import load_checkpoint
from modyolo.engine.config import TrainConfig
from modyolo.engine.trainer import Trainer
from modyolo.eval.validator import validate

OWN_AND_REPORTS = {
    "on_train_start": ["validation", "mine", "labels_picture"],
    "on_prepare_epoch": ["freeze_schedule", "close_mosaic"],
    "on_epoch_start": [],
    "on_optimizer_step": ["ema"],
    "on_batch_end": ["batch_pictures"],
    "on_train_epoch_end": ["ema_attributes", "validation"],
    "on_fit_epoch_end": ["early_stopping", "checkpoint", "mine", "results_csv", "tensorboard", "log_epoch"],
    "on_train_interrupt": ["checkpoint"],
    "on_train_end": ["tensorboard_close", "summary", "results_picture"],
}


def test_own_callbacks_run_first_then_the_passed_ones_then_the_reports(train_kwargs):
    passed = Callbacks()
    passed.add("on_fit_epoch_end", lambda trainer, epoch, row: None, "mine")
    passed.add("on_train_start", lambda trainer: None, "mine")
    trainer = Trainer(TrainConfig.from_dict({**train_kwargs, "noplots": False}), passed, evaluator=validate)
    assert passed.names("on_fit_epoch_end") == ["mine"]  # the trainer attached its own to a copy
    assert {event: trainer.callbacks.names(event) for event in OWN_AND_REPORTS} == OWN_AND_REPORTS
    trainer.callbacks.add("on_fit_epoch_end", print, "after")  # added later: runs after the reports
    assert trainer.callbacks.names("on_fit_epoch_end")[-2:] == ["log_epoch", "after"]


def test_callbacks_name_what_is_wrong():
    cb = Callbacks()
    with pytest.raises(ValueError, match="unknown training event 'on_epoch_ended'; events are on_train_start"):
        cb.add("on_epoch_ended", print)
    cb.add("on_fit_epoch_end", print)
    with pytest.raises(ValueError, match="no callback named 'checkpoint' on on_fit_epoch_end; there are: print"):
        cb.replace("on_fit_epoch_end", "checkpoint", print)
    with pytest.raises(ValueError, match="no callback named 'nope' on any event; names: print"):
        cb.remove("nope")
    first = Callbacks()
    first.add("on_fit_epoch_end", len, "first")
    cb.prepend(first)
    assert cb.names("on_fit_epoch_end") == ["first", "print"] and cb.get("on_fit_epoch_end", "first") is len


def test_a_trainer_without_an_evaluator_refuses_before_the_first_step(train_kwargs):
    trainer = Trainer(TrainConfig.from_dict(train_kwargs))  # building one to inspect needs none
    with pytest.raises(ValueError, match=r"no evaluator.*evaluator=modyolo\.eval\.validator\.validate"):
        trainer.fit()
    assert not (trainer.run.weights_dir / "last.pt").exists()


def test_replaced_validation_drives_best_pt_ties_and_the_early_stop(train_kwargs):
    """A 'validation' of one's own needs no evaluator; best.pt follows ties; patience stops the run."""
    fitness_by_epoch = [0.5, 0.5, 0.4, 0.9]

    def scripted(trainer, epoch):
        f = fitness_by_epoch[epoch]
        trainer.metrics = {"precision": f, "recall": f, "mAP50": f, "mAP50-95": f, "fitness": f}

    config = TrainConfig.from_dict({**train_kwargs, "epochs": 4, "patience": 1, "max_batches": 1})
    trainer = Trainer(config)
    trainer.callbacks.replace("on_train_epoch_end", "validation", scripted)
    result = trainer.fit()
    assert result.stopped_early == "no improvement for 1 epochs" and result.epochs_completed == 3
    assert [row["mAP50"] for row in result.history] == [0.5, 0.5, 0.4]
    assert load_checkpoint(result.best)["epoch"] == 1  # the tie at epoch 1 took best.pt
    # the checkpoint holds the early-stopping state after its own epoch: a run resumed from it
    # counts patience from epoch 1, as the uninterrupted run did
    assert load_checkpoint(result.best)["extra"]["early_stopping"]["best_epoch"] == 1
    assert load_checkpoint(result.last)["epoch"] == 2
    rows = (result.save_dir / "results.csv").read_text().strip().splitlines()
    assert len(rows) == 4  # header + every epoch, the stopping one too


def test_stop_training_from_a_passed_callback_and_a_removed_checkpoint(train_kwargs):
    def prune(trainer, epoch, row):
        raise StopTraining("pruned by the test")

    passed = Callbacks()
    passed.add("on_fit_epoch_end", prune)
    trainer = Trainer(TrainConfig.from_dict({**train_kwargs, "epochs": 3, "max_batches": 1}), passed, validate)
    trainer.callbacks.remove("checkpoint")
    result = trainer.fit()
    assert result.stopped_early == "pruned by the test" and result.epochs_completed == 1
    assert not (result.save_dir / "weights" / "last.pt").exists()
    assert not (result.save_dir / "results.csv").exists()  # the reports come after the pruner, as before


def test_resume_resolves_a_new_config_and_leaves_the_callers_alone(train_kwargs, tmp_path):
    first = train(**{**train_kwargs, "max_batches": 1})
    asked = TrainConfig.from_dict(
        {"resume": True, "project": train_kwargs["project"], "epochs": 2, "workers": 0, "verbose": False}
    )
    before = dataclasses.replace(asked)
    trainer = Trainer(asked, evaluator=validate)
    assert asked == before  # nothing written into the caller's object
    assert trainer.cfg.resume == str(first.last) and trainer.cfg.epochs == 2 and trainer.cfg.exist_ok
    assert trainer.cfg.data == train_kwargs["data"] and trainer.cfg.imgsz == 64  # the checkpoint's train_args
    assert trainer.start_epoch == 1 and trainer.run.save_dir == first.save_dir.resolve()


def test_modyolo_train_takes_a_config_with_overrides_and_names_a_wrong_option(train_kwargs):
    import modyolo

    assert modyolo.train is train
    config = TrainConfig.from_dict(train_kwargs)
    result = modyolo.train(config, max_batches=1, name="api")
    assert result.save_dir.name == "api" and result.epochs_completed == 1 and result.metrics["fitness"] >= 0
    assert config.name == "exp" and config.max_batches == 0  # the config given is left alone
    with pytest.raises(ValueError, match="did you mean 'max_batches'"):
        modyolo.train(config, max_batch=1)
