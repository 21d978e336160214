"""TPE versus yolov5's mutation loop (``--sampler evolve``) on one trial budget; prints JSON.

Both searches run on the embedded shapes dataset with the same model, data, training seed,
sampler seed, trial budget and search space (yolov5's evolve bounds for every key), without
pruning (yolov5's loop has none, so both spend the full budget). Both start from the base hyp as
trial 0. The figure of merit is the best fitness found, ``0.1 * mAP50 + 0.9 * mAP50-95``.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_tune.py [--trials 12] [--epochs 3] \
        [--img 160] [--width 0.25] [--seeds 0] [--fraction 1.0]

Slow on a CPU (each trial trains ``--epochs`` epochs): about trials x samplers x seeds trainings.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from modyolo.engine.config import TrainConfig
from modyolo.nn.graph import load_model_yaml
from modyolo.tools.tune import TuneOptions, tune
from modyolo.tools.tune_report import classify


def one_search(sampler: str, seed: int, args: argparse.Namespace, model_cfg: dict, root: Path) -> dict:
    config = TrainConfig(
        data=args.data,
        cfg=model_cfg,
        epochs=args.epochs,
        imgsz=args.img,
        batch_size=args.batch,
        workers=args.workers,
        project=str(root),
        name=f"{sampler}_seed{seed}",
        seed=seed,
        verbose=False,
        noplots=True,
        fraction=args.fraction,
        max_batches=args.max_batches,
        nbs=args.nbs,
        optimizer=args.optimizer,
    )
    t0 = time.time()
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the JSON
        result = tune(config, TuneOptions(trials=args.trials, sampler=sampler, pruner="none"))
    seconds = time.time() - t0
    records = classify(optuna_trials(result))
    values = [r.fitness if r.fitness is not None else None for r in records]
    best_so_far, best = [], 0.0
    for v in values:
        best = max(best, v or 0.0)
        best_so_far.append(round(best, 5))
    return {
        "sampler": sampler,
        "seed": seed,
        "best_fitness": result.best_fitness,
        "best_trial": result.best_trial,
        "counts": result.counts,
        "fitness_per_trial": [None if v is None else round(v, 5) for v in values],
        "best_so_far": best_so_far,
        "seconds": round(seconds, 1),
        "run_dir": str(result.run_dir),
    }


def optuna_trials(result) -> list:
    import optuna

    study = optuna.load_study(study_name=result.study, storage=result.storage)
    return study.get_trials(deepcopy=False)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="shapes", help="data YAML or 'shapes' (the embedded demo dataset)")
    p.add_argument("--cfg", default="yolov5n.yaml")
    p.add_argument("--width", type=float, default=0.25, help="width_multiple of the model (0.25 = yolov5n)")
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--img", type=int, default=160)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--nbs", type=int, default=64, help="nominal batch (64 = yolov5; 16 = a step per batch)")
    p.add_argument("--optimizer", default="SGD", choices=["SGD", "Adam", "AdamW"])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--fraction", type=float, default=1.0, help="fraction of the training images")
    p.add_argument("--max-batches", type=int, default=0)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--samplers", nargs="+", default=["tpe", "evolve"])
    p.add_argument("--project", default="", help="where the runs go ('' = a temporary folder)")
    args = p.parse_args()

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    model_cfg, _ = load_model_yaml(args.cfg)
    model_cfg = copy.deepcopy(model_cfg)
    model_cfg["width_multiple"] = args.width
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.project or tmp)
        runs = [one_search(s, seed, args, model_cfg, root) for seed in args.seeds for s in args.samplers]
    summary = {}
    for s in args.samplers:
        best = [r["best_fitness"] or 0.0 for r in runs if r["sampler"] == s]
        summary[s] = {"mean_best_fitness": round(sum(best) / len(best), 5), "per_seed": best}
    print(
        json.dumps(
            {
                "benchmark": "tune: best fitness found, TPE vs yolov5-style mutation, same budget",
                "setup": {
                    k: getattr(args, k)
                    for k in (
                        "data",
                        "cfg",
                        "width",
                        "trials",
                        "epochs",
                        "img",
                        "batch",
                        "fraction",
                        "max_batches",
                        "seeds",
                    )
                },
                "machine": {
                    "cpu": platform.processor() or platform.machine(),
                    "threads": torch.get_num_threads(),
                    "torch": torch.__version__,
                },
                "summary": summary,
                "runs": runs,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
