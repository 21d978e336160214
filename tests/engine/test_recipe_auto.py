"""The --optimizer auto rule (engine/recipe_auto.py) and the precision choice (engine/precision.py)."""

import math

import pytest
import torch

from modyolo.engine import precision as prec
from modyolo.engine.hyp import Hyp, load_hyp, stated_keys
from modyolo.engine.recipe_auto import (
    SHORT_RUN_BATCHES,
    auto_close_mosaic,
    fitted_adamw_lr,
    resolve_recipe,
)


def test_short_run_gets_adamw_stepping_every_batch_without_warmup():
    r = resolve_recipe(800, 16, 30, Hyp())
    assert r.auto and r.optimizer == "AdamW" and r.batches == 1500
    assert r.nbs == 16 and r.close_mosaic == 10
    assert (r.hyp.lr0, r.hyp.momentum, r.hyp.lrf, r.hyp.warmup_epochs) == (0.002, 0.9, 0.1, 0.0)
    assert r.hyp.weight_decay == Hyp().weight_decay and r.hyp.mosaic == Hyp().mosaic  # nothing else changes
    assert r.changed == {"lr0": 0.002, "momentum": 0.9, "lrf": 0.1, "warmup_epochs": 0.0}
    assert "1500 batches in total < 10000 -> AdamW(lr=0.002, momentum=0.9), nbs 16" in r.summary
    assert "--optimizer SGD" in r.summary


def test_long_run_gets_yolov5s_sgd_recipe_unchanged():
    hyp = load_hyp("scratch-low")
    n = math.ceil(SHORT_RUN_BATCHES / 100) * 16  # 100 epochs of ceil(n/16) batches reach the threshold
    r = resolve_recipe(n, 16, 100, hyp)
    assert r.batches >= SHORT_RUN_BATCHES and r.optimizer == "SGD" and r.nbs == 64
    assert r.hyp == hyp and r.changed == {} and r.close_mosaic == 10
    just_short = resolve_recipe(n - 16 * 2, 16, 100, hyp)
    assert just_short.batches < SHORT_RUN_BATCHES and just_short.optimizer == "AdamW"


def test_hyp_file_that_sets_lr0_keeps_sgd_and_its_values(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("lr0: 0.005\nmomentum: 0.95\nmosaic: 0.5\n")
    hyp = load_hyp(str(path))
    r = resolve_recipe(100, 16, 10, hyp, stated=stated_keys(str(path)))
    assert r.optimizer == "SGD" and r.hyp.lr0 == 0.005 and r.hyp.momentum == 0.95 and r.nbs == 64
    assert "sets lr0/momentum" in r.summary
    # A shipped yolov5 hyp named explicitly states every key, so it trains as yolov5's SGD too.
    assert resolve_recipe(100, 16, 10, load_hyp("scratch-low"), stated=stated_keys("scratch-low")).optimizer == "SGD"


def test_hyp_without_lr_keys_is_fitted_but_stated_keys_are_kept():
    source = {"warmup_epochs": 1.0, "mosaic": 0.5}
    r = resolve_recipe(100, 8, 10, load_hyp(source), stated=stated_keys(source))
    assert r.optimizer == "AdamW" and r.hyp.warmup_epochs == 1.0 and r.hyp.mosaic == 0.5
    assert "warmup_epochs" not in r.changed and "kept from the hyp: warmup_epochs=1" in r.summary


def test_named_optimizer_turns_the_rule_off():
    hyp = Hyp()
    for name in ("SGD", "AdamW", "Adam"):
        r = resolve_recipe(100, 16, 30, hyp, optimizer=name)
        assert not r.auto and r.optimizer == name and r.nbs == 64 and r.close_mosaic == 0 and r.hyp == hyp
    r = resolve_recipe(100, 16, 30, hyp, optimizer="SGD", nbs=16, close_mosaic=5)
    assert (r.nbs, r.close_mosaic) == (16, 5)


def test_explicit_nbs_and_close_mosaic_survive_auto():
    r = resolve_recipe(100, 16, 30, Hyp(), nbs=64, close_mosaic=0)
    assert r.optimizer == "AdamW" and r.nbs == 64 and r.close_mosaic == 0
    assert r.hyp.lr0 == fitted_adamw_lr(16, 64) == 0.004  # 64 images per step: sqrt(4) x 0.002


def test_fitted_lr_and_close_mosaic_rules():
    assert fitted_adamw_lr(16, 16) == 0.002
    assert fitted_adamw_lr(4, 4) == 0.001 and fitted_adamw_lr(64, 64) == 0.004
    assert fitted_adamw_lr(1, 1) == 0.0005 and fitted_adamw_lr(1024, 1024) == 0.004  # clipped
    assert [auto_close_mosaic(e) for e in (1, 2, 3, 9, 30, 300)] == [0, 0, 1, 3, 10, 10]


@pytest.mark.parametrize("args", [(0, 16, 1), (10, 0, 1), (10, 16, 0)])
def test_impossible_sizes_are_errors(args):
    with pytest.raises(ValueError, match="cannot plan"):
        resolve_recipe(*args, Hyp())


def test_stated_keys_sources(tmp_path):
    assert stated_keys("") == stated_keys(None) == frozenset()
    assert stated_keys({"lr0": 0.1}) == {"lr0"}
    assert "lr0" in stated_keys("scratch-low") and "mosaic" in stated_keys("hyp.scratch-high.yaml")
    assert load_hyp("") == Hyp()


def test_precision_choices(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert prec.resolve_precision("auto", cuda).name == "fp16"
    assert prec.resolve_precision("auto", cuda, sam=True).name == "bf16"
    monkeypatch.setattr(prec, "cpu_has_native_bf16", lambda: True)
    assert prec.resolve_precision("auto", cpu).name == "bf16"
    monkeypatch.setattr(prec, "cpu_has_native_bf16", lambda: False)
    assert prec.resolve_precision("auto", cpu).name == "fp32"
    assert prec.resolve_precision("auto", cpu, bf16_alias=True).name == "bf16"
    assert prec.resolve_precision("fp32", cuda).autocast() is not None
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        prec.resolve_precision("fp16", cpu)
    with pytest.raises(ValueError, match="--bf16 and --precision fp32 disagree"):
        prec.resolve_precision("fp32", cpu, bf16_alias=True)
    with pytest.raises(ValueError, match="choose one of"):
        prec.resolve_precision("int8", cpu)


def test_bf16_autocast_runs_a_cpu_conv_in_bf16():
    p = prec.Precision("bf16", "cpu", "test")
    conv = torch.nn.Conv2d(3, 4, 3)
    with p.autocast()():
        out = conv(torch.randn(1, 3, 8, 8))
    assert out.dtype == torch.bfloat16 and not p.grad_scaler().is_enabled()
    with prec.Precision("fp32", "cpu", "test").autocast()():
        assert conv(torch.randn(1, 3, 8, 8)).dtype == torch.float32
