"""The comparison table: one spec of columns, written to the terminal, ``compare.csv`` and ``compare.md``.

All three come from the same :data:`COLUMNS` and the same :class:`VariantResult` rows, so they
cannot disagree: the CSV holds the raw values (params as a count, seconds, fractions), the
Markdown and terminal tables the same values scaled to the unit named in their header and
rounded to the column's digits. A cell that could not be measured holds the reason
(``error: ...``) in the Markdown/terminal table and an empty value plus a ``*_error`` column in
the CSV, never a made-up number.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modyolo.structures import MAP50, MAP50_95, METRICS, PRECISION, RECALL
from modyolo.tools.latency import Latency, LatencyProtocol


@dataclass
class VariantResult:
    """Everything measured for one variant. ``None`` = not measured; the matching ``*_error`` says why.

    per_class: class name -> ``{"ap50": float, "ap": float (AP50-95), "instances": int}`` for the
    classes with labels in the val split. history: results.csv columns -> per-epoch values.
    pr_curve: ``(recall [1000], precision [1000])``, the mean over classes at IoU 0.5.
    samples: per sample image, detections ``float32 [n, 6]`` (x1, y1, x2, y2, conf, cls), original pixels.
    """

    name: str
    source: str  # model YAML, run folder or checkpoint it came from
    status: str = "ok"  # ok | failed
    error: str = ""  # "<stage>: <message>" when failed
    params: int | None = None
    gflops: float | None = None
    gflops_error: str = ""
    latency_torch: Latency | None = None
    latency_torch_error: str = ""
    latency_onnx: Latency | None = None
    latency_onnx_error: str = ""
    # compare --format: the fastest valid format and its latency; per timed format "ok" or why not
    # valid, and its median ms (see modyolo.tools.compare_formats)
    best_format: str = ""
    latency_best: Latency | None = None
    latency_best_error: str = ""
    format_checks: dict[str, str] = field(default_factory=dict)
    format_ms: dict[str, float] = field(default_factory=dict)
    train_seconds: float | None = None
    epochs: int | None = None
    precision: float | None = None
    recall: float | None = None
    map50: float | None = None
    map50_95: float | None = None
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    weights: str = ""
    run_dir: str = ""
    history: dict[str, list[float]] = field(default_factory=dict)
    pr_curve: tuple[list[float], list[float]] | None = None
    samples: list[Any] = field(default_factory=list)
    # Several seeds: the seeds whose jobs finished, why the others failed, one history per seed,
    # the statistics (metric name -> compare_stats.MetricStats), the rank, and protocol flags (a
    # reused run trained with other settings). The metric fields above then hold the seed means.
    seeds: list[int] = field(default_factory=list)
    seed_errors: dict[int, str] = field(default_factory=dict)
    histories: list[dict[str, list[float]]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    rank: int | None = None
    flags: list[str] = field(default_factory=list)

    def fail(self, stage: str, exc: BaseException) -> None:
        self.status = "failed"
        self.error = f"{stage}: {type(exc).__name__}: {' '.join(str(exc).split())}"


@dataclass(frozen=True)
class Column:
    """One table column: CSV key (raw value), display header (value * scale, ``digits`` decimals)."""

    key: str
    header: str
    scale: float = 1.0
    digits: int = 3
    error_key: str = ""  # the VariantResult field explaining a missing value
    spread: str = ""  # "std": "mean ± std" over seeds; "latency": "median (p10-p90)"

    def raw(self, r: VariantResult) -> Any:
        return _RAW[self.key](r)

    def display(self, r: VariantResult) -> str:
        value = self.raw(r)
        if isinstance(value, str):
            return value
        if value is None or (isinstance(value, float) and math.isnan(value)):
            reason = getattr(r, self.error_key, "") if self.error_key else ""
            return f"error: {reason}" if reason else "-"
        text = f"{value * self.scale:.{self.digits}f}"
        if self.spread == "std" and self.key in r.stats and len(r.stats[self.key].per_seed) > 1:
            text += f" ± {r.stats[self.key].std * self.scale:.{self.digits}f}"
        elif self.spread == "latency":
            lat = {"latency_torch_ms": r.latency_torch, "latency_best_ms": r.latency_best}.get(self.key, r.latency_onnx)
            if lat is not None and lat.runs > 1:
                text += f" ({lat.p10_ms:.{self.digits}f}-{lat.p90_ms:.{self.digits}f})"
        return text


_RAW = {
    "variant": lambda r: r.name,
    PRECISION: lambda r: r.precision,
    RECALL: lambda r: r.recall,
    MAP50: lambda r: r.map50,
    MAP50_95: lambda r: r.map50_95,
    "params": lambda r: r.params,
    "gflops": lambda r: r.gflops,
    "latency_torch_ms": lambda r: r.latency_torch.median_ms if r.latency_torch else None,
    "latency_onnx_ms": lambda r: r.latency_onnx.median_ms if r.latency_onnx else None,
    "best_format": lambda r: r.best_format or None,
    "latency_best_ms": lambda r: r.latency_best.median_ms if r.latency_best else None,
    "train_seconds": lambda r: r.train_seconds,
    "epochs": lambda r: r.epochs,
    "error": lambda r: "; ".join(
        x for x in [r.error, *r.flags, *(f"seed {s} failed: {e}" for s, e in r.seed_errors.items())] if x
    ),
    "seeds": lambda r: " ".join(str(s) for s in r.seeds),
    "mAP50-95_ci": lambda r: f"[{r.stats[MAP50_95].lo:.3f}, {r.stats[MAP50_95].hi:.3f}]" if MAP50_95 in r.stats else "",
    "rank": lambda r: r.rank,
}

COLUMNS: tuple[Column, ...] = (
    Column("variant", "Variant"),
    Column("seeds", "Seeds"),
    Column(PRECISION, "P", spread="std"),
    Column(RECALL, "R", spread="std"),
    Column(MAP50, "mAP50", spread="std"),
    Column(MAP50_95, "mAP50-95", spread="std"),
    Column("mAP50-95_ci", "mAP50-95 95% CI"),
    Column("rank", "Rank", digits=0),
    Column("params", "Params (M)", scale=1e-6, digits=2),
    Column("gflops", "GFLOPs", digits=3, error_key="gflops_error"),
    Column("latency_torch_ms", "PyTorch ms", digits=1, error_key="latency_torch_error", spread="latency"),
    Column("latency_onnx_ms", "ONNX RT ms", digits=1, error_key="latency_onnx_error", spread="latency"),
    Column("best_format", "Best format", error_key="latency_best_error"),
    Column("latency_best_ms", "Best ms", digits=1, error_key="latency_best_error", spread="latency"),
    Column("train_seconds", "Train (min)", scale=1 / 60, digits=1),
    Column("epochs", "Epochs", digits=0),
    Column("error", "Notes"),
)
# Raw CSV-only columns after the displayed ones: why a cell is empty, and where things are.
EXTRA_CSV = (
    "status",
    "precision_std",
    "precision_lo",
    "precision_hi",
    "recall_std",
    "recall_lo",
    "recall_hi",
    "mAP50_std",
    "mAP50_lo",
    "mAP50_hi",
    "mAP50-95_std",
    "mAP50-95_lo",
    "mAP50-95_hi",
    "gflops_error",
    "latency_torch_error",
    "latency_onnx_error",
    "latency_best_error",
    "torch_layout",
    "latency_torch_p10_ms",
    "latency_torch_p90_ms",
    "latency_onnx_p10_ms",
    "latency_onnx_p90_ms",
    "latency_best_p10_ms",
    "latency_best_p90_ms",
    "weights",
    "source",
)


def class_names(results: list[VariantResult]) -> list[str]:
    """Classes with labels in any variant's val split, in first-seen order."""
    names: list[str] = []
    for r in results:
        names += [c for c in r.per_class if c not in names]
    return names


_EXTRA = {
    "torch_layout": lambda r: r.latency_torch.layout if r.latency_torch else "",
    "latency_torch_p10_ms": lambda r: r.latency_torch.p10_ms if r.latency_torch else None,
    "latency_torch_p90_ms": lambda r: r.latency_torch.p90_ms if r.latency_torch else None,
    "latency_onnx_p10_ms": lambda r: r.latency_onnx.p10_ms if r.latency_onnx else None,
    "latency_onnx_p90_ms": lambda r: r.latency_onnx.p90_ms if r.latency_onnx else None,
    "latency_best_p10_ms": lambda r: r.latency_best.p10_ms if r.latency_best else None,
    "latency_best_p90_ms": lambda r: r.latency_best.p90_ms if r.latency_best else None,
}


def _extra(r: VariantResult, key: str) -> Any:
    metric, _, part = key.rpartition("_")
    if part in ("std", "lo", "hi") and metric in METRICS:
        st = r.stats.get(metric)
        return None if st is None else getattr(st, part)
    return _EXTRA[key](r) if key in _EXTRA else getattr(r, key)


def csv_rows(results: list[VariantResult]) -> tuple[list[str], list[dict[str, Any]]]:
    """(header, rows) of compare.csv: raw values; per-class ``AP50:<class>`` and ``AP50-95:<class>``."""
    names = class_names(results)
    header = [c.key for c in COLUMNS] + [f"AP50:{n}" for n in names] + [f"AP50-95:{n}" for n in names] + list(EXTRA_CSV)
    rows = []
    for r in results:
        row: dict[str, Any] = {c.key: c.raw(r) for c in COLUMNS}
        for n in names:
            pc = r.per_class.get(n)
            row[f"AP50:{n}"] = pc["ap50"] if pc else None
            row[f"AP50-95:{n}"] = pc["ap"] if pc else None
        row.update({k: _extra(r, k) for k in EXTRA_CSV})
        rows.append(row)
    return header, rows


def _csv_cell(v: Any) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:.6g}" if isinstance(v, float) else v


def write_csv(results: list[VariantResult], path: Path) -> Path:
    header, rows = csv_rows(results)
    with Path(path).open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        for row in rows:
            w.writerow([_csv_cell(row[k]) for k in header])
    return Path(path)


def display_rows(results: list[VariantResult]) -> tuple[list[str], list[list[str]]]:
    """(headers, cells) of the main table as shown in the terminal, Markdown and HTML."""
    return [c.header for c in COLUMNS], [[c.display(r) for c in COLUMNS] for r in results]


def format_rows(results: list[VariantResult]) -> tuple[list[str], list[list[str]]]:
    """(headers, cells) for compare.md: per variant, each timed format's median ms, or why it is not valid."""
    formats: list[str] = []
    for r in results:
        formats += [f for f in r.format_checks if f not in formats]
    cells = []
    for r in results:
        if not r.format_checks:
            continue
        row = [r.name]
        for f in formats:
            check = r.format_checks.get(f)
            if check is None:
                row.append("-")
            elif check != "ok":
                row.append(f"invalid: {check}" if f in r.format_ms else check)
            else:
                row.append(f"{r.format_ms[f]:.1f}" + (" (best)" if f == r.best_format else ""))
        cells.append(row)
    return ["Variant"] + [f"{f} ms" for f in formats], cells


def per_class_rows(results: list[VariantResult], key: str = "ap") -> tuple[list[str], list[list[str]]]:
    """(headers, cells) of the per-class table: one row per variant, AP50-95 (``key="ap"``) per class."""
    names = class_names(results)
    cells = [[r.name] + [f"{r.per_class[n][key]:.3f}" if n in r.per_class else "-" for n in names] for r in results]
    return ["Variant"] + names, cells


def format_terminal(headers: list[str], cells: list[list[str]], max_cell: int = 60) -> str:
    """A plain, right-aligned text table (long error cells are cut to ``max_cell``; the CSV keeps them)."""
    cut = [[c if len(c) <= max_cell else c[: max_cell - 3] + "..." for c in row] for row in cells]
    widths = [max(len(h), *(len(row[i]) for row in cut)) if cut else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths)))]
    lines += [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in cut
    ]
    return "\n".join(lines)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def format_markdown(headers: list[str], cells: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(["---"] + ["---:"] * (len(headers) - 1)) + "|"]
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in cells]
    return "\n".join(lines)


STATS_PROCEDURE = (
    "Intervals: a two-level bootstrap ({n_boot} replicates, numpy seed {rng_seed}) that resamples the "
    "{n_images} val images (paired: the same draw for every variant) and the seeds (paired when variants share "
    "their seeds), recomputing P, R and mAP from the per-image matches each time; the 95% interval is the 2.5-97.5 "
    "percentile range. Pairs: the mAP50-95 difference, its bootstrap interval and a two-sided paired bootstrap test; "
    "significant = Holm-adjusted p < {alpha}. Rank = 1 + the number of variants significantly better, so variants "
    "the data cannot separate share a rank."
)


def stats_tables(stats: Any) -> tuple[tuple[list[str], list[list[str]]], tuple[list[str], list[list[str]]]]:
    """(per-variant intervals, pairwise tests) as (headers, cells) tables."""
    from modyolo.tools.compare_stats import METRICS

    h1 = ["Variant", "Seeds"] + [f"{m} mean ± std [95% CI]" for m in METRICS]
    c1 = []
    for v, per in stats.variants.items():
        row = [v, str(len(stats.seeds[v]))]
        for m in METRICS:
            st = per[m]
            std = f" ± {st.std:.3f}" if len(st.per_seed) > 1 else ""
            row.append(f"{st.mean:.3f}{std} [{st.lo:.3f}, {st.hi:.3f}]")
        c1.append(row)
    h2 = ["A", "B", "mAP50-95 A - B", "95% CI", "p", "Holm p", "Significant", "Paired by seed"]
    c2 = [
        [
            p.a,
            p.b,
            f"{p.diff:+.4f}",
            f"[{p.lo:+.4f}, {p.hi:+.4f}]",
            f"{p.p:.3f}",
            f"{p.p_holm:.3f}",
            "yes" if p.significant else "no",
            "yes" if p.paired_seeds else "no",
        ]
        for p in stats.pairs
    ]
    return (h1, c1), (h2, c2)


def protocol_tables(items: dict[str, dict[str, Any]]) -> tuple[list[list[str]], tuple[list[str], list[list[str]]]]:
    """(identical: [item, value] rows), (differed: headers + one row per item with a cell per variant)."""
    from modyolo.tools.compare_protocol import protocol_rows

    same, differed = protocol_rows(items)
    variants = list(next(iter(items.values()), {}).keys())
    return [[k, v] for k, v in same], (
        ["Setting"] + variants,
        [[k] + [per.get(v, "") for v in variants] for k, per in differed],
    )


def write_markdown(
    results: list[VariantResult],
    protocol: LatencyProtocol,
    path: Path,
    title: str = "",
    stats: Any = None,
    protocol_items: dict | None = None,
) -> Path:
    """compare.md: the main table, intervals and tests (several seeds), per-class AP50-95, the protocol, errors."""
    parts = [f"# {title or 'Backbone comparison'}", "", format_markdown(*display_rows(results)), ""]
    if stats is not None and stats.variants:
        (h1, c1), (h2, c2) = stats_tables(stats)
        parts += ["## Intervals and significance", "", format_markdown(h1, c1), ""]
        if c2:
            parts += [format_markdown(h2, c2), ""]
        parts += [f"- {s}" for s in stats.sentences()] + [""]
        parts += [
            "_"
            + STATS_PROCEDURE.format(
                n_boot=stats.n_boot, rng_seed=stats.rng_seed, n_images=stats.n_images, alpha=stats.alpha
            )
            + "_",
            "",
        ]
        parts += [f"_Note: {n}_" for n in stats.notes]
    if any(r.format_checks for r in results):
        parts += ["## Inference formats (median ms, forward + NMS)", "", format_markdown(*format_rows(results)), ""]
    if class_names(results):
        parts += ["## Per-class AP50-95", "", format_markdown(*per_class_rows(results)), ""]
    if protocol_items:
        same, (h, cells) = protocol_tables(protocol_items)
        parts += ["## Protocol", "", "Identical for every variant:", ""] + [f"- **{k}**: {v}" for k, v in same] + [""]
        if cells:
            parts += ["Differed:", "", format_markdown(h, cells), ""]
    parts += [f"_{protocol.describe()}_", ""]
    failed = [r for r in results if r.status != "ok"]
    if failed:
        parts += ["## Failed variants", ""] + [f"- **{r.name}** ({r.source}): {_md_escape(r.error)}" for r in failed]
        parts.append("")
    Path(path).write_text("\n".join(parts), encoding="utf-8")
    return Path(path)


def parse_markdown_table(text: str) -> tuple[list[str], list[list[str]]]:
    """The first Markdown table in ``text`` as (headers, cells): how tests and tools read compare.md back."""
    rows: list[str] = []
    for line in text.splitlines():
        if line.startswith("|"):
            rows.append(line)
        elif rows:
            break  # the first table ends at its first non-table line
    if len(rows) < 2:
        raise ValueError("no Markdown table found")
    split = [[c.strip().replace("\\|", "|") for c in _split_md(line)] for line in rows]
    return split[0], [r for r in split[2:]]


def _split_md(line: str) -> list[str]:
    cells, cur, i = [], "", 1
    body = line.strip()
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body) and body[i + 1] == "|":
            cur += "\\|"
            i += 2
            continue
        if ch == "|":
            cells.append(cur)
            cur = ""
        else:
            cur += ch
        i += 1
    return cells


__all__ = [
    "COLUMNS",
    "STATS_PROCEDURE",
    "Column",
    "VariantResult",
    "class_names",
    "csv_rows",
    "display_rows",
    "format_markdown",
    "format_rows",
    "format_terminal",
    "parse_markdown_table",
    "per_class_rows",
    "protocol_tables",
    "stats_tables",
    "write_csv",
    "write_markdown",
]
