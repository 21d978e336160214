"""Intervals, paired tests and ranks for a comparison over several seeds, from per-image validation records.

Two sources of noise decide whether one variant really beats another on a dataset: the training
seed (initialisation, data order, augmentation) and the particular validation images. Both are
resampled here, by a two-level bootstrap over the *records* that validation keeps per image
(:attr:`modyolo.eval.metrics.DetectionMetrics.records`), so that every replicate recomputes the
real metrics (AP is not an average over images, so images cannot be resampled as numbers).

The procedure, exactly (tests re-implement it with numpy):

1. Per variant and seed, P, R, mAP50 and mAP50-95 on all val images: the validation's own numbers.
   Per variant: their mean and sample standard deviation (``ddof=1``; undefined for one seed).
2. ``rng = numpy.random.default_rng(rng_seed)``; replicate ``b = 0 .. B-1`` draws, in this order:
   the images ``idx = rng.integers(0, n, n)`` (shared by every variant: the images are paired),
   then, for each distinct list of seeds (in the order the variants are given),
   ``sidx = rng.integers(0, S, S)``. Variants trained on the same seeds share ``sidx``: they
   are paired by seed as well. The replicate value of a variant is the mean over ``sidx`` of its
   metrics recomputed (``ap_per_class``) on the images ``idx``, records repeated as drawn.
3. A variant's 95% interval: the 2.5th and 97.5th percentiles of its replicate values.
4. A pair ``(a, b)``: the mAP50-95 difference ``mean_a - mean_b``; its interval: percentiles of the
   replicate differences ``d_b``; the two-sided paired bootstrap test
   ``p = min(1, 2 * min(#(d_b <= 0) + 1, #(d_b >= 0) + 1) / (B + 1))`` (the smallest level at which
   the percentile interval excludes 0). With several pairs, Holm's step-down adjustment; a
   difference is *significant* when the adjusted ``p < alpha``.
5. Rank of a variant: 1 + the number of variants significantly better than it, so variants the
   data cannot separate share a rank.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from modyolo.eval.metrics import ap_per_class
from modyolo.structures import MAP50_95, METRICS

PAIR_METRIC = MAP50_95


@dataclass
class Records:
    """One validation run's per-image records, concatenated; image ``i`` owns detections
    ``det_start[i]:det_start[i+1]`` and labels ``lab_start[i]:lab_start[i+1]``.

    tp: ``[N, T]`` bool (true positive per IoU threshold), conf/pred_cls: ``[N]``, target_cls: ``[M]``;
    paths: the val image files, in validation order; method: the AP integration.
    """

    paths: list[str]
    tp: np.ndarray
    conf: np.ndarray
    pred_cls: np.ndarray
    det_start: np.ndarray
    target_cls: np.ndarray
    lab_start: np.ndarray
    method: str = "interp"

    @classmethod
    def from_tracker(cls, tracker, paths: Sequence[str]) -> Records:
        """From a finished :class:`DetectionMetrics` and the image paths in the order it was updated."""
        recs = tracker.records
        if len(recs) != len(paths):
            raise ValueError(f"{len(recs)} per-image records but {len(paths)} image paths")
        niou = int(tracker.iouv.numel())
        tp = [r[0].reshape(-1, niou) for r in recs]
        return cls(
            [str(p) for p in paths],
            _cat(tp, (0, niou), bool),
            _cat([r[1] for r in recs]),
            _cat([r[2] for r in recs]),
            _starts([len(r[1]) for r in recs]),
            _cat([r[3] for r in recs]),
            _starts([len(r[3]) for r in recs]),
            tracker.ap_method,
        )

    def save(self, path: Path) -> Path:
        np.savez_compressed(
            path,
            paths=np.asarray(self.paths, dtype=str),
            tp=self.tp,
            conf=self.conf,
            pred_cls=self.pred_cls,
            det_start=self.det_start,
            target_cls=self.target_cls,
            lab_start=self.lab_start,
            method=np.asarray(self.method),
        )
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> Records:
        with np.load(path, allow_pickle=False) as z:
            return cls(
                [str(p) for p in z["paths"]],
                z["tp"].astype(bool),
                z["conf"],
                z["pred_cls"],
                z["det_start"],
                z["target_cls"],
                z["lab_start"],
                str(z["method"]),
            )

    @property
    def n_images(self) -> int:
        return len(self.paths)

    def subset(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(tp, conf, pred_cls, target_cls) of the images ``idx`` (repeats allowed), in that order."""
        d = _ranges(self.det_start, idx)
        lab = _ranges(self.lab_start, idx)
        return self.tp[d], self.conf[d], self.pred_cls[d], self.target_cls[lab]

    def reorder(self, paths: Sequence[str]) -> Records:
        """The same records with the images in the order of ``paths`` (each must be present)."""
        pos = {p: i for i, p in enumerate(self.paths)}
        idx = np.asarray([pos[p] for p in paths], dtype=np.int64)
        tp, conf, pc, tc = self.subset(idx)
        return Records(
            list(paths),
            tp,
            conf,
            pc,
            _starts(np.diff(self.det_start)[idx]),
            tc,
            _starts(np.diff(self.lab_start)[idx]),
            self.method,
        )


def _cat(arrays: list[np.ndarray], empty_shape: tuple[int, ...] = (0,), dtype=np.float64) -> np.ndarray:
    return np.concatenate(arrays, 0) if arrays else np.zeros(empty_shape, dtype)


def _starts(counts: Sequence[int] | np.ndarray) -> np.ndarray:
    return np.concatenate(([0], np.cumsum(np.asarray(counts, dtype=np.int64)))).astype(np.int64)


def _ranges(start: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(start[i], start[i+1])`` for each ``i`` in ``idx``."""
    lo, counts = start[idx], start[idx + 1] - start[idx]
    total = int(counts.sum())
    offsets = np.repeat(np.cumsum(counts) - counts, counts)
    return np.repeat(lo, counts) + (np.arange(total) - offsets)


def summary(
    tp: np.ndarray, conf: np.ndarray, pred_cls: np.ndarray, target_cls: np.ndarray, method: str = "interp"
) -> np.ndarray:
    """``[P, R, mAP50, mAP50-95]`` as ``DetectionMetrics.compute()`` reports them (0 without labels)."""
    res = ap_per_class(tp, conf, pred_cls, target_cls, method)
    if not len(res.classes):
        return np.zeros(4)
    return np.array([res.p.mean(), res.r.mean(), res.ap[:, 0].mean(), res.ap.mean(1).mean()])


@dataclass
class MetricStats:
    mean: float
    std: float  # NaN with one seed
    lo: float  # 95% interval (bootstrap over seeds and images)
    hi: float
    per_seed: list[float]


@dataclass
class PairStats:
    a: str
    b: str
    diff: float  # mean mAP50-95 of a minus b
    lo: float
    hi: float
    p: float
    p_holm: float
    significant: bool
    paired_seeds: bool  # same seeds: the bootstrap pairs them


@dataclass
class CompareStats:
    variants: dict[str, dict[str, MetricStats]]
    seeds: dict[str, list[int]]
    pairs: list[PairStats]
    ranks: dict[str, int]
    n_images: int
    n_boot: int
    alpha: float
    rng_seed: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return json_safe(asdict(self))

    def sentences(self) -> list[str]:
        """The conclusions in words: one per pair, then the ranking."""
        out = []
        level = f"{100 * (1 - self.alpha):.0f}%"
        holm = len(self.pairs) > 1

        def ci(lo: float, hi: float, p: PairStats) -> str:
            return f"{level} CI {lo:+.4f} to {hi:+.4f}, p={_p(p.p)}" + (
                f", Holm-adjusted p={_p(p.p_holm)}" if holm else ""
            )

        for p in self.pairs:
            if p.significant:
                # Said as "hi - lo", so the interval is stated for that (positive) difference.
                hi, lo, gain = (p.a, p.b, (p.lo, p.hi)) if p.diff > 0 else (p.b, p.a, (-p.hi, -p.lo))
                out.append(
                    f"{hi} is better than {lo}: mAP50-95 {abs(p.diff):.4f} higher ({ci(*gain, p)}); significant."
                )
            else:
                out.append(
                    f"The data cannot separate {p.a} and {p.b}: mAP50-95 difference {p.diff:+.4f} "
                    f"({ci(p.lo, p.hi, p)}); not significant."
                )
        if self.ranks:
            order = sorted(self.ranks, key=lambda v: (self.ranks[v], -self.variants[v][MAP50_95].mean))
            out.append(
                "Ranking by mAP50-95 (1 = best; variants the data cannot separate share a rank): "
                + ", ".join(f"{v} {self.ranks[v]}" for v in order)
                + "."
            )
        return out


def _p(p: float) -> str:
    return f"{p:.3f}" if p >= 0.001 else "<0.001"


def json_safe(obj):
    if isinstance(obj, float):
        return None if math.isnan(obj) else obj
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given)."""
    m = len(pvalues)
    order = np.argsort(pvalues, kind="mergesort")
    adj, running = [0.0] * m, 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * float(pvalues[i])))
        adj[i] = running
    return adj


def bootstrap_p(diffs: np.ndarray) -> float:
    """Two-sided paired bootstrap p-value of ``diffs`` (replicate differences) against 0."""
    b = len(diffs)
    return float(min(1.0, 2 * min(int((diffs <= 0).sum()) + 1, int((diffs >= 0).sum()) + 1) / (b + 1)))


def compare_stats(
    runs: dict[str, dict[int, Records]], n_boot: int = 1000, alpha: float = 0.05, rng_seed: int = 0
) -> CompareStats:
    """Statistics for ``runs``: variant name -> {seed: Records} (variants in display order).

    Images are matched by path; images missing from some run are left out (with a note).
    """
    runs = {v: dict(sorted(s.items())) for v, s in runs.items() if s}
    notes: list[str] = []
    if not runs:
        return CompareStats({}, {}, [], {}, 0, n_boot, alpha, rng_seed, ["no variant has validation records"])
    first = next(iter(next(iter(runs.values())).values()))
    common = set(first.paths)
    for seeds in runs.values():
        for rec in seeds.values():
            common &= set(rec.paths)
    paths = [p for p in first.paths if p in common]
    if len(paths) < len(first.paths):
        notes.append(f"{len(first.paths) - len(paths)} val images were not validated by every run and are left out")
    aligned = {
        v: {s: (r if r.paths == paths else r.reorder(paths)) for s, r in seeds.items()} for v, seeds in runs.items()
    }
    n = len(paths)
    if n == 0:
        return CompareStats(
            {},
            {},
            [],
            {},
            0,
            n_boot,
            alpha,
            rng_seed,
            notes + ["no val image was validated by every run: no intervals or tests"],
        )
    seed_lists = {v: list(s) for v, s in aligned.items()}
    groups: list[tuple[int, ...]] = []
    for seeds in seed_lists.values():
        if tuple(seeds) not in groups:
            groups.append(tuple(seeds))
    all_idx = np.arange(n)
    point = {v: np.stack([summary(*r.subset(all_idx), r.method) for r in s.values()]) for v, s in aligned.items()}
    rng = np.random.default_rng(rng_seed)
    reps = {v: np.zeros((n_boot, 4)) for v in aligned}
    for b in range(n_boot):
        idx = rng.integers(0, n, n)
        draws = {g: rng.integers(0, len(g), len(g)) for g in groups}
        for v, seeds in aligned.items():
            recs = list(seeds.values())
            sidx = draws[tuple(seed_lists[v])]
            per = {}
            for k in set(sidx.tolist()):
                per[k] = summary(*recs[k].subset(idx), recs[k].method)
            reps[v][b] = np.mean([per[k] for k in sidx.tolist()], axis=0)
    q = (100 * alpha / 2, 100 * (1 - alpha / 2))
    variants = {}
    for v, pts in point.items():
        stats = {}
        for j, m in enumerate(METRICS):
            lo, hi = np.percentile(reps[v][:, j], q)
            std = float(pts[:, j].std(ddof=1)) if len(pts) > 1 else float("nan")
            stats[m] = MetricStats(float(pts[:, j].mean()), std, float(lo), float(hi), pts[:, j].tolist())
        variants[v] = stats
    names = list(aligned)
    j = METRICS.index(PAIR_METRIC)
    raw = []
    for i, a in enumerate(names):
        for b_ in names[i + 1 :]:
            d = reps[a][:, j] - reps[b_][:, j]
            lo, hi = np.percentile(d, q)
            raw.append(
                (
                    a,
                    b_,
                    variants[a][PAIR_METRIC].mean - variants[b_][PAIR_METRIC].mean,
                    float(lo),
                    float(hi),
                    bootstrap_p(d),
                    seed_lists[a] == seed_lists[b_],
                )
            )
    adj = holm([r[5] for r in raw])
    pairs = [
        PairStats(a, b_, diff, lo, hi, p, pa, pa < alpha, same) for (a, b_, diff, lo, hi, p, same), pa in zip(raw, adj)
    ]
    better = {v: 0 for v in names}
    for p in pairs:
        if p.significant:
            better[p.b if p.diff > 0 else p.a] += 1
    ranks = {v: 1 + better[v] for v in names}
    return CompareStats(variants, seed_lists, pairs, ranks, n, n_boot, alpha, rng_seed, notes)


__all__ = [
    "METRICS",
    "CompareStats",
    "MetricStats",
    "PairStats",
    "Records",
    "bootstrap_p",
    "compare_stats",
    "holm",
    "summary",
]
