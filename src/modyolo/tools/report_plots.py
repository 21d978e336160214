"""The comparison figures, drawn with matplotlib's Agg canvas (no display, no pyplot state).

Each function takes the :class:`VariantResult` rows and returns a matplotlib Figure; variants
without the needed numbers (failed, or not timed) are left out of that figure and named in its
caption by the report. Colours are fixed per variant (by position), so a variant has the same
colour in every figure.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from modyolo.structures import LOSS_PARTS
from modyolo.tools.compare_table import VariantResult, class_names

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f")


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _figure(size: tuple[float, float]):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig: Any, dpi: int = 110) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def pr_curves(results: Sequence[VariantResult]):
    """Precision against recall at IoU 0.5, mean over classes, one line per variant."""
    fig = _figure((6.4, 4.8))
    ax = fig.add_subplot()
    for i, r in enumerate(results):
        if r.pr_curve is None:
            continue
        px, py = r.pr_curve
        ax.plot(px, py, color=color(i), linewidth=2, label=f"{r.name} (mAP50 {r.map50:.3f})")
    ax.set(
        xlabel="Recall",
        ylabel="Precision",
        xlim=(0, 1),
        ylim=(0, 1.02),
        title="Precision-recall at IoU 0.5 (mean over classes)",
    )
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower left")
    return fig


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: lower or equal x *and* higher or equal y, one strictly.

    points: ``(cost, quality)`` pairs, e.g. (latency ms, mAP50-95). Returned sorted by cost.
    """
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any((x2 <= x and y2 >= y) and (x2 < x or y2 > y) for j, (x2, y2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def _cost(r: VariantResult, axis: str) -> float | None:
    if axis == "latency_torch":
        return r.latency_torch.median_ms if r.latency_torch else None
    if axis == "latency_onnx":
        return r.latency_onnx.median_ms if r.latency_onnx else None
    return r.gflops


AXIS_LABELS = {
    "latency_torch": "PyTorch CPU latency (ms, batch 1, median)",
    "latency_onnx": "ONNX Runtime CPU latency (ms, batch 1, median)",
    "gflops": "GFLOPs",
}


def pareto(results: Sequence[VariantResult], axes: Sequence[str] = ("latency_torch", "gflops")):
    """mAP50-95 against each cost in ``axes`` (one panel each); the Pareto front drawn as a step line."""
    fig = _figure((5.2 * len(axes), 4.4))
    for k, axis in enumerate(axes):
        ax = fig.add_subplot(1, len(axes), k + 1)
        pts, idx = [], []
        for i, r in enumerate(results):
            c = _cost(r, axis)
            if c is not None and r.map50_95 is not None and np.isfinite(c):
                pts.append((float(c), float(r.map50_95)))
                idx.append(i)
        front = pareto_front(pts)
        if len(front) > 1:
            fx, fy = zip(*(pts[j] for j in front))
            ax.step(fx, fy, where="post", color="#444", linestyle="--", linewidth=1, label="Pareto front")
        for j, (x, y) in enumerate(pts):
            on_front = j in front
            r = results[idx[j]]
            ax.scatter(
                [x],
                [y],
                s=140 if on_front else 60,
                color=color(idx[j]),
                edgecolors="black" if on_front else "none",
                linewidths=1.5,
                zorder=3,
                label=r.name + (" (Pareto)" if on_front else ""),
            )
            ax.annotate(r.name, (x, y), textcoords="offset points", xytext=(6, 6), fontsize=8)
        ax.set(xlabel=AXIS_LABELS[axis], ylabel="mAP50-95", title=f"mAP50-95 vs {AXIS_LABELS[axis].split(' (')[0]}")
        ax.grid(alpha=0.3)
        if pts:
            ax.margins(0.2)
            ax.legend(loc="best", fontsize=8)
    return fig


def per_class_ap(results: Sequence[VariantResult], key: str = "ap"):
    """Grouped bars: AP50-95 (``key="ap"``) or AP50 (``"ap50"``) per class, one bar per variant."""
    names = class_names(list(results))
    shown = [(i, r) for i, r in enumerate(results) if r.per_class]
    fig = _figure((max(6.4, 1.2 * len(names) + 2), 4.4))
    ax = fig.add_subplot()
    width = 0.8 / max(len(shown), 1)
    x = np.arange(len(names))
    for k, (i, r) in enumerate(shown):
        vals = [r.per_class[n][key] if n in r.per_class else 0.0 for n in names]
        ax.bar(x - 0.4 + width * (k + 0.5), vals, width, color=color(i), label=r.name)
    ax.set_xticks(x, names)
    ax.set(
        ylabel="AP50-95" if key == "ap" else "AP50",
        ylim=(0, 1),
        title="Per-class AP" + ("50-95" if key == "ap" else "50"),
    )
    ax.grid(axis="y", alpha=0.3)
    if shown:
        ax.legend(fontsize=8)
    return fig


TRAIN_PANELS = (
    ("mAP50-95", "val mAP50-95"),
    ("mAP50", "val mAP50"),
    ("train_loss", "train loss (box+obj+cls)"),
    ("val_loss", "val loss (box+obj+cls)"),
)


def _series(history: dict[str, list[float]], key: str) -> list[float] | None:
    if key in ("train_loss", "val_loss"):
        parts = LOSS_PARTS if key == "train_loss" else tuple(f"val_{p}" for p in LOSS_PARTS)
        if not all(p in history for p in parts):
            return None
        return [float(sum(v)) for v in zip(*(history[p] for p in parts))]
    return history.get(key)


def _aligned(histories: Sequence[dict[str, list[float]]], key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(epochs [E], values [S, E]) over the epochs every seed's history has; None without data."""
    series = []
    for h in histories:
        ys = _series(h, key) if h else None
        if ys:
            series.append((np.asarray(h.get("epoch", range(len(ys))), dtype=float) + 1, np.asarray(ys, dtype=float)))
    if not series:
        return None
    n = min(len(ys) for _, ys in series)
    return series[0][0][:n], np.stack([ys[:n] for _, ys in series])


def training_curves(results: Sequence[VariantResult]):
    """2x2 panels from each run's results.csv, every variant overlaid; several seeds: mean line, min-max band."""
    from matplotlib.ticker import MaxNLocator

    fig = _figure((10, 6.4))
    for k, (key, title) in enumerate(TRAIN_PANELS):
        ax = fig.add_subplot(2, 2, k + 1)
        for i, r in enumerate(results):
            got = _aligned(r.histories or ([r.history] if r.history else []), key)
            if got is None:
                continue
            epochs, ys = got
            label = r.name + (f" ({len(ys)} seeds)" if len(ys) > 1 else "")
            ax.plot(
                epochs, ys.mean(0), color=color(i), marker="o" if ys.shape[1] < 30 else None, markersize=3, label=label
            )
            if len(ys) > 1:
                ax.fill_between(epochs, ys.min(0), ys.max(0), color=color(i), alpha=0.2, linewidth=0)
        ax.set(title=title, xlabel="epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if k == 0 and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return fig


__all__ = ["color", "pareto", "pareto_front", "per_class_ap", "png_bytes", "pr_curves", "training_curves"]
