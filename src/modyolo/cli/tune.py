"""``modyolo tune`` and ``modyolo train --evolve N``: the flags (every train flag plus the search's
own), then :func:`modyolo.tools.tune.tune`; the search itself is documented there.
"""

from __future__ import annotations

import argparse
import sys

from modyolo.engine.config import TrainConfig
from modyolo.tools.tune import INSTALL_HINT, TuneOptions, tune


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Every ``modyolo train`` flag (the base run each trial varies), plus the search's own."""
    from modyolo.cli import train_args as cli_train
    from modyolo.tools.tune_samplers import PRUNERS, SAMPLERS

    cli_train.add_arguments(parser)
    parser.set_defaults(project="runs/tune", epochs=10)
    d = TuneOptions()
    g = parser.add_argument_group("search")
    g.add_argument("--trials", type=int, default=d.trials, help="finished trials wanted in the study")
    g.add_argument(
        "--storage", default=d.storage, help="SQLAlchemy URL of the study ('' = sqlite:///<project>/<name>/study.db)"
    )
    g.add_argument("--study", default=d.study, help="study name ('' = --name); rerun to continue it")
    g.add_argument("--sampler", choices=SAMPLERS, default=d.sampler, help="evolve = yolov5's mutation loop")
    g.add_argument("--pruner", choices=PRUNERS, default=d.pruner)
    g.add_argument("--space", default=d.space, help="search space YAML (bounds, log, fixed, exclude)")
    g.add_argument("--timeout", type=float, default=d.timeout, help="stop starting trials after N seconds")
    g.add_argument("--heartbeat", type=int, default=d.heartbeat, help="seconds between trial heartbeats")
    g.add_argument("--max-failures", type=int, default=d.max_failures, help="stop after N failures in a row")
    g.add_argument("--max-batches", type=int, default=0, help="batches per epoch in each trial (0 = all)")


def run(args: argparse.Namespace) -> int:
    for flag, fix in (
        ("resume", "rerun the same tune command to continue the study"),
        ("recipe", "tune one stage at a time with --hyp"),
        ("evolve", "use --trials"),
    ):
        if getattr(args, flag, None):
            raise ValueError(f"modyolo tune: --{flag} is a train option; {fix}")
    options = TuneOptions(**{k: getattr(args, k) for k in TuneOptions.__dataclass_fields__})
    return _run_cli(_train_config(args), options)


def run_from_train_args(args: argparse.Namespace) -> int:
    """``modyolo train --evolve N``: the same search, ``N`` trials, run folder ``runs/evolve/<name>``."""
    config = _train_config(args)
    if config.project == TrainConfig.project:  # yolov5 keeps evolution runs apart from training runs
        config = config.replace(project="runs/evolve")
    return _run_cli(config, TuneOptions(trials=int(args.evolve)))


def _train_config(args: argparse.Namespace) -> TrainConfig:
    from modyolo.cli.train_args import config_from_args

    keys = set(TrainConfig.__dataclass_fields__)
    values = {k: v for k, v in vars(args).items() if k in keys}
    return config_from_args(argparse.Namespace(**values, recipe="", evolve=0))


def _run_cli(config: TrainConfig, options: TuneOptions) -> int:
    try:
        import optuna
    except ImportError:
        print(INSTALL_HINT, file=sys.stderr)
        return 2
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our own per-trial lines say more
    result = tune(config, options)
    if result.stopped:
        print(f"stopped: {result.stopped}", file=sys.stderr)
    return 0 if result.best_trial is not None and not result.stopped.startswith("failed") else 1
