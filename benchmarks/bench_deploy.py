"""Deployment formats against yolov5 7.0.14's fused eager forward, interleaved in one process; JSON out.

For each model and size: the formats of ``modyolo benchmark`` (PyTorch eager fp32 / channels_last
/ bf16 autocast + channels_last, TorchScript, ONNX Runtime, OpenVINO fp32 / bf16 / INT8) and
yolov5's own ``Model(...).fuse()`` forward with the same weights, all timed round-robin by
``modyolo.tools.latency.measure_runners`` (batch 1, ``--threads`` for every engine, warm-up,
median and p10/p90), so a burst of load on the machine slows every path alike. Each row gives the
speed-up over yolov5 and the achieved GFLOP/s as a share of the peak of the arithmetic it uses:
fp32 and bf16 peaks are measured at start on this machine (a 256-channel 3x3 convolution at 64x64,
the faster of PyTorch and OpenVINO; bf16 is ~2x fp32 with AVX512-BF16, ~6x with AMX), INT8 is
taken as 2x bf16 (VNNI / AMX-INT8 double the bf16 rate; not measured).

    python benchmarks/bench_deploy.py [--models yolov5n.yaml yolov5s.yaml] [--sizes 320 640] [--threads 2]
        [--weights yolov5n.yaml=runs/train/n/weights/best.pt ...] [--data my.yaml] [--runs 30]

Without ``--weights`` the models have seeded random weights (latency only); with trained
weights and ``--data`` each row also has mAP50-95 on the val split. INT8 needs calibration
images: ``--data``, or by default 16 generated shapes images (latency only then). Figures are
noisy when other work shares the CPU; compare rows from one run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_inference import median_ms, yolov5_reference

PEAK_CONV = (256, 64)  # channels, size: a 3x3 convolution large enough to reach the arithmetic's peak


def measure_peaks(threads: int) -> dict[str, float]:
    """GFLOP/s of one large 3x3 convolution, batch 1, ``threads`` threads: fp32 and bf16 (best of
    PyTorch channels_last and OpenVINO), INT8 as 2x bf16."""
    import numpy as np

    torch.set_num_threads(threads)
    c, hw = PEAK_CONV
    gflop = 2 * c * c * 9 * hw * hw / 1e9
    x = torch.randn(1, c, hw, hw).contiguous(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(c, c, 3, padding=1, bias=False).eval().to(memory_format=torch.channels_last)
    best = {}
    with torch.inference_mode():
        best["fp32"] = median_ms(lambda: conv(x), 5, 20)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            best["bf16"] = median_ms(lambda: conv(x), 5, 20)
    with contextlib.suppress(ImportError):
        import openvino as ov
        import openvino.opset13 as ops

        from modyolo.deploy.signal_stack import keep_signal_stack

        p = ops.parameter([1, c, hw, hw], np.float32)
        w = ops.constant(np.random.default_rng(0).random((c, c, 3, 3), dtype=np.float32))
        model = ov.Model([ops.convolution(p, w, [1, 1], [1, 1], [1, 1], [1, 1])], [p])
        xn = x.contiguous().numpy()
        for arithmetic, hint in (("fp32", "f32"), ("bf16", "bf16")):
            config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": hint}
            with keep_signal_stack():
                request = ov.Core().compile_model(model, "CPU", config).create_infer_request()
            best[arithmetic] = min(best[arithmetic], median_ms(lambda r=request: r.infer([xn]), 5, 20))
    peaks = {k: round(gflop / (ms / 1e3), 1) for k, ms in best.items()}
    peaks["int8"] = 2 * peaks["bf16"]
    return peaks


ARITHMETIC = {
    "torch": "fp32",
    "torch_cl": "fp32",
    "torch_bf16": "bf16",
    "torchscript": "fp32",
    "onnx": "fp32",
    "openvino": "fp32",
    "openvino_bf16": "bf16",
    "openvino_int8": "int8",
    "yolov5_eager": "fp32",
}


def _checkpoint(name: str, weights: str | None, out: Path):
    """(checkpoint path, DetectionModel): trained weights when given, else seeded random ones."""
    from modyolo.deploy.prepare import load_model
    from modyolo.engine.checkpoint import save_checkpoint
    from modyolo.nn.model import DetectionModel

    if weights:
        return Path(weights), load_model(weights)
    torch.manual_seed(0)
    model = DetectionModel(name).eval()
    path = save_checkpoint(
        out / f"{Path(name).stem}.pt", model=model, epoch=0, names=list(model.names), model_yaml=model.yaml
    )
    return path, model


def bench(
    name: str, size: int, weights: str | None, data: str | None, calib: str, peaks: dict[str, float], args
) -> list[dict]:
    from modyolo.nn.graph import resolve_cfg_path
    from modyolo.nn.inspect import count_flops
    from modyolo.tools.benchmark import available_formats, build_runners, map50_95, size_mb
    from modyolo.tools.latency import LatencyProtocol, measure_runners

    protocol = LatencyProtocol(
        imgsz=size, batch=1, threads=args.threads, warmup=args.warmup, runs=args.runs, layout="nchw", settle=args.settle
    )
    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as tmp:
        ckpt, model = _checkpoint(name, weights, Path(tmp))
        formats = available_formats(args.formats, int8=True)
        runners = build_runners(ckpt, formats, size, Path(tmp), protocol.resolved_threads(), data or calib, 1.0, 0)
        cfg_path = str(resolve_cfg_path(model.yaml.get("yaml_file", name)))
        ref = yolov5_reference(cfg_path, model.state_dict(), nc=len(model.names))
        torch.set_num_threads(protocol.resolved_threads())  # yolov5 sets OMP_NUM_THREADS on import; ours wins
        x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
        timed = {f: (lambda r=r: r(x)) for f, (r, _) in runners.items()}
        if ref is not None:

            def peer():
                with torch.inference_mode():
                    return ref(x)

            timed["yolov5_eager"] = peer
        lat = measure_runners(timed, protocol)
        gflop = count_flops(model, size) / 1e9
        base = lat["yolov5_eager"].median_ms if "yolov5_eager" in lat else None
        rows = []
        for f, latency in lat.items():
            path = runners[f][1] if f in runners else None
            ms = latency.median_ms
            peak = peaks[ARITHMETIC[f]]
            rows.append(
                {
                    "model": Path(name).stem,
                    "imgsz": size,
                    "format": f,
                    "median_ms": round(ms, 2),
                    "p10_ms": round(latency.p10_ms, 2),
                    "p90_ms": round(latency.p90_ms, 2),
                    "speedup_vs_yolov5_eager": round(base / ms, 2) if base else None,
                    "gflop": round(gflop, 3),
                    "gflops_per_s": round(gflop / (ms / 1e3), 1),
                    "arithmetic": ARITHMETIC[f],
                    "fraction_of_peak": round(gflop / (ms / 1e3) / peak, 3),
                    "size_mb": round(size_mb(path), 2) if path else None,
                    "map50_95": round(map50_95(runners[f][0], data, size, 0), 4)
                    if (weights and data and f in runners)
                    else None,
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["yolov5n.yaml", "yolov5s.yaml"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[320, 640])
    parser.add_argument("--weights", nargs="*", default=[], help="MODEL=best.pt pairs (trained weights)")
    parser.add_argument("--data", default=None, help="data YAML: INT8 calibration + mAP50-95 (with --weights)")
    parser.add_argument("--formats", nargs="+", default=None, help="subset of modyolo benchmark's formats")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--settle", type=int, default=1, help="untimed calls of a path before each timed one")
    args = parser.parse_args()
    weights = dict(w.split("=", 1) for w in args.weights)
    torch.set_num_threads(args.threads)
    peaks = measure_peaks(args.threads)
    rows = []
    # stdout carries only the JSON: progress that libraries print (NNCF's calibration bars) goes to stderr
    with tempfile.TemporaryDirectory(prefix="bench-deploy-calib-") as tmp, contextlib.redirect_stdout(sys.stderr):
        from modyolo.data.synthetic import make_shapes_dataset

        calib = str(make_shapes_dataset(Path(tmp) / "shapes", n_train=16, n_val=4, img_size=(256, 512)))
        for name in args.models:
            for size in args.sizes:
                rows += bench(name, size, weights.get(name), args.data, calib, peaks, args)
    best = {}
    for r in rows:
        key = f"{r['model']}@{r['imgsz']}"
        if r["format"] != "yolov5_eager" and (key not in best or r["median_ms"] < best[key]["median_ms"]):
            best[key] = r
    print(
        json.dumps(
            {
                "benchmark": "deploy formats, batch 1, interleaved with yolov5 7.0.14 eager",
                "threads": args.threads,
                "runs": args.runs,
                "warmup": args.warmup,
                "settle": args.settle,
                "peak_gflops": peaks,
                "torch": torch.__version__,
                "best": {
                    k: {
                        "format": v["format"],
                        "median_ms": v["median_ms"],
                        "speedup_vs_yolov5_eager": v["speedup_vs_yolov5_eager"],
                    }
                    for k, v in best.items()
                },
                "rows": rows,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
