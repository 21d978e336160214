"""``modyolo profile``: build a model YAML, print its layer table and summary, optionally time
each layer so the expensive block of a new backbone is easy to spot."""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn


def per_layer_profile(model: nn.Module, img_size: int, runs: int = 20, warmup: int = 3) -> list[dict]:
    """Median milliseconds, params and GFLOPs of each row for one batch-1 forward."""
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    x = torch.zeros(1, model.yaml.get("ch", 3), img_size, img_size)
    rows = []
    outputs: list = []
    with torch.inference_mode():
        for i, (module, route) in enumerate(zip(model.model, model.routes)):
            inp = (
                x
                if route is None
                else (outputs[route] if isinstance(route, int) else [x if j == -2 else outputs[j] for j in route])
            )
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
            outputs.append(out)
            x = out
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
