"""Run yolov5 7.0.14's own ``train.py`` offline and write its timings and metrics as JSON.

yolov5 7.0.14 (pip package ``yolov5``) does not train offline with today's packages as installed
(tests/peers.txt installs it with --no-deps). Rather than downgrading anything, this launcher patches the
process before yolov5 is imported, leaving the environment and the project untouched:

- ``np.trapz`` (removed in numpy 2.4, called by its metrics) -> ``np.trapezoid``;
- ``roboflow`` (imported at module level by train.py, never used offline) -> a stub package in a
  temporary folder put on ``sys.path`` and ``PYTHONPATH`` (so dataloader workers see it too);
- ``huggingface_hub.utils._errors`` (a private module removed from huggingface-hub; yolov5 imports
  it when resolving hub weights) -> an alias module when the real one is missing;
- ``ULTRALYTICS_SKIP_REQUIREMENTS_CHECKS=1`` (its requirements check would pip-install);
- ``YOLOV5_CONFIG_DIR`` -> a temporary folder holding matplotlib's DejaVuSans as ``Arial.ttf``
  (it downloads the font otherwise);
- ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` (its final validation re-loads its pickled best.pt).

yolov5 sets ``OMP_NUM_THREADS`` at import time (cores - 1); torch is imported first here and
``torch.set_num_threads(--threads)`` is applied after, so both frameworks compute on the same
number of threads. Timing hangs on yolov5's own callbacks: ``on_train_epoch_start`` ->
``on_train_epoch_end`` brackets the training batches of an epoch (data loading included,
validation and checkpointing excluded), ``on_train_batch_end`` counts images, and
``on_fit_epoch_end`` gives the epoch's validation P, R, mAP50, mAP50-95 (the EMA weights, as
written to its results.csv).

    python benchmarks/yolov5_runner.py --out result.json -- --data d.yaml --cfg yolov5n.yaml \
        --weights '' --img 320 --batch-size 16 --epochs 3 --seed 0 --workers 2 --project P --name N

Everything after ``--`` is passed to yolov5's train.py verbatim. ``--out`` receives::

    {"epochs": [{"epoch", "train_seconds", "images", "precision", "recall", "mAP50", "mAP50-95"}],
     "train_images_per_s": steady state (epochs after the first), "wall_seconds", "metrics",
     "save_dir", "threads", "yolov5_version"}

Run it with the network off (``unshare -n python ...``) to be sure nothing reaches out;
``bench_train.py`` does that when it can.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

ROBOFLOW_STUB = '''"""Offline stand-in for roboflow (written by modyolo's benchmarks/yolov5_runner.py)."""


class Roboflow:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("roboflow is stubbed out by yolov5_runner.py: this benchmark runs offline")
'''
ROBOFLOW_VERSION_STUB = """class Version:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("roboflow is stubbed out by yolov5_runner.py: this benchmark runs offline")
"""


def prepare_environment(scratch: Path) -> None:
    """Install every offline patch listed in the module docstring; call before importing yolov5."""
    stubs = scratch / "stubs"
    (stubs / "roboflow" / "core").mkdir(parents=True, exist_ok=True)
    (stubs / "roboflow" / "__init__.py").write_text(ROBOFLOW_STUB)
    (stubs / "roboflow" / "core" / "__init__.py").write_text("")
    (stubs / "roboflow" / "core" / "version.py").write_text(ROBOFLOW_VERSION_STUB)
    try:
        importlib.import_module("roboflow")
    except ImportError:  # only when the real package is absent: never shadow an installed one
        sys.path.insert(0, str(stubs))
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(stubs), os.environ.get("PYTHONPATH", "")]))

    config_dir = scratch / "yolov5-config"
    config_dir.mkdir(parents=True, exist_ok=True)
    font = config_dir / "Arial.ttf"
    if not font.is_file():
        import matplotlib

        source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        if not source.is_file():
            raise FileNotFoundError(
                f"{source} not found: yolov5 needs some TTF as Arial.ttf in YOLOV5_CONFIG_DIR "
                "or it downloads one; point --font at any local .ttf file"
            )
        shutil.copyfile(source, font)
    os.environ["YOLOV5_CONFIG_DIR"] = str(config_dir)
    os.environ["ULTRALYTICS_SKIP_REQUIREMENTS_CHECKS"] = "1"
    os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"

    import numpy as np

    if not hasattr(np, "trapz"):  # removed in numpy 2.4; same maths under its new name
        np.trapz = np.trapezoid

    try:
        importlib.import_module("huggingface_hub.utils._errors")
    except ImportError:
        try:
            errors = importlib.import_module("huggingface_hub.errors")
        except ImportError:  # no huggingface_hub at all: yolov5 only needs it for hub weights
            errors = None
        alias = types.ModuleType("huggingface_hub.utils._errors")
        alias.RepositoryNotFoundError = getattr(
            errors, "RepositoryNotFoundError", type("RepositoryNotFoundError", (Exception,), {})
        )
        sys.modules["huggingface_hub.utils._errors"] = alias


class EpochTimer:
    """yolov5 callbacks that record per-epoch train time, image count and validation metrics."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []
        self._t0 = 0.0
        self._images = 0
        self._train_seconds = 0.0

    def on_train_epoch_start(self) -> None:
        self._t0, self._images = time.perf_counter(), 0

    def on_train_batch_end(self, model: Any, ni: int, imgs: Any, targets: Any, paths: Any, mloss: Any) -> None:
        self._images += int(imgs.shape[0])

    def on_train_epoch_end(self, epoch: int) -> None:
        self._train_seconds = time.perf_counter() - self._t0

    def on_fit_epoch_end(self, vals: list, epoch: int, best_fitness: Any, fi: Any) -> None:
        # vals = 3 train losses + (P, R, mAP50, mAP50-95, 3 val losses) + lrs (+ per-class maps)
        if self.epochs and self.epochs[-1]["epoch"] == epoch:
            return  # yolov5 re-runs this after training for COCO only; keep the in-loop row
        p, r, m50, m = (float(v) for v in vals[3:7])
        self.epochs.append(
            {
                "epoch": int(epoch),
                "train_seconds": self._train_seconds,
                "images": self._images,
                "precision": p,
                "recall": r,
                "mAP50": m50,
                "mAP50-95": m,
            }
        )


def steady_rate(epochs: list[dict[str, float]]) -> float:
    """Images/s over the epochs after the first (the first pays worker start and warm-up)."""
    rows = epochs[1:] if len(epochs) > 1 else epochs
    seconds = sum(e["train_seconds"] for e in rows)
    return sum(e["images"] for e in rows) / seconds if seconds else 0.0


def run_yolov5(train_args: list[str], threads: int, scratch: Path) -> dict[str, Any]:
    prepare_environment(scratch)
    import torch  # before yolov5, whose import-time OMP_NUM_THREADS then no longer matters
    from yolov5 import __version__ as yolov5_version
    from yolov5 import train as yolov5_train
    from yolov5.utils.callbacks import Callbacks

    torch.set_num_threads(threads)
    timer = EpochTimer()
    callbacks = Callbacks()
    for hook in ("on_train_epoch_start", "on_train_batch_end", "on_train_epoch_end", "on_fit_epoch_end"):
        callbacks.register_action(hook, name=f"bench_{hook}", callback=getattr(timer, hook))
    sys.argv = ["yolov5/train.py", *train_args]
    opt = yolov5_train.parse_opt(known=False)
    t0 = time.perf_counter()
    yolov5_train.main(opt, callbacks)
    wall = time.perf_counter() - t0
    if not timer.epochs:
        raise RuntimeError(
            f"yolov5 finished without a single validated epoch (args: {' '.join(train_args)}); "
            f"see its log above and {opt.save_dir}"
        )
    last = timer.epochs[-1]
    return {
        "epochs": timer.epochs,
        "train_images_per_s": steady_rate(timer.epochs),
        "wall_seconds": wall,
        "train_seconds": sum(e["train_seconds"] for e in timer.epochs),
        "metrics": {k: last[k] for k in ("precision", "recall", "mAP50", "mAP50-95")},
        "save_dir": str(opt.save_dir),
        "threads": torch.get_num_threads(),
        "yolov5_version": yolov5_version,
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv:
        print("usage: yolov5_runner.py --out result.json [--threads N] -- <yolov5 train.py arguments>", file=sys.stderr)
        return 2
    split = argv.index("--")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="JSON file to write the result to")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads for the training step")
    p.add_argument("--scratch", type=Path, default=None, help="folder for stubs and the font (default: a temp dir)")
    args = p.parse_args(argv[:split])
    with tempfile.TemporaryDirectory(prefix="yolov5-runner-") as tmp:
        result = run_yolov5(argv[split + 1 :], args.threads, args.scratch or Path(tmp))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
