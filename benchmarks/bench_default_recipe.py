"""modyolo's default recipe vs yolov5's recipe vs ultralytics' default training; prints JSON.

One generated shapes set (``--n-train`` / ``--n-val`` images, seed ``--seed``), then, one after
another, each in its own process (network off with ``unshare -n`` when it works):

- ``yolov5n-default``: ``modyolo train --cfg yolov5n.yaml`` with DEFAULT flags (``--optimizer
  auto``, ``--precision auto``, close-mosaic; README "The default recipe");
- ``swap-default``: the same for a backbone swap (``--swap``, default yolov5-mobilenetv2.yaml at
  width 0.5, as in the demo);
- ``yolov5n-yolov5-recipe``: modyolo with yolov5's recipe, ``--optimizer SGD --hyp scratch-low``;
- ``ultralytics-yolo11n``: ultralytics' own default training of ``yolo11n.yaml`` (its
  ``optimizer=auto``, AMP, close-mosaic 10, ...), offline (``YOLO_OFFLINE=1``), ``plots=False``,
  the same workers, batch, image size, epochs and seed.

Every run uses ``device`` auto (CUDA when present, else CPU) unless ``--device`` says otherwise.
Per run: P, R, mAP50, mAP50-95 of the final epoch's validation (EMA weights; for ultralytics its
last epoch's validation, before its extra best.pt evaluation, which is reported apart as
``final_eval``), steady train images/s (epochs after the first, batches with data loading,
validation excluded) and the wall time of the whole process. modyolo rows also say the resolved
recipe (optimizer, lr0, nbs, close-mosaic, precision). ``--markdown`` adds a table.

The modyolo runs are ``benchmarks/bench_train.py``'s child runs (its data lists and launcher);
only the ultralytics child lives here::

    python benchmarks/bench_default_recipe.py --n-train 32 --n-val 8 --img 64 --epochs 2 --markdown  # smoke
    python benchmarks/bench_default_recipe.py --markdown                                            # real

Speed figures mean little while other work shares the machine: the JSON records the load
average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_train  # noqa: E402  (the sibling benchmark, importable once HERE is on sys.path)

RUNS = ("yolov5n-default", "swap-default", "yolov5n-yolov5-recipe", "ultralytics-yolo11n")
METRIC_KEYS = bench_train.METRIC_KEYS
ULTRALYTICS_KEYS = {
    "precision": "metrics/precision(B)",
    "recall": "metrics/recall(B)",
    "mAP50": "metrics/mAP50(B)",
    "mAP50-95": "metrics/mAP50-95(B)",
}


# -- data ------------------------------------------------------------------------------------------
def make_data(args: argparse.Namespace, workdir: Path) -> Path:
    """The generated shapes set (reused when the same sizes are already in ``workdir``) as file lists."""
    from modyolo.data.synthetic import make_shapes_dataset

    root = workdir / f"shapes-{args.n_train}-{args.n_val}-seed{args.seed}"
    yaml_path = root / "shapes.yaml"
    if not yaml_path.is_file():
        make_shapes_dataset(root, n_train=args.n_train, n_val=args.n_val, seed=args.seed)
    return bench_train.prepare_data(str(yaml_path), 0, 0, workdir)


# -- modyolo runs ----------------------------------------------------------------------------------
def _swap_cfg(spec: str) -> Any:
    """``name.yaml`` or ``name.yaml@0.5`` (width multiple) -> a model YAML name or dict."""
    name, _, width = spec.partition("@")
    if not width:
        return name
    from modyolo.nn.graph import load_model_yaml

    cfg, _ = load_model_yaml(name)
    return {**cfg, "width_multiple": float(width)}


def modyolo_options(name: str, args: argparse.Namespace, data_yaml: Path, project: Path) -> dict[str, Any]:
    """TrainConfig values: the run's model, the shared sizes, and nothing else unless the run says so."""
    options = {
        "data": str(data_yaml),
        "cfg": _swap_cfg(args.swap) if name == "swap-default" else "yolov5n.yaml",
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
    if name == "yolov5n-yolov5-recipe":
        options.update(optimizer="SGD", hyp="scratch-low")
    return options


def run_modyolo_child(options: dict[str, Any], threads: int) -> dict[str, Any]:
    """One modyolo training (in the child process); the row plus the recipe the run resolved."""
    import torch

    from modyolo.engine.config import TrainConfig
    from modyolo.engine.trainer import Trainer
    from modyolo.eval.validator import validate

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    trainer = Trainer(TrainConfig.from_dict(options, "bench_default_recipe options"), evaluator=validate)
    result = trainer.fit()
    row = bench_train._summarise([result])
    row["wall_seconds"] = time.perf_counter() - t0
    row["threads"] = torch.get_num_threads()
    row["device"] = str(trainer.device)
    row["recipe"] = {
        "optimizer": trainer.cfg.optimizer,
        "lr0": trainer.run.hyp.lr0,
        "nbs": trainer.cfg.nbs,
        "warmup_epochs": trainer.run.hyp.warmup_epochs,
        "close_mosaic": trainer.cfg.close_mosaic,
        "precision": trainer.precision.name,
        "channels_last": trainer.cfg.channels_last,
    }
    row["params"] = int(sum(p.numel() for p in trainer.model.parameters()))
    return row


# -- the ultralytics run ---------------------------------------------------------------------------
def run_ultralytics_child(options: dict[str, Any], threads: int, config_dir: Path) -> dict[str, Any]:
    """ultralytics' default training of yolo11n.yaml, timed by its own callbacks.

    Offline: ``YOLO_OFFLINE=1`` and a private ``YOLO_CONFIG_DIR`` are set before the import; on
    CUDA its AMP self-check (which downloads a checkpoint) is replaced by its documented outcome
    when the check cannot run, ``amp=True``. Its results.csv, copied into each checkpoint, is read
    with the csv module instead of polars (not installed with the peers). Nothing else is changed.
    """
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_CONFIG_DIR"] = str(config_dir)
    config_dir.mkdir(parents=True, exist_ok=True)
    import torch

    torch.set_num_threads(threads)
    import ultralytics
    from ultralytics import YOLO
    from ultralytics.engine import trainer as ul_trainer

    # offline there is no checkpoint to compare against; CPU and MPS keep its own answer (no AMP)
    ul_trainer.check_amp = lambda model: next(model.parameters()).device.type == "cuda"
    ul_trainer.BaseTrainer.read_results_csv = _read_results_csv
    epochs: list[dict[str, Any]] = []
    state: dict[str, Any] = {"final_eval": None}

    def epoch_start(tr: Any) -> None:
        state["t"] = time.perf_counter()

    def epoch_end(tr: Any) -> None:
        epochs.append(
            {
                "epoch": tr.epoch,
                "train_seconds": time.perf_counter() - state["t"],
                "images": len(tr.train_loader.dataset),
            }
        )

    def fit_epoch_end(tr: Any) -> None:
        metrics = {k: float((tr.metrics or {}).get(v, 0.0)) for k, v in ULTRALYTICS_KEYS.items()}
        if epochs and "mAP50" not in epochs[-1]:
            epochs[-1].update(metrics)
        else:  # the extra evaluation of best.pt after the last epoch
            state["final_eval"] = metrics

    model = YOLO("yolo11n.yaml")
    model.add_callback("on_train_epoch_start", epoch_start)
    model.add_callback("on_train_epoch_end", epoch_end)
    model.add_callback("on_fit_epoch_end", fit_epoch_end)
    t0 = time.perf_counter()
    model.train(
        data=options["data"],
        epochs=options["epochs"],
        imgsz=options["imgsz"],
        batch=options["batch_size"],
        seed=options["seed"],
        workers=options["workers"],
        project=options["project"],
        name=options["name"],
        exist_ok=True,
        plots=False,
        verbose=False,
        **({"device": options["device"]} if options["device"] else {}),
    )
    wall = time.perf_counter() - t0
    tr = model.trainer
    group = tr.optimizer.param_groups[0]
    recipe = {
        "optimizer": type(tr.optimizer).__name__,
        "lr0": float(group.get("initial_lr", group["lr"])),
        "nbs": int(tr.args.nbs),
        "close_mosaic": int(tr.args.close_mosaic),
        "precision": "fp16" if bool(tr.amp) else "fp32",
        "channels_last": False,
    }
    steady = epochs[1:] if len(epochs) > 1 else epochs
    seconds = sum(e["train_seconds"] for e in steady)
    last = epochs[-1] if epochs else {}
    return {
        "train_images_per_s": sum(e["images"] for e in steady) / seconds if seconds else 0.0,
        "train_seconds": sum(e["train_seconds"] for e in epochs),
        "wall_seconds": wall,
        "metrics": {k: float(last.get(k, 0.0)) for k in METRIC_KEYS},
        "final_eval": state["final_eval"],
        "epochs": epochs,
        "recipe": recipe,
        "threads": torch.get_num_threads(),
        "ultralytics_version": ultralytics.__version__,
        "params": int(sum(p.numel() for p in model.model.parameters())),
        "device": str(next(model.model.parameters()).device),
    }


def _read_results_csv(self: Any) -> dict[str, list[float]]:
    """ultralytics' results.csv as ``{column: [values]}`` (what its polars reader returns)."""
    import csv

    with open(self.csv, newline="") as f:
        rows = list(csv.DictReader(f))
    return {k.strip(): [float(r[k]) for r in rows] for k in rows[0]} if rows else {}


# -- orchestration ---------------------------------------------------------------------------------
def run_one(name: str, args: argparse.Namespace, data_yaml: Path, workdir: Path, prefix: list[str]) -> dict[str, Any]:
    out, log = workdir / f"{name}.json", workdir / f"{name}.log"
    out.unlink(missing_ok=True)
    options = modyolo_options(name, args, data_yaml, workdir / "runs")
    cmd = [
        *prefix,
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        name,
        "--child-options",
        json.dumps(options),
        "--child-out",
        str(out),
        "--threads",
        str(args.threads),
        "--workdir",
        str(workdir),
    ]
    print(f"[bench_default_recipe] {name}: running, log {log}", file=sys.stderr, flush=True)
    row = bench_train._launch(cmd, out, log, args.threads)
    if "error" not in row:
        m = row["metrics"]
        print(
            f"[bench_default_recipe] {name}: {row['train_images_per_s']:.1f} img/s, "
            f"wall {row['wall_seconds']:.0f} s, "
            f"mAP50 {m['mAP50']:.3f}, mAP50-95 {m['mAP50-95']:.3f}",
            file=sys.stderr,
            flush=True,
        )
    return row


def markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    lines = [
        f"{s['n_train']} train / {s['n_val']} val shapes images, {s['img']} px, batch {s['batch']}, "
        f"{s['epochs']} epochs, seed {s['seed']}, {s['workers']} workers, {s['threads']} threads",
        "",
        "| run | recipe | P | R | mAP50 | mAP50-95 | train img/s | wall (s) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in report["runs"].items():
        if "error" in row:
            lines.append(f"| {name} | failed: {row['error'].splitlines()[0]} | | | | | | |")
            continue
        r = row.get("recipe")
        recipe = (
            f"{r['optimizer']} lr0 {r['lr0']:.2g}, nbs {r['nbs']}, close-mosaic {r['close_mosaic']}, {r['precision']}"
            if r
            else ""
        )
        m = row["metrics"]
        lines.append(
            f"| {name} | {recipe} | {m['precision']:.3f} | {m['recall']:.3f} | {m['mAP50']:.3f} | "
            f"{m['mAP50-95']:.3f} | {row['train_images_per_s']:.1f} | {row['wall_seconds']:.0f} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-train", type=int, default=800)
    p.add_argument("--n-val", type=int, default=200)
    p.add_argument("--img", type=int, default=320)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads in every run")
    p.add_argument("--device", default="", help="'' = CUDA if available, else cpu (every run)")
    p.add_argument(
        "--swap",
        default="yolov5-mobilenetv2.yaml@0.5",
        help="the backbone swap: a model YAML, optionally @width_multiple",
    )
    p.add_argument("--which", default=",".join(RUNS), help=f"comma separated from {','.join(RUNS)}")
    p.add_argument("--workdir", type=Path, default=None, help="data, runs and logs (default: a new temp dir, kept)")
    p.add_argument("--output", type=Path, default=None, help="also write the JSON report here")
    p.add_argument("--markdown", action="store_true", help="also print a markdown table (after the JSON)")
    p.add_argument("--network", action="store_true", help="do not wrap runs in `unshare -n`")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-options", default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-out", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child is None:
        args.runs = tuple(w.strip() for w in args.which.split(",") if w.strip())
        unknown = [n for n in args.runs if n not in RUNS]
        if unknown or not args.runs:
            p.error(f"--which: unknown run(s) {unknown or args.which!r}; choose from {', '.join(RUNS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child is not None:
        options = json.loads(args.child_options)
        if args.child == "ultralytics-yolo11n":
            row = run_ultralytics_child(options, args.threads, args.workdir / "ultralytics-config")
        else:
            row = run_modyolo_child(options, args.threads)
        args.child_out.write_text(json.dumps(row, indent=1))
        return 0
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="modyolo-bench-recipe-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    args.workdir = workdir
    data_yaml = make_data(args, workdir)
    prefix = bench_train._network_off_prefix(not args.network)
    report: dict[str, Any] = {
        "settings": {
            "n_train": args.n_train,
            "n_val": args.n_val,
            "img": args.img,
            "batch": args.batch,
            "epochs": args.epochs,
            "seed": args.seed,
            "workers": args.workers,
            "threads": args.threads,
            "device": args.device or "auto",
            "swap": args.swap,
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
    text = json.dumps(report, indent=1)
    print(text)
    if args.output:
        args.output.write_text(text)
    if args.markdown:
        print("\n" + markdown(report))
    return 1 if any("error" in r for r in report["runs"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
