"""``modyolo benchmark``: every inference format of one model — latency, size on disk, mAP50-95 — in one table.

    modyolo benchmark --weights runs/train/exp/weights/best.pt --data my.yaml --img 640

Formats (those whose packages are installed; ``--formats`` picks a subset):

- ``torch`` eager fp32 NCHW, ``torch_cl`` channels_last, ``torch_bf16`` bf16 autocast + channels_last
  (only on CPUs with native bf16: avx512_bf16 / AMX), all fused (Conv+BN folded);
- ``torchscript``; ``onnx`` (ONNX Runtime); ``openvino`` (fp32), ``openvino_bf16`` (the CPU
  plugin's bf16 precision hint, bf16 CPUs only), ``openvino_int8`` (NNCF, calibrated on
  ``--data``'s train images; shown even when it loses mAP, so the cost is visible).

Latency follows :mod:`modyolo.tools.latency`'s protocol (batch 1, the same threads for every
engine, warm-up, median and p10–p90 of interleaved rounds) through its ``measure_runners``
hook; mAP50-95 is ``modyolo val``'s at conf 0.001 / IoU 0.6 on square letterboxed batches of the
same size, so the exports with a fixed input run unchanged. ``fastest_valid`` picks the fastest
format within an mAP budget — what a deployment (or ``compare``) should run.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from modyolo.structures import MAP50_95

# re-exported: benchmarks/ and the tests import the format runners from here
from modyolo.tools.formats import ALL_FORMATS as ALL_FORMATS
from modyolo.tools.formats import TorchVariant as TorchVariant
from modyolo.tools.formats import available_formats as available_formats
from modyolo.tools.formats import build_runners as build_runners
from modyolo.tools.formats import cpu_has_bf16 as cpu_has_bf16

LOGGER = logging.getLogger("modyolo.tools.benchmark")


@dataclass
class FormatResult:
    """One row: ``median_ms`` / ``p10_ms`` / ``p90_ms`` per batch-1 forward, ``size_mb`` on disk,
    ``map50_95`` on the val split (None when skipped), ``path`` of the file run."""

    format: str
    median_ms: float
    p10_ms: float
    p90_ms: float
    size_mb: float
    map50_95: float | None
    path: str


def size_mb(path: Path) -> float:
    extra = path.with_suffix(".bin").stat().st_size if path.suffix == ".xml" else 0
    return (path.stat().st_size + extra) / 1e6


def map50_95(run: Callable, data: str, imgsz: int, workers: int) -> float:
    """``modyolo val``'s mAP50-95 of ``run`` on ``data``'s val split, square batches of ``imgsz``."""
    from modyolo.data.dataset_yaml import load_data_config
    from modyolo.data.loader import create_dataloader
    from modyolo.eval.validator import validate

    cfg = load_data_config(data)
    loader, _ = create_dataloader(
        cfg.val,
        imgsz,
        1,
        32,
        augment=False,
        rect=False,
        workers=workers,
        shuffle=False,
        prefix="val: ",
        names=cfg.names,
        nc=cfg.nc,
        persistent=False,
        progress=False,
    )
    names = list(cfg.names.values()) if isinstance(cfg.names, dict) else list(cfg.names)
    result = validate(run, loader, names=names, progress=False, device=torch.device("cpu"))
    return float(np.mean(np.asarray(result.metrics[MAP50_95], dtype=np.float64)))


def benchmark(
    weights: str | Path,
    data: str | None = None,
    imgsz: int = 640,
    formats: list[str] | None = None,
    runs: int = 30,
    warmup: int = 10,
    threads: int = 0,
    fraction: float = 1.0,
    settle: int = 1,
    workers: int = 0,
    out_dir: str | Path | None = None,
    measure_map: bool = True,
) -> tuple[list[FormatResult], str]:
    """Export, time (interleaved) and validate every available format.

    Returns one :class:`FormatResult` per format and the latency protocol's one-line description.
    """
    from modyolo.tools.latency import LatencyProtocol, measure_runners

    weights = Path(weights)
    if not weights.is_file():
        raise FileNotFoundError(f"--weights {weights} not found")
    protocol = LatencyProtocol(
        imgsz=imgsz, batch=1, threads=threads, warmup=warmup, runs=runs, layout="nchw", settle=settle
    )
    chosen = available_formats(formats, int8=bool(data))
    with tempfile.TemporaryDirectory(prefix="modyolo-bench-") as tmp:
        out = Path(out_dir) if out_dir else Path(tmp)
        runners = build_runners(weights, chosen, imgsz, out, protocol.resolved_threads(), data, fraction, workers)
        x = torch.rand(1, 3, imgsz, imgsz, generator=torch.Generator().manual_seed(0))
        lat = measure_runners({f: (lambda r=r: r(x)) for f, (r, _) in runners.items()}, protocol)
        rows = []
        for f, (run, path) in runners.items():
            m = map50_95(run, data, imgsz, workers) if (data and measure_map) else None
            rows.append(FormatResult(f, lat[f].median_ms, lat[f].p10_ms, lat[f].p90_ms, size_mb(path), m, str(path)))
    return rows, describe(protocol)


def describe(protocol) -> str:
    """The protocol line printed above the table (forward only: every format's NMS would be the same)."""
    import platform

    note = "" if protocol.runs >= 20 else " (below the protocol's 20: indicative only)"
    return (
        f"latency protocol: cpu ({platform.processor() or platform.machine()}), {protocol.resolved_threads()} "
        f"threads for every engine, batch {protocol.batch}, image {protocol.imgsz}x{protocol.imgsz}, forward only "
        f"(no NMS), each format in its own precision/layout, warm-up {protocol.warmup}, median of {protocol.runs} "
        f"interleaved rounds{note}, each timed call after {protocol.settle} untimed call(s) of the same format; "
        f"torch {torch.__version__}"
    )


def fastest_valid(rows: list[FormatResult], max_drop: float = 1.0) -> FormatResult:
    """The fastest row whose mAP50-95 is within ``max_drop`` points of eager fp32 (rows without mAP count as valid)."""
    ref = next((r.map50_95 for r in rows if r.format == "torch" and r.map50_95 is not None), None)
    ok = [r for r in rows if ref is None or r.map50_95 is None or (ref - r.map50_95) * 100 <= max_drop]
    return min(ok or rows, key=lambda r: r.median_ms)


def format_table(rows: list[FormatResult]) -> str:
    base = next((r.median_ms for r in rows if r.format == "torch"), None)
    lines = [f"{'format':<15}{'median ms':>10}{'p10-p90 ms':>15}{'speed-up':>10}{'size MB':>9}{'mAP50-95':>10}"]
    for r in rows:
        speed = f"{base / r.median_ms:.2f}x" if base else "-"
        m = f"{r.map50_95:.4f}" if r.map50_95 is not None else "-"
        lines.append(
            f"{r.format:<15}{r.median_ms:>10.2f}{f'{r.p10_ms:.2f}-{r.p90_ms:.2f}':>15}{speed:>10}"
            f"{r.size_mb:>9.1f}{m:>10}"
        )
    return "\n".join(lines)
