"""``modyolo tune`` (and ``modyolo train --evolve N``): hyperparameter search on Optuna.

Each trial trains the model with a sampled hyp (``<project>/<name>/trial_<n>/``) and reports the
fitness ``0.1 * mAP50 + 0.9 * mAP50-95`` after every epoch, so the pruner can stop hopeless trials;
the trial's value is its best epoch's fitness (what ``best.pt`` holds).

The study lives in an RDB storage, a SQLite file ``<project>/<name>/study.db`` by default (any
SQLAlchemy URL, e.g. ``postgresql://...``, shares one study between machines):

- *resumable*: the same command again continues the study; finished trials count toward
  ``--trials`` and are not repeated. A trial whose process was killed stops sending heartbeats,
  is marked failed after ``2 * --heartbeat`` seconds and retried with the same parameters.
- *parallel*: any number of processes running the same command split the trials.
- *robust*: a failing trial (NaN loss, invalid parameters, a crash) is recorded as FAIL with its
  reason and the search goes on; ``--max-failures`` failures in a row stop it.

Outputs in the run folder: ``best_hyp.yaml`` (for ``modyolo train --hyp``), ``trials.csv`` and
PNG plots (history, parameter importances, parallel coordinates); see :mod:`tune_report`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from modyolo.engine.config import TrainConfig
from modyolo.structures import MAP50, MAP50_95, METRICS

LOGGER = logging.getLogger("modyolo.tune")
INSTALL_HINT = "modyolo tune needs Optuna: pip install 'modyolo[tune]' (or pip install optuna)"
# What must not change between runs that continue one study (it would change the objective).
SETUP_KEYS = (
    "data",
    "cfg",
    "weights",
    "epochs",
    "imgsz",
    "batch_size",
    "optimizer",
    "max_batches",
    "single_cls",
    "rect",
    "fraction",
    "sam",
    "loss",
    "cos_lr",
    "freeze",
    "seed",
)


@dataclass
class TuneOptions:
    trials: int = 30  # total finished trials wanted in the study (across processes and runs)
    storage: str = ""  # SQLAlchemy URL; '' = sqlite:///<project>/<name>/study.db
    study: str = ""  # '' = the run name
    sampler: str = "tpe"  # tpe | cmaes | random | evolve
    pruner: str = "median"  # median | hyperband | none
    space: str = ""  # search space YAML ('' = yolov5's evolve bounds for every key)
    timeout: float = 0.0  # seconds for this process; 0 = no limit
    heartbeat: int = 30  # seconds between trial heartbeats; a silent trial is stale after 2x
    max_failures: int = 5  # stop after this many failed trials in a row (a broken setup, not bad luck)


@dataclass
class TuneResult:
    run_dir: Path
    study: str
    storage: str
    best_trial: int | None
    best_fitness: float | None
    best_hyp: Path | None
    counts: dict[str, int] = field(default_factory=dict)
    trials_run: int = 0  # by this process
    stopped: str = ""  # why this process stopped early, if it did


class TrialFailed(Exception):
    """A trial that cannot give a fitness; its reason is stored as the trial's ``fail_reason``."""


def tune(config: TrainConfig, options: TuneOptions) -> TuneResult:
    """Run (or continue) the study described by ``config`` + ``options``; returns its state."""
    try:
        import optuna
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e
    from modyolo.engine.hyp import load_hyp
    from modyolo.engine.recipe_auto import resolve_config, train_flags
    from modyolo.tools import tune_report
    from modyolo.tools.tune_samplers import make_pruner, make_sampler
    from modyolo.tools.tune_space import head_family, load_space

    if options.trials < 1:
        raise ValueError(f"--trials must be at least 1, got {options.trials}")
    run_dir = Path(config.project) / config.name
    run_dir.mkdir(parents=True, exist_ok=True)
    url = options.storage or f"sqlite:///{(run_dir / 'study.db').resolve()}"
    name = options.study or config.name
    config, recipe = resolve_config(config)  # every trial trains the same resolved --optimizer auto recipe
    family = head_family(_model_cfg(config))  # the head decides which loss gains are searched
    space = load_space(options.space or None, family)
    LOGGER.info("search space: %d parameters for the %s head: %s", len(space.params), family, ", ".join(space.params))
    LOGGER.info(recipe.summary)
    flags = train_flags(config)
    base = load_hyp(config.hyp)
    base_params = space.base_params(base)
    space.hyp_from(base, base_params, source="base hyp clipped into the search bounds")  # fail before any trial
    study = optuna.create_study(
        storage=_storage(url, options.heartbeat),
        study_name=name,
        direction="maximize",
        load_if_exists=True,
        sampler=make_sampler(options.sampler, config.seed, space, base_params, options.trials),
        pruner=make_pruner(options.pruner, config.epochs),
    )
    _check_same_setup(study, _setup(config, base, space), url)
    with warnings.catch_warnings():  # heartbeats are flagged experimental; they are what resumes a killed run
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)

    state = {"ran": 0, "failures": 0, "stopped": ""}
    t0 = time.time()

    def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.user_attrs.get("surplus"):
            return
        state["ran"] += 1
        failed = trial.state.name == "FAIL"
        state["failures"] = state["failures"] + 1 if failed else 0
        records = tune_report.classify(study.get_trials(deepcopy=False))
        _write_tables(records, base, space, run_dir, name, flags)
        _print_progress(trial, records, options.trials, time.time() - t0)
        if state["failures"] >= options.max_failures:
            state["stopped"] = (
                f"failed {state['failures']} trials in a row; last reason: {trial.user_attrs.get('fail_reason', '?')}"
            )
            study.stop()
        elif not _work_left(study, options.trials):
            study.stop()

    taken = _taken(study)
    if not _work_left(study, options.trials):
        print(
            f"study {name!r} already has {taken} of {options.trials} trials finished or running; "
            "raise --trials to search further"
        )
    else:
        done = sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))
        print(
            f"study {name!r} ({url}): {done} trials so far, searching to {options.trials} "
            f"with {options.sampler} + {options.pruner} pruning over {len(space.params)} parameters"
        )
        objective = _Objective(config, options, space, base, run_dir, study)
        try:
            study.optimize(
                objective,
                n_trials=None,
                timeout=options.timeout or None,
                catch=(TrialFailed,),
                callbacks=[after_trial],
                gc_after_trial=True,
            )
        finally:  # also on Ctrl-C: what finished is written before the interrupt propagates
            records = tune_report.classify(study.get_trials(deepcopy=False))
            _write_tables(records, base, space, run_dir, name, flags)
        if options.timeout and time.time() - t0 >= options.timeout and _work_left(study, options.trials):
            state["stopped"] = state["stopped"] or f"--timeout {options.timeout:g} s reached"
    return _finish(study, base, space, run_dir, name, url, state, flags)


class _Objective:
    """Train one trial; raise TrialFailed / TrialPruned, or return its best epoch fitness."""

    def __init__(
        self, config: TrainConfig, options: TuneOptions, space: Any, base: Any, run_dir: Path, study: Any
    ) -> None:
        self.config, self.options, self.space, self.base = config, options, space, base
        self.run_dir, self.study = run_dir, study

    def __call__(self, trial: Any) -> float:
        import optuna

        from modyolo.engine.callbacks import Callbacks
        from modyolo.engine.hyp import HypError, save_hyp
        from modyolo.engine.trainer import NonFiniteLoss, Trainer
        from modyolo.eval.validator import validate

        if _taken(self.study, before=trial.number) >= self.options.trials:
            # Another process filled the budget between our check and this trial's start.
            trial.set_user_attr("surplus", True)
            self.study.stop()
            raise TrialFailed("surplus trial: the budget was filled by other processes")
        trial_dir = self.run_dir / f"trial_{trial.number}"
        trial.set_user_attr("dir", str(trial_dir))
        try:
            hyp = self.space.suggest(trial, self.base)
        except HypError as e:
            self._fail(trial, f"invalid parameters: {e}")
        cfg = self.config.replace(
            hyp=str(save_hyp(hyp, trial_dir / "hyp.yaml")),
            project=str(self.run_dir),
            name=trial_dir.name,
            exist_ok=True,
            resume=False,
            noplots=True,
        )
        reporter = _Reporter(trial)
        callbacks = Callbacks()
        callbacks.add("on_fit_epoch_end", reporter)
        try:
            result = Trainer(cfg, callbacks, evaluator=validate).fit()
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", "stopped by the user (Ctrl-C)")
            raise
        except NonFiniteLoss as e:
            self._fail(trial, f"non-finite loss: {e}", trial_dir)
        except Exception as e:  # a crash in one trial must not end a week-long search
            self._fail(trial, f"{type(e).__name__}: {e}", trial_dir)
        best = max(result.history, key=_row_fitness) if result.history else {}
        for key in METRICS:
            trial.set_user_attr(key, float(best.get(key, 0.0)))
        trial.set_user_attr("epochs", result.epochs_completed)
        if reporter.pruned:
            trial.set_user_attr("pruned_reason", reporter.pruned)
            raise optuna.TrialPruned(reporter.pruned)
        return _row_fitness(best) if best else 0.0

    @staticmethod
    def _fail(trial: Any, reason: str, trial_dir: Path | None = None) -> NoReturn:
        trial.set_user_attr("fail_reason", reason[:2000])
        if trial_dir is not None and trial_dir.is_dir():  # the full traceback, for the bug report
            (trial_dir / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
        raise TrialFailed(reason)


class _Reporter:
    """``on_fit_epoch_end`` callback: report the epoch's fitness; stop training when pruned."""

    def __init__(self, trial: Any) -> None:
        self.trial, self.pruned = trial, ""

    def __call__(self, trainer: Any, epoch: int, row: dict[str, float]) -> None:
        from modyolo.engine.callbacks import StopTraining

        self.trial.report(_row_fitness(row), epoch)
        if self.trial.should_prune():
            self.pruned = f"pruned after epoch {epoch} (fitness {_row_fitness(row):.4f} below the pruner's bar)"
            raise StopTraining(self.pruned)


def _row_fitness(row: dict[str, float]) -> float:
    from modyolo.engine.checkpoint import fitness

    return float(fitness({k: row.get(k, 0.0) for k in (MAP50, MAP50_95)}))


def _storage(url: str, heartbeat: int) -> Any:
    import optuna
    import sqlalchemy.exc

    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):  # writers wait for the lock instead of failing at once
        kwargs = {"connect_args": {"timeout": 60}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2)
        for attempt in range(5):
            try:
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=kwargs,
                    heartbeat_interval=max(1, heartbeat),
                    grace_period=2 * max(1, heartbeat),
                    heartbeat_stale_trial_callback=retry,
                )
            except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError) as e:
                # Processes started together race to create the tables of a new database; the
                # loser sees "table already exists" and simply connects again.
                if attempt == 4:
                    raise ValueError(
                        f"cannot open the study storage {url}: {e}; check the URL, that the "
                        "database server is up, and that the file is writable"
                    ) from e
                time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def _counts_toward_budget(t: Any) -> bool:
    """Finished trials, running ones and queued ones; not interrupted or surplus ones."""
    s = t.state.name
    if t.user_attrs.get("surplus"):
        return False
    if s == "FAIL":
        return bool(t.user_attrs.get("fail_reason"))  # an interrupted trial is not a result
    return s in ("COMPLETE", "PRUNED", "RUNNING", "WAITING")


def _taken(study: Any, before: int | None = None) -> int:
    trials = study.get_trials(deepcopy=False)
    return sum(1 for t in trials if _counts_toward_budget(t) and (before is None or t.number < before))


def _work_left(study: Any, wanted: int) -> bool:
    """Budget not yet taken, or queued trials (the base hyp, retries of killed trials) to run."""
    waiting = any(t.state.name == "WAITING" for t in study.get_trials(deepcopy=False))
    return waiting or _taken(study) < wanted


def _model_cfg(config: TrainConfig) -> Any:
    """The model YAML every trial builds: --cfg, else the one stored in the --weights checkpoint."""
    if config.cfg:
        return config.cfg
    if config.weights:
        from modyolo.engine.checkpoint import load_checkpoint

        stored = load_checkpoint(config.weights).get("model_yaml")
        if stored:
            return stored
    raise ValueError("give a model YAML with --cfg, or --weights from a modyolo checkpoint (which stores its YAML)")


def _setup(config: TrainConfig, base: Any, space: Any) -> dict[str, Any]:
    values = {k: getattr(config, k) for k in SETUP_KEYS}
    if isinstance(values["cfg"], dict):  # a model dict (Python API): compare by content
        values["cfg"] = "sha1:" + hashlib.sha1(json.dumps(values["cfg"], sort_keys=True).encode()).hexdigest()[:12]
    return json.loads(json.dumps({**values, "base_hyp": base.to_dict(), "space": space.fingerprint()}))


def _check_same_setup(study: Any, setup: dict[str, Any], url: str) -> None:
    saved = study.user_attrs.get("modyolo_setup")
    if saved is None:
        study.set_user_attr("modyolo_setup", setup)
        return
    diff = [k for k in sorted(set(saved) | set(setup)) if saved.get(k) != setup.get(k)]
    if diff:
        shown = "; ".join(f"{k}: study {_short(saved.get(k))}, now {_short(setup.get(k))}" for k in diff)
        raise ValueError(
            f"study {study.study_name!r} in {url} was started with other settings ({shown}); "
            "rerun with the original settings to continue it, or pass a new --name/--study"
        )


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


def _write_tables(records: list, base: Any, space: Any, run_dir: Path, name: str, flags: str = "") -> list[Path]:
    from modyolo.tools import tune_report

    written = [tune_report.write_trials_csv(records, list(space.params), run_dir / "trials.csv")]
    best = tune_report.best_record(records)
    if best is not None:
        total = sum(r.state in ("COMPLETE", "PRUNED", "FAIL") for r in records)
        written.append(tune_report.write_best_hyp(best, base, space, run_dir / "best_hyp.yaml", name, total, flags))
    return written


def _print_progress(trial: Any, records: list, wanted: int, elapsed: float) -> None:
    from modyolo.tools.tune_report import best_record

    rec = next((r for r in records if r.number == trial.number), None)
    finished = sum(r.state in ("COMPLETE", "PRUNED", "FAIL") for r in records)
    what = f"fitness {trial.value:.5f}" if trial.value is not None else (rec.reason if rec else "")
    best = best_record(records)
    best_txt = f"best {best.fitness:.5f} (trial {best.number})" if best else "no completed trial yet"
    print(
        f"trial {trial.number} {rec.state if rec else trial.state.name}: {what} | {finished}/{wanted} finished, "
        f"{best_txt}, {elapsed / 60:.1f} min"
    )


def _finish(
    study: Any, base: Any, space: Any, run_dir: Path, name: str, url: str, state: dict[str, Any], flags: str = ""
) -> TuneResult:
    from modyolo.tools import tune_plots, tune_report

    trials = study.get_trials(deepcopy=False)
    records = tune_report.classify(trials)
    written = _write_tables(records, base, space, run_dir, name, flags)
    shown = [r.trial for r in records]
    importances, method = tune_plots.param_importances(study, [r.trial for r in records if r.state == "COMPLETE"])
    order = list(importances) or list(space.params)
    written += [
        tune_plots.plot_history(shown, run_dir / tune_report.PLOTS["history"]),
        tune_plots.plot_importances(importances, method, run_dir / tune_report.PLOTS["importances"]),
        tune_plots.plot_parallel(
            shown,
            order,
            run_dir / tune_report.PLOTS["parallel"],
            log_params={k for k, p in space.params.items() if p.log},
        ),
    ]
    print(tune_report.summary(records, base, run_dir, written, importances, method))
    best = tune_report.best_record(records)
    counts: dict[str, int] = {}
    for r in records:
        counts[r.state] = counts.get(r.state, 0) + 1
    return TuneResult(
        run_dir=run_dir,
        study=name,
        storage=url,
        best_trial=best.number if best else None,
        best_fitness=best.fitness if best else None,
        best_hyp=run_dir / "best_hyp.yaml" if best else None,
        counts=counts,
        trials_run=state["ran"],
        stopped=state["stopped"],
    )
