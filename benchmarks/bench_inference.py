"""Batch-1 inference latency of the deploy paths, printed as JSON.

For yolov5n and yolov5s at 320 and 640 px: PyTorch eager (fused, inference_mode; NCHW,
channels_last, and bf16 autocast + channels_last), TorchScript (traced export), ONNX Runtime
(CPU EP) and, when the ``yolov5`` package imports, yolov5's own fused eager forward with the same
weights (the issue's reference). Each row: median ms over ``--runs`` after ``--warmup`` runs,
achieved GFLOP/s and its fraction of the machine's measured fp32 conv peak
(215 GFLOP/s on 2 Zen4 cores: a 3x3 conv, channels_last, 2 threads), and the speedup over the reference.

    python benchmarks/bench_inference.py [--threads 2] [--runs 20] [--models yolov5n yolov5s]

Figures are noisy when other work shares the CPU; compare rows from one run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

FP32_PEAK_GFLOPS = 215.0  # 3x3 conv, channels_last, 2 threads, measured on 2 Zen4 cores


def median_ms(fn: Callable[[], object], warmup: int, runs: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def yolov5_reference(cfg_path: str, state: dict, nc: int | None = None) -> torch.nn.Module | None:
    """yolov5's own Model for the same YAML with the same weights (``nc`` classes when the weights
    were trained on another class count than the YAML's), fused; None if not installed."""
    os.environ.setdefault("ULTRALYTICS_SKIP_REQUIREMENTS_CHECKS", "1")
    os.environ.setdefault("YOLO_OFFLINE", "1")
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(open(os.devnull, "w")):
            warnings.simplefilter("ignore")
            from yolov5.models.yolo import Model

            ref = Model(cfg_path, nc=nc)
    except Exception:
        return None
    ref.load_state_dict(state, strict=True)
    with contextlib.redirect_stdout(open(os.devnull, "w")):
        ref = ref.eval().fuse()
    return ref


def bench_model(name: str, sizes: list[int], threads: int, warmup: int, runs: int) -> list[dict]:
    from modyolo.deploy.backends import load_backend
    from modyolo.deploy.export import export
    from modyolo.deploy.prepare import prepare_for_export
    from modyolo.nn.graph import resolve_cfg_path
    from modyolo.nn.inspect import count_flops
    from modyolo.nn.model import DetectionModel

    torch.manual_seed(0)
    model = DetectionModel(name).eval()
    state = model.state_dict()
    fused = prepare_for_export(model)
    ref = yolov5_reference(str(resolve_cfg_path(name)), state)
    torch.set_num_threads(threads)  # yolov5 sets OMP_NUM_THREADS on import; ours wins
    rows = []
    for size in sizes:
        gflop = count_flops(model, size) / 1e9
        x = torch.rand(1, 3, size, size)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        fused_cl = prepare_for_export(model).to(memory_format=torch.channels_last)
        paths: dict[str, Callable[[], object]] = {}
        if ref is not None:
            paths["yolov5 eager fp32 NCHW (reference)"] = lambda: ref(x)
        paths["eager fp32 NCHW"] = lambda: fused(x)
        paths["eager fp32 channels_last"] = lambda: fused_cl(x_cl)

        def bf16() -> object:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return fused_cl(x_cl)

        paths["eager bf16 autocast + channels_last"] = bf16
        with tempfile.TemporaryDirectory() as tmp:
            files = export(model, include=("onnx", "torchscript"), imgsz=size, out_dir=tmp)
            ts, ox = load_backend(files["torchscript"]), load_backend(files["onnx"], threads=threads)
            paths["TorchScript (jit.trace) fp32"] = lambda: ts(x)
            paths[f"ONNX Runtime fp32 ({threads} threads)"] = lambda: ox(x)
            with torch.inference_mode():
                timed = {label: median_ms(fn, warmup, runs) for label, fn in paths.items()}
        base = timed.get("yolov5 eager fp32 NCHW (reference)")
        for label, ms in timed.items():
            gflops = gflop / (ms / 1e3)
            rows.append(
                {
                    "model": Path(name).stem,
                    "imgsz": size,
                    "path": label,
                    "ms": round(ms, 2),
                    "gflop": round(gflop, 3),
                    "gflops_per_s": round(gflops, 1),
                    "fraction_of_fp32_peak": round(gflops / FP32_PEAK_GFLOPS, 3),
                    "speedup_vs_yolov5_eager": round(base / ms, 2) if base else None,
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["yolov5n.yaml", "yolov5s.yaml"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[320, 640])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.models:
        rows += bench_model(name, args.sizes, args.threads, args.warmup, args.runs)
    print(
        json.dumps(
            {
                "benchmark": "inference batch 1",
                "threads": args.threads,
                "runs": args.runs,
                "warmup": args.warmup,
                "fp32_peak_gflops": FP32_PEAK_GFLOPS,
                "torch": torch.__version__,
                "note": "median latency; the CPU may be shared with other work, so expect ~10% noise",
                "rows": rows,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
