"""``modyolo train``: yolov5's train.py flags (and their aliases), then one training run, a recipe
(``--recipe``) or a search (``--evolve N``).
"""

from __future__ import annotations

import argparse

from modyolo.cli.train_args import add_arguments as add_arguments
from modyolo.cli.train_args import config_from_args


def run(args: argparse.Namespace) -> int:
    if args.evolve:
        from modyolo.cli import tune as cli_tune

        return cli_tune.run_from_train_args(args)
    config = config_from_args(args)
    if args.recipe:
        from modyolo.engine.recipe import run_recipe
        from modyolo.eval.validator import validate

        run_recipe(args.recipe, config, evaluator=validate)
        return 0
    from modyolo.api import train

    train(config)
    return 0
