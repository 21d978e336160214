"""``modyolo profile``: build a model YAML, print its layer table and summary, optionally time
each layer so the expensive block of a new backbone is easy to spot."""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from torch import nn

from modyolo.nn.model import DetectionModel


def per_layer_profile(model: DetectionModel, img_size: int, runs: int = 20, warmup: int = 3) -> list[dict]:
    """Median milliseconds, params and GFLOPs of each row for one batch-1 forward.

    The rows run through the model's own forward loop (``run_rows``); each row's call is counted
    by the FLOP counter once, then repeated ``warmup + runs`` times on the same inputs for timing.
    """
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    rows: list[dict] = []

    def timed(i: int, module: nn.Module, inp: Any) -> Any:
        with FlopCounterMode(display=False) as counter:
            out = module(inp)
        times = []
        for k in range(warmup + runs):
            t0 = time.perf_counter()
            module(inp)
            if k >= warmup:
                times.append((time.perf_counter() - t0) * 1e3)
        rows.append(
            {
                "index": i,
                "module": model.layers_meta[i].name,
                "params": sum(p.numel() for p in module.parameters()),
                "gflops": counter.get_total_flops() / 1e9,
                "ms": statistics.median(times),
            }
        )
        return out

    with torch.inference_mode():
        model.run_rows(torch.zeros(1, model.yaml.get("ch", 3), img_size, img_size), timed)
    return rows


def format_per_layer(rows: list[dict]) -> str:
    total = sum(r["ms"] for r in rows) or 1.0
    lines = [f"{'':>3}  {'module':<22}{'params':>10}{'GFLOPs':>9}{'ms':>9}{'share':>7}"]
    for r in rows:
        lines.append(
            f"{r['index']:>3}  {r['module']:<22}{r['params']:>10,}{r['gflops']:>9.3f}"
            f"{r['ms']:>9.2f}{r['ms'] / total:>7.1%}"
        )
    lines.append(f"total {total:.1f} ms (sum of per-layer medians; batch 1, {torch.get_num_threads()} threads)")
    return "\n".join(lines)
