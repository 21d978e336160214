"""Pictures of a search, drawn with matplotlib (Agg, no browser): history, importances, parallel
coordinates. Optuna's own plots need plotly and a browser; these are plain PNG files.

All functions take finished trials (``optuna.trial.FrozenTrial``); ``value`` is the fitness
(``0.1 * mAP50 + 0.9 * mAP50-95``, higher is better).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

LOGGER = logging.getLogger("modyolo.tune")
PARALLEL_MAX_PARAMS = 10  # more axes than this is unreadable; the most important are shown


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)  # no display needed; a no-op when a backend is already set
    import matplotlib.pyplot as plt

    return plt


def param_importances(study: Any, trials: Sequence[Any]) -> tuple[dict[str, float], str]:
    """``({param: importance}, method)``, importances summing to 1, most important first.

    Optuna's PED-ANOVA evaluator (no scikit-learn needed) when it can run; otherwise the absolute
    Spearman rank correlation of each parameter with the fitness, normalised (a coarser measure:
    it sees only monotonic effects). Empty when fewer than 3 trials completed or the fitness never
    varied (nothing to explain).
    """
    done = [t for t in trials if t.value is not None and t.params]
    values = np.array([t.value for t in done], dtype=float)
    if len(done) < 3 or np.ptp(values) == 0:
        return {}, "none (fewer than 3 completed trials, or every trial had the same fitness)"
    try:
        import optuna

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            imp = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.PedAnovaImportanceEvaluator()
            )
        if imp and sum(imp.values()) > 0:
            return dict(imp), "PED-ANOVA (optuna)"
    except Exception as e:  # too few trials above the quantile, degenerate params, ...
        LOGGER.info("PED-ANOVA importance unavailable (%s); using rank correlation", e)
    return _rank_correlation_importance(done, values), "|Spearman rank correlation| with fitness"


def _rank_correlation_importance(done: Sequence[Any], values: np.ndarray) -> dict[str, float]:
    names = sorted({k for t in done for k in t.params})
    ranks_y = _ranks(values)
    out = {}
    for name in names:
        x = np.array([t.params.get(name, np.nan) for t in done], dtype=float)
        ok = np.isfinite(x)
        if ok.sum() < 3 or np.ptp(x[ok]) == 0:
            out[name] = 0.0
            continue
        rx, ry = _ranks(x[ok]), ranks_y[ok]
        out[name] = float(abs(np.corrcoef(rx, ry)[0, 1])) if np.ptp(ry) > 0 else 0.0
    total = sum(out.values())
    if total > 0:
        out = {k: v / total for k, v in out.items()}
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank), as Spearman's correlation needs."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x), dtype=float)
    for v in np.unique(x):
        tie = x == v
        ranks[tie] = ranks[tie].mean()
    return ranks


def plot_history(trials: Sequence[Any], path: Path) -> Path:
    """Fitness of each trial by trial number, the best-so-far line, pruned/failed trials marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    done = sorted((t for t in trials if t.value is not None), key=lambda t: t.number)
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    failed = [t for t in trials if t.state.name == "FAIL"]
    if done:
        x = [t.number for t in done]
        y = [t.value for t in done]
        ax.scatter(x, y, s=22, color="tab:blue", label="completed", zorder=3)
        ax.step(x, np.maximum.accumulate(y), where="post", color="tab:red", label="best so far")
    if pruned:  # a pruned trial's last reported fitness, so its place is visible
        ax.scatter(
            [t.number for t in pruned],
            [_last_report(t) for t in pruned],
            marker="x",
            color="tab:orange",
            label="pruned",
            zorder=3,
        )
    if failed:
        ax.scatter(
            [t.number for t in failed], [0.0] * len(failed), marker="v", color="tab:gray", label="failed", zorder=3
        )
    ax.set_xlabel("trial")
    ax.set_ylabel("fitness (0.1 mAP50 + 0.9 mAP50-95)")
    ax.set_title("optimisation history")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return _save(fig, path)


def plot_importances(importances: dict[str, float], method: str, path: Path) -> Path:
    """Horizontal bars, most important at the top; the method used is in the title."""
    plt = _pyplot()
    names = list(importances)[::-1]
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.28 * len(names) + 1)), dpi=100)
    if names:
        ax.barh(names, [importances[n] for n in names], color="tab:blue")
        ax.set_xlabel("importance (sums to 1)")
    else:
        ax.text(0.5, 0.5, "not enough varied trials to rank parameters", ha="center", va="center")
        ax.set_axis_off()
    ax.set_title(f"parameter importances: {method}", fontsize=9)
    return _save(fig, path)


def plot_parallel(
    trials: Sequence[Any], params: Sequence[str], path: Path, log_params: frozenset[str] | set[str] = frozenset()
) -> Path:
    """One line per completed trial across the parameter axes (each scaled to its min..max over the
    trials, ``log_params`` on a log scale), coloured by fitness; the last axis is the fitness."""
    plt = _pyplot()
    done = [t for t in trials if t.value is not None and t.params]
    params = [p for p in params if any(p in t.params for t in done)][:PARALLEL_MAX_PARAMS]
    fig, ax = plt.subplots(figsize=(max(6, 1.0 * len(params) + 3), 4.5), dpi=100)
    if not done or not params:
        ax.text(0.5, 0.5, "no completed trials", ha="center", va="center")
        ax.set_axis_off()
        return _save(fig, path)
    columns = params + ["fitness"]
    table = np.array([[t.params.get(p, np.nan) for p in params] + [t.value] for t in done], dtype=float)
    lo, hi = np.nanmin(table, 0), np.nanmax(table, 0)
    axes = table.copy()
    for j, p in enumerate(params):
        if p in log_params and lo[j] > 0:
            axes[:, j] = np.log10(table[:, j])
    a_lo, a_hi = np.nanmin(axes, 0), np.nanmax(axes, 0)
    scaled = (axes - a_lo) / np.where(a_hi > a_lo, a_hi - a_lo, 1.0)
    fit = table[:, -1]
    norm = plt.Normalize(fit.min(), fit.max() if fit.max() > fit.min() else fit.min() + 1e-9)
    cmap = plt.get_cmap("viridis")
    for row, f in sorted(zip(scaled, fit), key=lambda rf: rf[1]):  # best drawn last, on top
        ax.plot(range(len(columns)), row, color=cmap(norm(f)), alpha=0.8, lw=1.2)
    ax.set_xticks(range(len(columns)))
    ax.set_xticklabels([f"{c} (log)" if c in log_params else c for c in columns], rotation=40, ha="right", fontsize=8)
    for i, (a, b) in enumerate(zip(lo, hi)):
        ax.annotate(f"{b:.3g}", (i, 1.0), xytext=(0, 3), textcoords="offset points", ha="center", fontsize=6)
        ax.annotate(f"{a:.3g}", (i, 0.0), xytext=(0, -9), textcoords="offset points", ha="center", fontsize=6)
    ax.set_yticks([])
    ax.set_ylim(-0.08, 1.08)
    for i in range(len(columns)):
        ax.axvline(i, color="0.7", lw=0.6, zorder=0)
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="fitness")
    ax.set_title("parallel coordinates (axes scaled to the range tried)")
    return _save(fig, path)


def _last_report(trial: Any) -> float:
    values = trial.intermediate_values
    return float(values[max(values)]) if values else 0.0


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")  # two workers may write at once
    fig.tight_layout()
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path
