"""Wall time of a 3 variants x 2 seeds ``modyolo compare``: jobs one after another vs ``--jobs N``.

Both runs train the same six (variant, seed) jobs on a generated shapes dataset with the same
settings, then validate, bootstrap and time the variants once. By default every job gets the
same torch threads in both runs (``--job-threads``, default ``cores // N``), which isolates the
effect of running jobs side by side and lets the per-job mAP be compared exactly;
``--seq-threads`` gives the sequential run more threads (e.g. all cores: the realistic
alternative to ``--jobs``). Prints JSON with the wall times, the speed-up, whether the per-job
mAP agreed and the load average (on a shared machine every figure is pessimistic).

    python benchmarks/bench_compare_jobs.py [--epochs 3] [--img 128] [--jobs 2] [--seq-threads 2]
    python benchmarks/bench_compare_jobs.py --epochs 1 --img 64 --n-train 16 --max-batches 2   # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

VARIANTS = (("yolov5n.yaml", 0.25), ("yolov5-mobilenetv2.yaml", 0.25), ("yolov5s-resnet18.yaml", 0.25))


def _cfgs(folder: Path, width_scale: float) -> list[str]:
    import copy

    import yaml

    from modyolo.nn.graph import load_model_yaml

    out = []
    for name, width in VARIANTS:
        cfg, _ = load_model_yaml(name)
        cfg = copy.deepcopy(cfg)
        cfg["width_multiple"] = width * width_scale
        cfg.pop("yaml_file", None)
        path = folder / f"{Path(name).stem}.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        out.append(str(path))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--img", type=int, default=128)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--job-threads", type=int, default=0, help="threads per job in both runs (0 = cores // jobs)")
    ap.add_argument("--seq-threads", type=int, default=0, help="threads of the sequential run (0 = --job-threads)")
    ap.add_argument("--n-train", type=int, default=64)
    ap.add_argument("--n-val", type=int, default=16)
    ap.add_argument("--max-batches", type=int, default=0)
    ap.add_argument("--width-scale", type=float, default=1.0, help="multiply every variant's width_multiple")
    args = ap.parse_args()

    from modyolo.data.synthetic import make_shapes_dataset
    from modyolo.tools.compare import compare
    from modyolo.tools.compare_jobs import cpu_cores
    from modyolo.tools.latency import LatencyProtocol

    cores = cpu_cores()
    threads = args.job_threads or max(1, cores // args.jobs)
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        tmp = Path(tmp)
        data = make_shapes_dataset(
            tmp / "data", n_train=args.n_train, n_val=args.n_val, seed=0, img_size=(args.img, args.img + 32)
        )
        cfgs = _cfgs(tmp, args.width_scale)
        train = dict(
            epochs=args.epochs,
            imgsz=args.img,
            batch_size=8,
            workers=0,
            noplots=True,
            max_batches=args.max_batches,
            optimizer="SGD",
        )
        protocol = LatencyProtocol(imgsz=args.img, warmup=2, runs=5, threads=1)
        out = {
            "variants": [Path(c).stem for c in cfgs],
            "seeds": [0, 1],
            "epochs": args.epochs,
            "img": args.img,
            "n_train": args.n_train,
            "cores": cores,
            "runs": {},
        }
        maps = {}
        for label, jobs, jt in (
            ("sequential", 1, args.seq_threads or threads),
            (f"jobs{args.jobs}", args.jobs, threads),
        ):
            t0 = time.perf_counter()
            res = compare(
                cfgs,
                data=str(data),
                train=train,
                protocol=protocol,
                project=tmp / "runs",
                name=label,
                onnx=False,
                samples=0,
                report=False,
                verbose=False,
                seeds=[0, 1],
                jobs=jobs,
                job_threads=jt,
                n_boot=50,
            )
            wall = time.perf_counter() - t0
            maps[label] = {f"{k[0]}/{k[1]}": d.get("metrics", {}).get("mAP50-95") for k, d in res.jobs.items()}
            out["runs"][label] = {
                "jobs": jobs,
                "threads_per_job": jt,
                "wall_seconds": round(wall, 1),
                "failed_jobs": sum(d.get("status") != "ok" for d in res.jobs.values()),
            }
        seq, par = (out["runs"][k]["wall_seconds"] for k in out["runs"])
        out["speedup"] = round(seq / par, 2) if par else None
        a, b = maps.values()
        out["same_per_job_map"] = all(abs((a[k] or 0) - (b.get(k) or 0)) < 1e-9 for k in a)
    out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
