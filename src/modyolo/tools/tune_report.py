"""What a search leaves in its run folder: ``best_hyp.yaml``, ``trials.csv``, the PNG plots and a
printed summary. Written after every trial (CSV, best hyp) and at the end (plots), atomically,
because several processes may share one run folder.

Trial states in the files: ``COMPLETE``, ``PRUNED`` (stopped early by the pruner), ``FAIL``
(NaN loss, invalid parameters, a crash: the reason is in the ``reason`` column) and
``INTERRUPTED`` (its process was stopped or killed; such a trial does not count toward
``--trials`` and a killed one is retried).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from modyolo.engine.hyp import Hyp
from modyolo.structures import MAP50, MAP50_95, PRECISION, RECALL
from modyolo.tools.tune_space import SearchSpace

METRIC_ATTRS = (MAP50, MAP50_95, PRECISION, RECALL)
PLOTS = {
    "history": "tune_history.png",
    "importances": "tune_importances.png",
    "parallel": "tune_parallel_coordinates.png",
}


@dataclass
class TrialRecord:
    """One trial as the reports show it (a FrozenTrial classified by :func:`classify`)."""

    number: int
    state: str  # COMPLETE | PRUNED | FAIL | INTERRUPTED | RUNNING | WAITING
    fitness: float | None
    reason: str
    trial: Any  # the optuna FrozenTrial


def classify(trials: Sequence[Any]) -> list[TrialRecord]:
    """Trials in number order, surplus ones (started after the budget was full) left out."""
    retried = {t.system_attrs.get("failed_trial"): t.number for t in trials if "failed_trial" in t.system_attrs}
    out = []
    for t in sorted(trials, key=lambda t: t.number):
        if t.user_attrs.get("surplus"):
            continue
        state, reason = t.state.name, str(t.user_attrs.get("fail_reason") or t.user_attrs.get("pruned_reason") or "")
        if state == "FAIL" and not t.user_attrs.get("fail_reason"):
            state = "INTERRUPTED"
            how = t.user_attrs.get("interrupted") or "its process stopped without a heartbeat"
            reason = f"{how}" + (f"; retried as trial {retried[t.number]}" if t.number in retried else "")
        out.append(TrialRecord(t.number, state, t.value if state == "COMPLETE" else None, reason, t))
    return out


def best_record(records: Sequence[TrialRecord]) -> TrialRecord | None:
    """The completed trial with the highest fitness (the earliest one on a tie)."""
    done = [r for r in records if r.state == "COMPLETE" and r.fitness is not None]
    return max(done, key=lambda r: (r.fitness, -r.number)) if done else None


def write_trials_csv(records: Sequence[TrialRecord], params: Sequence[str], path: Path) -> Path:
    """``trials.csv``: trial, state, fitness, metrics, epochs, seconds, reason, then one column per
    searched parameter."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["trial", "state", "fitness", *METRIC_ATTRS, "epochs", "seconds", "reason", *params])
    for r in records:
        ua = r.trial.user_attrs
        seconds = (
            (r.trial.datetime_complete - r.trial.datetime_start).total_seconds()
            if r.trial.datetime_complete and r.trial.datetime_start
            else ""
        )
        w.writerow(
            [
                r.number,
                r.state,
                _fmt(r.fitness),
                *(_fmt(ua.get(k)) for k in METRIC_ATTRS),
                ua.get("epochs", ""),
                _fmt(seconds),
                r.reason,
                *(_fmt(r.trial.params.get(p)) for p in params),
            ]
        )
    return atomic_write(path, buf.getvalue())


def write_best_hyp(
    best: TrialRecord, base: Hyp, space: SearchSpace, path: Path, study: str, total: int, flags: str = ""
) -> Path:
    """``best_hyp.yaml``: the complete hyp (base + fixed + the best trial's values), loadable by
    ``load_hyp`` and ``modyolo train --hyp``; a comment header says where it came from and the
    recipe flags (``flags``: optimizer, nbs, close-mosaic) the trials trained with."""
    hyp = space.hyp_from(base, best.trial.params, source=f"best trial {best.number}")
    ua = best.trial.user_attrs
    header = (
        f"# modyolo tune: best of {total} trials in study {study!r}: trial {best.number}, "
        f"fitness {best.fitness:.5f} (mAP50 {ua.get('mAP50', 0):.4f}, mAP50-95 {ua.get('mAP50-95', 0):.4f})\n"
        f"# train with: modyolo train --hyp {path}{' ' + flags if flags else ''}\n"
    )
    return atomic_write(path, header + yaml.safe_dump(hyp.to_dict(), sort_keys=False))


def changed_params(best: TrialRecord, base: Hyp, rel_tol: float = 1e-6) -> list[tuple[str, float, float]]:
    """``[(key, base value, best value)]`` for the keys the best trial moved."""
    out = []
    for k, v in best.trial.params.items():
        b = float(getattr(base, k))
        if abs(v - b) > rel_tol * max(abs(b), 1e-12):
            out.append((k, b, float(v)))
    return out


def summary(
    records: Sequence[TrialRecord],
    base: Hyp,
    run_dir: Path,
    written: Sequence[Path],
    importances: dict[str, float],
    method: str,
) -> str:
    """The text printed at the end of a search."""
    counts: dict[str, int] = {}
    for r in records:
        counts[r.state] = counts.get(r.state, 0) + 1
    lines = ["trials: " + ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))]
    best = best_record(records)
    if best is None:
        lines.append("no trial completed; see the reason column of trials.csv")
    else:
        ua = best.trial.user_attrs
        lines.append(
            f"best: trial {best.number}, fitness {best.fitness:.5f} (P {ua.get('precision', 0):.3f} "
            f"R {ua.get('recall', 0):.3f} mAP50 {ua.get('mAP50', 0):.4f} mAP50-95 {ua.get('mAP50-95', 0):.4f})"
        )
        moved = changed_params(best, base)
        if moved:
            lines.append("changed from the base hyp:")
            lines += [f"  {k:<16} {b:<10.5g} -> {v:.5g}" for k, b, v in moved]
        else:
            lines.append("the best trial is the base hyp itself")
    if importances:
        top = ", ".join(f"{k} {v:.2f}" for k, v in list(importances.items())[:5])
        lines.append(f"most important ({method}): {top}")
    lines.append(f"results in {run_dir}: " + ", ".join(p.name for p in written))
    return "\n".join(lines)


def atomic_write(path: Path, text: str) -> Path:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def _fmt(value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
