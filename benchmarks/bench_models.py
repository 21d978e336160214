"""Params, GFLOPs@640 and CPU latency of every shipped model config; prints JSON.

Latency: batch 1, BN fused, eval, ``torch.inference_mode``, fp32 NCHW eager, ``--warmup`` untimed
runs then the median (and min / p90) of ``--runs`` timed runs per image size, ``--threads``
torch threads. One JSON object per config is printed as soon as it is measured (a full run over
all configs at 640 takes many minutes on 2 cores); ``--output`` also writes the list, and
``--markdown`` prints the README table at the end.

    python benchmarks/bench_models.py                       # all configs, 320 and 640, 20 runs
    python benchmarks/bench_models.py --runs 5 --sizes 320  # a quick check
    python benchmarks/bench_models.py --configs yolov5s.yaml yolov5s-resnet18.yaml --markdown
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from modyolo.nn.graph import shipped_configs
from modyolo.nn.inspect import count_flops
from modyolo.nn.model import DetectionModel


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=None, help="model YAMLs (default: every shipped config)")
    p.add_argument("--sizes", nargs="+", type=int, default=[320, 640], help="square image sizes to time")
    p.add_argument("--runs", type=int, default=20, help="timed runs per size (median reported)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs before timing")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--flops-size", type=int, default=640, help="image size for the GFLOPs figure")
    p.add_argument("--output", type=Path, default=None, help="also write the results list to this JSON file")
    p.add_argument("--markdown", action="store_true", help="print a markdown table at the end")
    return p.parse_args(argv)


def time_forward(model: torch.nn.Module, size: int, runs: int, warmup: int) -> dict[str, float]:
    """Milliseconds per batch-1 forward: median, min and 90th percentile of ``runs``."""
    x = torch.zeros(1, 3, size, size)
    times = []
    with torch.inference_mode():
        for i in range(warmup + runs):
            t0 = time.perf_counter()
            model(x)
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return {
        "median_ms": round(statistics.median(times), 2),
        "min_ms": round(times[0], 2),
        "p90_ms": round(times[min(len(times) - 1, int(0.9 * len(times)))], 2),
    }


def bench(cfg: str, args: argparse.Namespace) -> dict:
    model = DetectionModel(cfg).eval()
    result = {
        "config": cfg,
        "params": sum(p.numel() for p in model.parameters()),
        f"gflops@{args.flops_size}": round(count_flops(model, args.flops_size) / 1e9, 2),
    }
    model.fuse()
    for size in args.sizes:
        result[f"latency@{size}"] = time_forward(model, size, args.runs, args.warmup)
    return result


def markdown(results: list[dict], args: argparse.Namespace) -> str:
    sizes = args.sizes
    head = f"| config | params (M) | GFLOPs@{args.flops_size} | " + " | ".join(f"CPU ms @{s}" for s in sizes) + " |"
    lines = [head, "|" + "---|" * (3 + len(sizes))]
    for r in results:
        cells = [r["config"].removesuffix(".yaml"), f"{r['params'] / 1e6:.2f}", f"{r[f'gflops@{args.flops_size}']:.1f}"]
        cells += [f"{r[f'latency@{s}']['median_ms']:.1f}" for s in sizes]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(
        f"\nbatch 1, fused, fp32 eager, {args.threads} threads, median of {args.runs} runs, "
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    configs = args.configs or shipped_configs()
    results = []
    for cfg in configs:
        try:
            result = bench(cfg, args)
        except Exception as e:  # one broken config must not hide the others' figures
            result = {"config": cfg, "error": f"{type(e).__name__}: {e}"}
        print(json.dumps(result), flush=True)
        results.append(result)
    if args.output:
        args.output.write_text(json.dumps({"threads": args.threads, "runs": args.runs, "results": results}, indent=1))
    good = [r for r in results if "error" not in r]
    if args.markdown and good:
        print(markdown(good, args))
    return 1 if len(good) != len(results) else 0


if __name__ == "__main__":
    sys.exit(main())
