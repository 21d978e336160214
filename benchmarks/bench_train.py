"""Training side by side: modyolo vs yolov5 7.0.14 on the demo shapes set; prints JSON.

Both train yolov5n.yaml from scratch with the same recipe (hyp scratch-low, SGD, batch 16,
mosaic, EMA, autoanchor), image size, epochs, seed, workers and torch threads, each in its own
process and, when ``unshare -n`` works (root), with the network off. Per run it reports steady
train images/s (epochs after the first; training batches with data loading, validation
excluded), wall time of the whole run (setup, validation, checkpoints included), and the final
epoch's P, R, mAP50, mAP50-95 on the val split (EMA weights, both frameworks).

Runs (``--which``, comma separated, or ``all``):

- ``yolov5``: yolov5's own train.py via ``benchmarks/yolov5_runner.py`` (offline patches there);
- ``default``: ``modyolo train`` with every default (``--optimizer auto``, ``--precision auto``,
  close-mosaic; README, "The default recipe"); ``--optimizer`` does not apply to it;
- ``modyolo``: modyolo with yolov5's recipe as above, fp32, channels_last;
- ``fp32``: fp32 NCHW, ``bf16``: bf16 autocast NCHW, ``bf16cl``: bf16 autocast + channels_last —
  the numeric variants, to see which of them costs accuracy;
- ``sam``, ``vfl``, ``freeze``: modyolo defaults plus ``--sam``, ``--loss vfl``, or the staged
  freeze recipe (``modyolo.engine.recipe``: backbone rows 0-9 frozen for the first third of the
  epochs, then every layer trained from that stage's best.pt; one run folder per stage);
  ``--base bf16cl`` puts these three on bf16 + channels_last instead.

``--n-train``/``--n-val`` take the first N images of each split (file lists written to the work
folder, which also keeps yolov5's label cache out of the shared dataset folder)::

    python benchmarks/bench_train.py --epochs 2 --n-train 64 --n-val 16 --which default,yolov5   # smoke
    python benchmarks/bench_train.py --epochs 30 --which default,modyolo,yolov5                   # real

Speed figures mean little while other work shares the CPU: the JSON records the load average
before and after; compare rows from one invocation only.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
MODYOLO_RUNS = ("default", "modyolo", "fp32", "bf16", "bf16cl", "sam", "vfl", "freeze")
ALL_RUNS = ("yolov5", *MODYOLO_RUNS)
# The precision / memory-format variants: (channels_last, bf16).
NUMERICS = {"modyolo": (True, False), "fp32": (False, False), "bf16": (False, True), "bf16cl": (True, True)}
METRIC_KEYS = ("precision", "recall", "mAP50", "mAP50-95")


# -- data ------------------------------------------------------------------------------------------
def _split_files(folder: Path, n: int) -> list[Path]:
    exts = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in exts)
    if not files:
        raise FileNotFoundError(f"no images in {folder}; delete the dataset folder to regenerate it")
    return files[:n] if n > 0 else files


def prepare_data(data: str, n_train: int, n_val: int, workdir: Path) -> Path:
    """A data YAML over file lists (the first ``n_train`` / ``n_val`` images; 0 = all) in ``workdir``.

    Both frameworks read ``path`` + ``train``/``val`` .txt lists of absolute image paths and map
    ``/images/`` to ``/labels/``; yolov5 writes its label cache next to the list, here.
    """
    from modyolo.data.dataset_yaml import load_data_config

    cfg = load_data_config(data)
    lists = {}
    for split, sources, n in (("train", cfg.train, n_train), ("val", cfg.val, n_val)):
        if len(sources) != 1 or not sources[0].is_dir():
            raise ValueError(f"{cfg.source}: '{split}' must be one image folder for this benchmark, got {sources}")
        path = workdir / f"{split}.txt"
        path.write_text("".join(f"{p}\n" for p in _split_files(sources[0], n)))
        lists[split] = str(path)
    out = workdir / "data.yaml"
    out.write_text(
        yaml.safe_dump(
            {"path": str(workdir), **lists, "nc": cfg.nc, "names": dict(enumerate(cfg.names))}, sort_keys=False
        )
    )
    return out


# -- one modyolo run (child process) ---------------------------------------------------------------
def modyolo_options(name: str, args: argparse.Namespace, data_yaml: Path, project: Path) -> dict[str, Any]:
    """TrainConfig values for run ``name`` (see the module docstring)."""
    common = {
        "data": str(data_yaml),
        "cfg": "yolov5n.yaml",
        "weights": "",
        "epochs": args.epochs,
        "batch_size": args.batch,
        "imgsz": args.img,
        "seed": args.seed,
        "workers": args.workers,
        "device": args.device,
        "project": str(project),
        "name": name,
        "exist_ok": True,
        "noplots": True,
        "verbose": False,
    }
    if name == "default":  # what `modyolo train` does with no recipe flags
        return common
    channels_last, bf16 = NUMERICS.get(name, NUMERICS[args.base])
    return {
        **common,
        "hyp": "scratch-low",
        "optimizer": args.optimizer,
        "channels_last": channels_last,
        "precision": "bf16" if bf16 else "fp32",
        "sam": name == "sam",
        "loss": "vfl" if name == "vfl" else "",
    }


def _summarise(results: list[Any]) -> dict[str, Any]:
    """Combine TrainResults (one, or one per recipe stage) into the benchmark's row."""
    history = [row for r in results for row in r.history]
    # Steady images/s per stage, weighted by that stage's steady epochs (stage rate = images / time).
    steady = [(r.train_images_per_s, max(r.epochs_completed - 1, 1)) for r in results]
    weight = sum(w for _, w in steady)
    rate = sum(v * w for v, w in steady) / weight if weight else 0.0
    return {
        "train_images_per_s": rate,
        "train_seconds": sum(r.train_seconds for r in results),
        "metrics": {k: float(results[-1].metrics.get(k, 0.0)) for k in METRIC_KEYS},
        "epochs": [
            {"epoch": i, "epoch_seconds": row["epoch_seconds"], **{k: row[k] for k in METRIC_KEYS}}
            for i, row in enumerate(history)
        ],
        "stages": [{"train_images_per_s": r.train_images_per_s, "epochs": r.epochs_completed} for r in results]
        if len(results) > 1
        else None,
        "save_dir": str(results[-1].save_dir),
    }


def run_modyolo_child(options: dict[str, Any], freeze_recipe: bool, threads: int) -> dict[str, Any]:
    import torch

    from modyolo.engine.config import TrainConfig

    torch.set_num_threads(threads)
    config = TrainConfig.from_dict(options, "bench_train options")
    t0 = time.perf_counter()
    if freeze_recipe:
        from modyolo.engine.recipe import run_recipe

        first = max(config.epochs // 3, 1)
        recipe = Path(config.project) / "freeze-recipe.yaml"
        recipe.parent.mkdir(parents=True, exist_ok=True)
        recipe.write_text(
            yaml.safe_dump(
                {
                    "stages": [
                        {"name": "backbone-frozen", "epochs": first, "freeze": "0-9"},
                        {"name": "all-layers", "epochs": max(config.epochs - first, 1), "freeze": ""},
                    ]
                }
            )
        )
        from modyolo.eval.validator import validate

        results = run_recipe(recipe, config, evaluator=validate)
    else:
        from modyolo.api import train

        results = [train(config)]
    row = _summarise(results)
    row["wall_seconds"] = time.perf_counter() - t0
    row["threads"] = torch.get_num_threads()
    return row


# -- orchestration ---------------------------------------------------------------------------------
def _network_off_prefix(enabled: bool) -> list[str]:
    if not enabled or not shutil.which("unshare"):
        return []
    ok = subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0
    return ["unshare", "-n"] if ok else []


def _child_env(threads: int) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    src = HERE.parent / "src"
    if src.is_dir():  # run from a checkout without installing
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH", "")]))
    return env


def _launch(cmd: list[str], out: Path, log: Path, threads: int) -> dict[str, Any]:
    """Run a child that writes its JSON row to ``out``; its console goes to ``log``."""
    t0 = time.perf_counter()
    with log.open("w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=_child_env(threads)).returncode
    if rc != 0 or not out.is_file():
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-25:])
        return {"error": f"exit code {rc}; last lines of {log}:\n{tail}"}
    row = json.loads(out.read_text())
    row["process_seconds"] = time.perf_counter() - t0  # includes interpreter and import start-up
    return row


def run_one(name: str, args: argparse.Namespace, data_yaml: Path, workdir: Path, prefix: list[str]) -> dict[str, Any]:
    out, log = workdir / f"{name}.json", workdir / f"{name}.log"
    out.unlink(missing_ok=True)
    project = workdir / "runs"
    if name == "yolov5":
        spec = importlib.util.find_spec("yolov5")  # located, not imported: its import sets env vars
        if spec is None or not spec.origin:
            return {"error": "yolov5 is not installed; pip install --no-deps yolov5==7.0.14 (see tests/peers.txt)"}
        hyp = Path(spec.origin).parent / "data" / "hyps" / "hyp.scratch-low.yaml"
        yolo_args = [
            "--data",
            str(data_yaml),
            "--cfg",
            "yolov5n.yaml",
            "--weights",
            "",
            "--img",
            str(args.img),
            "--batch-size",
            str(args.batch),
            "--epochs",
            str(args.epochs),
            "--seed",
            str(args.seed),
            "--workers",
            str(args.workers),
            "--optimizer",
            args.optimizer,
            "--project",
            str(project),
            "--name",
            "yolov5",
            "--exist-ok",
            "--noplots",
            "--hyp",
            str(hyp),
            "--device",
            args.device,
        ]
        cmd = [
            *prefix,
            sys.executable,
            str(HERE / "yolov5_runner.py"),
            "--out",
            str(out),
            "--threads",
            str(args.threads),
            "--scratch",
            str(workdir / "yolov5-scratch"),
            "--",
            *yolo_args,
        ]
    else:
        options = modyolo_options(name, args, data_yaml, project)
        cmd = [
            *prefix,
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            json.dumps(options),
            "--child-out",
            str(out),
            "--threads",
            str(args.threads),
        ]
        if name == "freeze":
            cmd.append("--child-freeze-recipe")
    print(f"[bench_train] {name}: running, log {log}", file=sys.stderr, flush=True)
    row = _launch(cmd, out, log, args.threads)
    if "error" not in row:
        m = row["metrics"]
        print(
            f"[bench_train] {name}: {row['train_images_per_s']:.1f} img/s, wall {row['wall_seconds']:.0f} s, "
            f"mAP50 {m['mAP50']:.3f}, mAP50-95 {m['mAP50-95']:.3f}",
            file=sys.stderr,
            flush=True,
        )
    return row


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--which", default="default,yolov5", help=f"comma separated from {','.join(ALL_RUNS)}, or 'all'")
    p.add_argument("--img", type=int, default=320)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads in every run")
    p.add_argument("--device", default="", help="'' = CUDA if available, else cpu (both frameworks)")
    p.add_argument(
        "--optimizer", choices=["SGD", "Adam", "AdamW"], default="SGD", help="both frameworks (not the 'default' run)"
    )
    p.add_argument(
        "--base",
        choices=sorted(NUMERICS),
        default="modyolo",
        help="numerics (memory format, bf16) for the sam / vfl / freeze runs",
    )
    p.add_argument("--data", default="shapes", help="data YAML with one image folder per split")
    p.add_argument("--n-train", type=int, default=0, help="first N train images (0 = all)")
    p.add_argument("--n-val", type=int, default=0, help="first N val images (0 = all)")
    p.add_argument(
        "--workdir", type=Path, default=None, help="runs, logs and file lists (default: a new temp dir, kept)"
    )
    p.add_argument("--output", type=Path, default=None, help="also write the JSON report here")
    p.add_argument("--network", action="store_true", help="do not wrap runs in `unshare -n`")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-out", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-freeze-recipe", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child is None:
        names = ALL_RUNS if args.which == "all" else tuple(w.strip() for w in args.which.split(",") if w.strip())
        unknown = [n for n in names if n not in ALL_RUNS]
        if unknown or not names:
            p.error(f"--which: unknown run(s) {unknown or args.which!r}; choose from {', '.join(ALL_RUNS)} or 'all'")
        args.runs = names
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child is not None:  # one modyolo run, launched by the parent below
        row = run_modyolo_child(json.loads(args.child), args.child_freeze_recipe, args.threads)
        args.child_out.write_text(json.dumps(row, indent=1))
        return 0
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="modyolo-bench-train-"))
    workdir.mkdir(parents=True, exist_ok=True)
    data_yaml = prepare_data(args.data, args.n_train, args.n_val, workdir)
    prefix = _network_off_prefix(not args.network)
    report: dict[str, Any] = {
        "settings": {
            "epochs": args.epochs,
            "img": args.img,
            "batch": args.batch,
            "seed": args.seed,
            "workers": args.workers,
            "threads": args.threads,
            "optimizer": args.optimizer,
            "base": args.base,
            "n_train": len(data_yaml.parent.joinpath("train.txt").read_text().split()),
            "n_val": len(data_yaml.parent.joinpath("val.txt").read_text().split()),
            "network_off": bool(prefix),
            "workdir": str(workdir),
            "cpu_count": os.cpu_count(),
        },
        "load_average_before": list(os.getloadavg()),
        "runs": {},
    }
    for name in args.runs:
        report["runs"][name] = run_one(name, args, data_yaml, workdir, prefix)
    report["load_average_after"] = list(os.getloadavg())
    ref = report["runs"].get("yolov5", {})
    if ref.get("train_images_per_s"):
        report["vs_yolov5"] = {
            name: {
                "speedup": row["train_images_per_s"] / ref["train_images_per_s"],
                "mAP50-95_delta": row["metrics"]["mAP50-95"] - ref["metrics"]["mAP50-95"],
                # issue 12's goals: >= 2x yolov5's train images/s (default flags), no worse mAP50-95
                "speed_goal_met": row["train_images_per_s"] >= 2.0 * ref["train_images_per_s"],
                "accuracy_goal_met": row["metrics"]["mAP50-95"] >= ref["metrics"]["mAP50-95"],
            }
            for name, row in report["runs"].items()
            if name != "yolov5" and "metrics" in row
        }
    text = json.dumps(report, indent=1)
    print(text)
    if args.output:
        args.output.write_text(text)
    return 1 if any("error" in r for r in report["runs"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
