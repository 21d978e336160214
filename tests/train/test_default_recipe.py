"""The default recipe as a user gets it from the command line, and yolov5's recipe when asked for.

- ``modyolo train`` with default flags resolves ``--optimizer auto`` (AdamW, a step per batch,
  close-mosaic) and ``--precision auto``, logs both, and writes the resolved values to the run;
- ``--optimizer SGD --hyp scratch-low`` builds exactly yolov5 7.0's optimizer (its own
  ``smart_optimizer`` on the same model), nominal batch 64, weight-decay scaling, warm-up and LR
  schedule (yolov5's train.py formulas, written out below).
"""

import argparse
import logging

import numpy as np
import pytest
import yaml

from modyolo.cli import main
from modyolo.cli.train import add_arguments, config_from_args
from modyolo.engine.checkpoint import load_checkpoint
from modyolo.engine.hyp import load_hyp
from modyolo.engine.trainer import Trainer
from tiny_run import tiny_cfg_file, tiny_train_argv


def _cli_config(argv):
    p = argparse.ArgumentParser()
    add_arguments(p)
    return config_from_args(p.parse_args(argv))


def test_default_flags_train_with_the_auto_recipe_and_log_it(tiny_data, tmp_path, caplog):
    project = tmp_path / "runs"
    argv = tiny_train_argv(tiny_data, tiny_cfg_file(tmp_path), project, "--quiet", epochs=3)
    with caplog.at_level(logging.INFO, logger="modyolo"):
        assert main(argv) == 0
    text = caplog.text
    assert "optimizer auto: 6 batches in total < 10000 -> AdamW(lr=0.001, momentum=0.9), nbs 4" in text
    assert "close-mosaic 1" in text and "precision: " in text and "memory format channels_last" in text
    assert "epoch 2: mosaic off for the last 1 epochs" in text
    run = project / "exp"
    args = yaml.safe_load((run / "args.yaml").read_text())
    assert (args["optimizer"], args["nbs"], args["close_mosaic"]) == ("AdamW", 4, 1)
    assert args["hyp"]["lr0"] == 0.001 and args["hyp"]["warmup_epochs"] == 0.0  # args.yaml rebuilds the run
    hyp = load_hyp(str(run / "hyp.yaml"))
    assert (hyp.lr0, hyp.momentum, hyp.lrf, hyp.warmup_epochs) == (0.001, 0.9, 0.1, 0.0)
    ckpt = load_checkpoint(run / "weights" / "last.pt")
    assert ckpt["train_args"]["optimizer"] == "AdamW" and ckpt["hyp"]["lr0"] == 0.001


def test_yolov5_flags_give_yolov5s_optimizer_schedule_and_warmup(train_kwargs, tmp_path):
    torch_utils = pytest.importorskip("yolov5.utils.torch_utils")
    batch, epochs = 4, 5
    cfg = _cli_config(
        [
            "--data",
            train_kwargs["data"],
            "--cfg",
            tiny_cfg_file(tmp_path),
            "--optimizer",
            "SGD",
            "--hyp",
            "scratch-low",
            "--epochs",
            str(epochs),
            "--img",
            "64",
            "--batch-size",
            str(batch),
            "--workers",
            "0",
            "--project",
            str(tmp_path / "runs"),
        ]
    )
    trainer = Trainer(cfg)
    assert (trainer.cfg.optimizer, trainer.cfg.nbs, trainer.cfg.close_mosaic) == ("SGD", 64, 0)
    hyp = load_hyp("scratch-low")
    assert trainer.run.hyp == hyp  # nothing fitted

    # yolov5 train.py: nbs = 64; accumulate = max(round(nbs / batch_size), 1);
    # hyp['weight_decay'] *= batch_size * accumulate / nbs; optimizer = smart_optimizer(...)
    accumulate = max(round(64 / batch), 1)
    decay = hyp.weight_decay * batch * accumulate / 64
    ref = torch_utils.smart_optimizer(trainer.model, "SGD", hyp.lr0, hyp.momentum, decay)
    ours = trainer.optimizer
    assert type(ours) is type(ref) and len(ours.param_groups) == len(ref.param_groups) == 3
    for g, r in zip(ours.param_groups, ref.param_groups):
        assert [id(p) for p in g["params"]] == [id(p) for p in r["params"]]
        for key in ("lr", "momentum", "nesterov", "weight_decay", "dampening"):
            assert g[key] == pytest.approx(r[key]), key
    assert trainer.schedule.accumulate == accumulate

    # yolov5: nw = max(round(warmup_epochs * nb), 100); during warm-up accumulate, lr and momentum
    # follow np.interp over [0, nw]; lf = linear from 1 to lrf; lr = initial_lr * lf(epoch).
    nb = len(trainer.train_loader)
    nw = max(round(hyp.warmup_epochs * nb), 100)
    assert trainer.schedule.warmup_iters == nw

    def lf(x):
        return (1 - x / epochs) * (1.0 - hyp.lrf) + hyp.lrf

    for ni, epoch in ((0, 0), (1, 0), (37, 3), (nw, 4)):
        trainer.schedule.set_epoch(epoch)
        got = trainer.schedule.warmup(ni, epoch)
        want_acc = max(1, np.interp(ni, [0, nw], [1, 64 / batch]).round())
        assert got == want_acc, ni
        for j, g in enumerate(ours.param_groups):
            start = hyp.warmup_bias_lr if j == 0 else 0.0
            assert g["lr"] == pytest.approx(np.interp(ni, [0, nw], [start, g["initial_lr"] * lf(epoch)]))
            assert g["momentum"] == pytest.approx(np.interp(ni, [0, nw], [hyp.warmup_momentum, hyp.momentum]))
    assert trainer.schedule.warmup(nw + 1, 4) == accumulate
    for epoch in range(epochs):
        trainer.schedule.set_epoch(epoch)
        assert [g["lr"] for g in ours.param_groups] == pytest.approx([hyp.lr0 * lf(epoch)] * 3)


def test_explicit_hyp_file_keeps_sgd_under_auto_and_bad_precision_is_an_error(train_kwargs, tmp_path):
    trainer = Trainer(
        _cli_config(
            [
                "--data",
                train_kwargs["data"],
                "--cfg",
                "yolov5n.yaml",
                "--hyp",
                "scratch-low",
                "--img",
                "64",
                "--epochs",
                "2",
                "--batch-size",
                "4",
                "--workers",
                "0",
                "--project",
                str(tmp_path / "runs"),
            ]
        )
    )
    assert trainer.cfg.optimizer == "SGD" and trainer.cfg.nbs == 64 and trainer.run.hyp.lr0 == 0.01
    with pytest.raises(ValueError, match="--precision fp16 needs a CUDA device"):
        Trainer(
            _cli_config(
                [
                    "--data",
                    train_kwargs["data"],
                    "--cfg",
                    "yolov5n.yaml",
                    "--precision",
                    "fp16",
                    "--device",
                    "cpu",
                    "--img",
                    "64",
                    "--epochs",
                    "1",
                    "--batch-size",
                    "4",
                    "--workers",
                    "0",
                    "--project",
                    str(tmp_path / "runs"),
                ]
            )
        )


def test_runs_started_by_tune_and_the_demo_resolve_like_train(tiny_data):
    from modyolo.engine.config import TrainConfig
    from modyolo.engine.recipe_auto import (
        count_train_images,
        resolve_config,
        train_flags,
    )
    from modyolo.tools.demo import build_hyp, load_demo_config

    assert count_train_images(tiny_data) == 8 and count_train_images(tiny_data, 0.5) == 4
    cfg, recipe = resolve_config(TrainConfig(data=tiny_data, epochs=3, batch_size=4))
    assert (cfg.optimizer, cfg.nbs, cfg.close_mosaic) == ("AdamW", 4, 1) and cfg.hyp["lr0"] == recipe.hyp.lr0 == 0.001
    assert train_flags(cfg) == "--optimizer AdamW --nbs 4 --close-mosaic 1"
    again, _ = resolve_config(cfg)  # resolved once, a trial's hyp file cannot flip it to SGD
    assert (again.optimizer, again.hyp) == (cfg.optimizer, cfg.hyp)
    sgd, _ = resolve_config(TrainConfig(data=tiny_data, hyp="scratch-low"))
    assert sgd.optimizer == "SGD" and sgd.hyp == "scratch-low" and sgd.nbs == 64

    demo = load_demo_config()
    assert build_hyp(demo) == ""  # the shipped demo trains with modyolo train's defaults
    assert build_hyp({"hyp": {"mosaic": 0.5}}) == {"mosaic": 0.5}
    assert build_hyp({"hyp": {"base": "scratch-low", "lr0": 0.002}})["momentum"] == 0.937
