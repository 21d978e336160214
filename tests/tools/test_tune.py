"""``modyolo tune``: search space, samplers, and tiny end-to-end searches (resume, failures, two
processes, stale trials, best_hyp.yaml that trains)."""

from __future__ import annotations

import copy
import csv
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

optuna = pytest.importorskip("optuna")

from modyolo.cli import main as cli_main  # noqa: E402
from modyolo.data.synthetic import make_shapes_dataset  # noqa: E402
from modyolo.engine.config import TrainConfig  # noqa: E402
from modyolo.engine.hyp import Hyp, load_hyp  # noqa: E402
from modyolo.engine.trainer import NonFiniteLoss, Trainer  # noqa: E402
from modyolo.nn.graph import load_model_yaml  # noqa: E402
from modyolo.tools import tune as tune_mod  # noqa: E402
from modyolo.tools.tune import TuneOptions, tune  # noqa: E402
from modyolo.tools.tune_report import PLOTS  # noqa: E402
from modyolo.tools.tune_samplers import SAMPLERS, EvolveSampler, make_sampler  # noqa: E402
from modyolo.tools.tune_space import EVOLVE_META, default_space, head_family, load_space  # noqa: E402

SHIPPED_SPACE = Path(tune_mod.__file__).resolve().parent.parent / "cfg" / "tune" / "space.yaml"


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> str:
    return str(make_shapes_dataset(tmp_path_factory.mktemp("shapes"), n_train=8, n_val=4, seed=0, img_size=(96, 160)))


@pytest.fixture(scope="module")
def tiny_cfg_path(tmp_path_factory) -> str:
    cfg, _ = load_model_yaml("yolov5n.yaml")
    cfg = copy.deepcopy(cfg)
    cfg["width_multiple"] = 0.125
    path = tmp_path_factory.mktemp("model") / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


@pytest.fixture
def base_config(tiny_data, tiny_cfg_path, tmp_path) -> TrainConfig:
    return TrainConfig(
        data=tiny_data,
        cfg=tiny_cfg_path,
        epochs=1,
        imgsz=64,
        batch_size=4,
        workers=0,
        max_batches=2,
        project=str(tmp_path / "runs"),
        name="study",
        verbose=False,
        seed=0,
    )


def tiny_cli_args(data: str, cfg: str, project: Path) -> list[str]:
    return [
        "--data",
        data,
        "--cfg",
        cfg,
        "--epochs",
        "1",
        "--img",
        "64",
        "--batch-size",
        "4",
        "--workers",
        "0",
        "--project",
        str(project),
        "--quiet",
        "--device",
        "cpu",
    ]


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# -- search space ---------------------------------------------------------------------------------
def test_default_space_is_yolov5s_evolve_bounds_for_every_key():
    space = default_space()
    assert set(space.params) == set(EVOLVE_META) and len(space.params) == 28
    assert (space.params["lr0"].low, space.params["lr0"].high, space.params["lr0"].log) == (1e-5, 1e-1, True)
    assert (space.params["degrees"].low, space.params["degrees"].high) == (0.0, 45.0)
    assert space.params["momentum"].gain == 0.3 and space.params["iou_t"].gain == 0
    base = space.base_params(Hyp())
    assert base["lr0"] == 0.01 and base["mosaic"] == 1.0
    space.hyp_from(Hyp(), base)  # the base hyp, clipped into the bounds, is a valid hyp


def test_space_file_overrides_bounds_scale_fixed_and_exclusions(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "params": {"lr0": {"low": 1e-4, "high": 0.02}, "momentum": [0.9, 0.95], "rho": [0.01, 0.1]},
                "fixed": {"mosaic": 0.5},
                "exclude": ["mixup", "copy_paste"],
            }
        )
    )
    space = load_space(path)
    assert (space.params["lr0"].low, space.params["lr0"].high, space.params["lr0"].log) == (1e-4, 0.02, True)
    assert (space.params["momentum"].low, space.params["momentum"].high) == (0.9, 0.95)
    assert "rho" in space.params  # a modyolo key yolov5 does not evolve can be added with bounds
    assert "mosaic" not in space.params and space.fixed == {"mosaic": 0.5}
    assert "mixup" not in space.params and "copy_paste" not in space.params
    only = tmp_path / "only.yaml"
    only.write_text("only: [lr0, box]\n")
    assert sorted(load_space(only).params) == ["box", "lr0"]
    shipped = load_space(SHIPPED_SPACE)
    assert "iou_t" not in shipped.params and shipped.params["lr0"].log


@pytest.mark.parametrize(
    "text, message",
    [
        ("params: {lr_0: [0.001, 0.1]}\n", "did you mean 'lr0'"),
        ("params: {momentum: [0.9, 0.8]}\n", "must be below high"),
        ("params: {weight_decay: {low: 0.0, high: 0.001, log: true}}\n", "log-scale range needs low > 0"),
        ("params: {loss: [0, 1]}\n", "not a numeric hyperparameter"),
        ("fixed: {scale: 1.5}\n", "scale"),
        ("parms: {}\n", "did you mean 'params'"),
    ],
)
def test_space_file_errors_name_the_file_key_and_fix(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=re.escape(message)) as e:
        load_space(path)
    assert "bad.yaml" in str(e.value)


# -- samplers -------------------------------------------------------------------------------------
def _quadratic(space):
    """A cheap stand-in objective: the best hyp has lr0 = 0.003 and box = 0.1."""

    def objective(trial):
        hyp = space.suggest(trial, Hyp())
        return -(((hyp.lr0 - 0.003) * 100) ** 2) - ((hyp.box - 0.1) * 10) ** 2

    return objective


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_stays_in_bounds_and_is_reproducible(name):
    space = load_space(None)
    base = space.base_params(Hyp())

    def run_study():
        study = optuna.create_study(direction="maximize", sampler=make_sampler(name, 7, space, base, 6))
        study.optimize(_quadratic(space), n_trials=6)
        return [t.params for t in study.trials]

    params = run_study()
    assert params[0] == base  # every search starts from the base hyp
    for p in params:
        for k, v in p.items():
            assert space.params[k].low <= v <= space.params[k].high, (name, k, v)
    assert len({tuple(sorted(p.items())) for p in params}) == len(params), "no trial repeats another"
    assert run_study() == params, "same seed, same trials"


def test_evolve_sampler_mutates_a_top_parent_like_yolov5():
    space = load_space(None)
    base = space.base_params(Hyp())
    gains = {k: p.gain for k, p in space.params.items()}
    study = optuna.create_study(direction="maximize", sampler=EvolveSampler(base, gains, seed=0))
    study.optimize(_quadratic(space), n_trials=8)
    first, later = study.trials[0].params, [t.params for t in study.trials[1:]]
    assert first == pytest.approx(base)  # no history: the base values
    for p in later:
        zero_keys = [k for k, v in base.items() if v == 0.0]
        assert all(p[k] == 0.0 for k in zero_keys), "a multiplicative mutation keeps zeros at zero (yolov5)"
        assert all(p[k] == first[k] for k in ("iou_t", "fl_gamma", "fliplr")), "gain 0 keys never move"
        assert all(space.params[k].low <= v <= space.params[k].high for k, v in p.items())
    assert any(p["lr0"] != base["lr0"] for p in later)


# -- end to end -----------------------------------------------------------------------------------
def test_tune_writes_outputs_resumes_without_repeating_and_best_hyp_trains(base_config, tmp_path):
    first = tune(base_config, TuneOptions(trials=2, sampler="random"))
    run_dir = first.run_dir
    assert first.trials_run == 2 and first.counts == {"COMPLETE": 2}
    for name in ("best_hyp.yaml", "trials.csv", "study.db", *PLOTS.values()):
        assert (run_dir / name).is_file(), name
    rows = read_csv(run_dir / "trials.csv")
    # trial 0 = the base hyp: the default hyp as --optimizer auto fits it (AdamW, lr0 0.001 at batch 4)
    assert [r["trial"] for r in rows] == ["0", "1"] and float(rows[0]["lr0"]) == 0.001
    assert "--optimizer AdamW --nbs 4 --close-mosaic 0" in (run_dir / "best_hyp.yaml").read_text()
    assert (run_dir / "trial_1" / "hyp.yaml").is_file() and (run_dir / "trial_1" / "results.csv").is_file()

    again = tune(base_config, TuneOptions(trials=3, sampler="random"))  # the same command, a larger budget
    assert again.trials_run == 1, "finished trials are not repeated"
    rows = read_csv(run_dir / "trials.csv")
    assert [r["trial"] for r in rows] == ["0", "1", "2"] and {r["state"] for r in rows} == {"COMPLETE"}
    assert sorted(p.name for p in run_dir.glob("trial_*")) == ["trial_0", "trial_1", "trial_2"]
    assert tune(base_config, TuneOptions(trials=3)).trials_run == 0  # budget met: nothing to do

    with pytest.raises(ValueError, match="other settings.*epochs"):
        tune(base_config.replace(epochs=2), TuneOptions(trials=4))

    best = load_hyp(run_dir / "best_hyp.yaml")
    assert isinstance(best, Hyp)
    code = cli_main(
        [
            "train",
            *tiny_cli_args(base_config.data, base_config.cfg, tmp_path / "train"),
            "--hyp",
            str(run_dir / "best_hyp.yaml"),
            "--noplots",
            "--name",
            "from_best",
        ]
    )
    assert code == 0
    assert load_hyp(tmp_path / "train" / "from_best" / "hyp.yaml") == best


def test_failed_trial_is_recorded_with_its_reason_and_the_search_goes_on(base_config, monkeypatch):
    real_fit = Trainer.fit

    def fit(self):
        if self.cfg.name == "trial_1":
            raise NonFiniteLoss("loss became nan at epoch 0, step 1")
        return real_fit(self)

    monkeypatch.setattr(Trainer, "fit", fit)
    result = tune(base_config, TuneOptions(trials=3, sampler="tpe"))
    assert result.counts == {"COMPLETE": 2, "FAIL": 1} and result.stopped == ""
    rows = {r["trial"]: r for r in read_csv(result.run_dir / "trials.csv")}
    assert rows["1"]["state"] == "FAIL" and "non-finite loss" in rows["1"]["reason"]
    assert "loss became nan" in (result.run_dir / "trial_1" / "error.txt").read_text()
    assert rows["2"]["state"] == "COMPLETE"


def test_trial_with_invalid_parameters_fails_without_training(base_config, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("params: {scale: [0.9, 1.5]}\nonly: [scale]\n")  # scale >= 1 is not a valid hyp
    result = tune(base_config, TuneOptions(trials=4, sampler="random", space=str(space), max_failures=10))
    rows = read_csv(result.run_dir / "trials.csv")
    assert len(rows) == 4 and rows[0]["state"] == "COMPLETE"  # the base (0.5, clipped to 0.9) is valid
    bad = [r for r in rows if r["state"] == "FAIL"]
    assert bad and all("invalid parameters" in r["reason"] and "scale" in r["reason"] for r in bad)
    assert all(float(r["scale"]) >= 1 for r in bad)
    assert not any((result.run_dir / f"trial_{r['trial']}" / "weights").exists() for r in bad)


def test_failures_in_a_row_stop_the_search_with_the_reason(base_config, monkeypatch):
    def fit(self):
        raise NonFiniteLoss("loss became nan")

    monkeypatch.setattr(Trainer, "fit", fit)
    result = tune(base_config, TuneOptions(trials=5, max_failures=2))
    assert result.counts == {"FAIL": 2} and result.best_hyp is None
    assert "failed 2 trials in a row" in result.stopped and "loss became nan" in result.stopped
    assert not (result.run_dir / "best_hyp.yaml").exists()


def test_trial_of_a_killed_process_is_marked_and_retried(base_config):
    options = TuneOptions(trials=2, heartbeat=1, sampler="random")
    tune(base_config, TuneOptions(**{**options.__dict__, "trials": 1}))
    storage = tune_mod._storage(f"sqlite:///{Path(base_config.project, base_config.name, 'study.db')}", 1)
    study = optuna.load_study(study_name=base_config.name, storage=storage)
    with pytest.warns(UserWarning, match="Heartbeat"):  # ask() outside optimize(): what a dying process did
        orphan = study.ask(fixed_distributions=load_space(None).distributions())
    storage.record_heartbeat(orphan._trial_id)
    time.sleep(3.5)  # longer than the grace period (2 heartbeats; SQLite stamps whole seconds)
    result = tune(base_config, options)
    rows = {r["trial"]: r for r in read_csv(result.run_dir / "trials.csv")}
    assert rows["1"]["state"] == "INTERRUPTED" and "retried as trial 2" in rows["1"]["reason"]
    assert rows["2"]["state"] == "COMPLETE"
    assert study.trials[2].params == orphan.params, "the retry runs the same parameters"
    assert result.counts == {"COMPLETE": 2, "INTERRUPTED": 1}


# Runs `modyolo tune` after the slow imports, once both processes are ready: a start-up skew on a
# loaded machine would otherwise let the first process finish every trial alone.
LAUNCH_TOGETHER = """
import pathlib, sys, time
import optuna, torch, modyolo.engine.trainer, modyolo.tools.tune
from modyolo.cli import main
pathlib.Path(sys.argv[1]).touch()
deadline = time.time() + 120
while not pathlib.Path(sys.argv[2]).exists() and time.time() < deadline:
    time.sleep(0.05)
sys.exit(main(sys.argv[3:]))
"""


def test_two_processes_on_one_sqlite_storage_split_the_trials(tiny_data, tiny_cfg_path, tmp_path):
    argv = [
        "tune",
        *tiny_cli_args(tiny_data, tiny_cfg_path, tmp_path / "runs"),
        "--max-batches",
        "2",
        "--trials",
        "4",
        "--name",
        "shared",
        "--sampler",
        "tpe",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    ready = [tmp_path / "ready0", tmp_path / "ready1"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", LAUNCH_TOGETHER, str(ready[i]), str(ready[1 - i]), *argv],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(o[-3000:] for o in outs)
    done = [set(re.findall(r"^trial (\d+) COMPLETE", out, re.M)) for out in outs]
    assert done[0] and done[1], f"both processes must run trials: {done}\n{outs[0][-2000:]}\n{outs[1][-2000:]}"
    assert not done[0] & done[1], "no trial is run twice"
    assert done[0] | done[1] == {str(i) for i in range(4)}
    rows = read_csv(tmp_path / "runs" / "shared" / "trials.csv")
    assert len(rows) == 4 and {r["state"] for r in rows} == {"COMPLETE"}
    params = {tuple(r[k] for k in EVOLVE_META) for r in rows}
    assert len(params) == 4, "the processes sample different trials"


def test_train_evolve_flag_runs_the_same_search(tiny_data, tiny_cfg_path, tmp_path):
    code = cli_main(
        ["train", *tiny_cli_args(tiny_data, tiny_cfg_path, tmp_path / "evo"), "--evolve", "1", "--name", "e"]
    )
    assert code == 0
    assert read_csv(tmp_path / "evo" / "e" / "trials.csv")[0]["state"] == "COMPLETE"
    # the base hyp: the defaults as --optimizer auto fits them for this short run (engine/recipe_auto.py)
    fitted = load_hyp("scratch-low").replace(lr0=0.001, lrf=0.1, momentum=0.9, warmup_epochs=0.0)
    assert load_hyp(tmp_path / "evo" / "e" / "best_hyp.yaml") == fitted


# -- the space follows the model's head ------------------------------------------------------------
def tiny_model(name: str, tmp_path: Path) -> str:
    cfg, _ = load_model_yaml(name)
    cfg = copy.deepcopy(cfg)
    cfg["width_multiple"] = 0.125
    cfg.pop("yaml_file", None)
    path = tmp_path / f"tiny-{name}"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return str(path)


def test_the_models_head_decides_which_loss_gains_are_searched(tmp_path):
    assert head_family("yolov5n.yaml") == "anchor_based"
    assert head_family("yolov7-tiny.yaml") == "yolov7"
    assert head_family("yolov8n.yaml") == "anchor_free"
    e2e = {**load_model_yaml("yolo11-e2e.yaml")[0], "scale": "n"}
    assert head_family(e2e) == "anchor_free"  # the NMS-free head: the same gains

    af = default_space("anchor_free").params
    assert {"box_af", "cls", "dfl"} <= set(af)
    assert not {"box", "obj", "obj_pw", "cls_pw", "anchor_t", "fl_gamma", "iou_t"} & set(af)  # not read by its loss
    assert (af["box_af"].low, af["box_af"].high, af["dfl"].low, af["dfl"].high) == (1.0, 20.0, 0.4, 6.0)
    assert {"lr0", "mosaic", "hsv_s"} <= set(af)  # optimizer and augmentation keys stay
    v7 = default_space("yolov7").params
    assert set(v7) == set(EVOLVE_META) | {"paste_in"}  # yolov7's evolve meta: yolov5's plus paste_in
    assert set(default_space().params) == set(EVOLVE_META)

    shipped = load_space(SHIPPED_SPACE, "anchor_free")  # one file for every head
    assert "obj" not in shipped.params and "box" not in shipped.params and "dfl" in shipped.params
    assert "obj" in load_space(SHIPPED_SPACE).params
    bad = tmp_path / "only.yaml"
    bad.write_text("only: [obj, lr0]\n")
    with pytest.raises(ValueError, match=r"only.*'obj'.*anchor_free head's loss does not read.*box_af, cls, dfl"):
        load_space(bad, "anchor_free")


def test_tune_an_anchor_free_model_searches_its_own_gains(base_config, tmp_path):
    cfg = tiny_model("yolov8n.yaml", tmp_path)
    result = tune(base_config.replace(cfg=cfg, name="af"), TuneOptions(trials=1, sampler="random"))
    assert result.counts == {"COMPLETE": 1}
    columns = set(read_csv(result.run_dir / "trials.csv")[0])
    assert {"box_af", "cls", "dfl"} <= columns and not {"obj", "anchor_t", "box"} & columns


def test_tune_cli_on_yolov7_tiny_runs_two_trials_with_its_space(tiny_data, tmp_path):
    cfg = tiny_model("yolov7-tiny.yaml", tmp_path)
    args = ["tune", *tiny_cli_args(tiny_data, cfg, tmp_path / "v7tune"), "--hyp", "hyp.scratch.tiny.yaml"]
    code = cli_main([*args, "--trials", "2", "--max-batches", "2", "--sampler", "random", "--name", "v7"])
    assert code == 0
    rows = read_csv(tmp_path / "v7tune" / "v7" / "trials.csv")
    assert [r["state"] for r in rows] == ["COMPLETE", "COMPLETE"]
    assert {"paste_in", "obj", "anchor_t"} <= set(rows[0])  # yolov7's space: yolov5's keys plus paste_in
    assert float(rows[0]["paste_in"]) == 0.05  # trial 0 is the base hyp (hyp.scratch.tiny)
    assert load_hyp(tmp_path / "v7tune" / "v7" / "best_hyp.yaml").loss_ota == 1
