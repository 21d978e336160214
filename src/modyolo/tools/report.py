"""``report.html``: the comparison as one self-contained page, and a headless-browser check of it.

Self-contained means opening the file needs nothing else and reaches nothing: CSS is inline,
every picture is a ``data:`` URI (PNG figures, JPEG predictions), there is no script and no
external URL. The page holds the table (best value per column in bold), the latency protocol,
failed variants with their errors, PR curves overlaid, mAP50-95 against latency and GFLOPs with
the Pareto front, per-class AP bars, training curves overlaid and the same val images predicted
by each variant side by side. The figures are also written as PNG files next to it.

:func:`render_screenshot` renders a page with headless Chromium (network-free flags) so tests
and people can look at what a browser shows.
"""

from __future__ import annotations

import base64
import html
import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modyolo.structures import METRICS
from modyolo.tools import report_plots as plots
from modyolo.tools.compare_table import COLUMNS, VariantResult, class_names, display_rows, per_class_rows
from modyolo.tools.latency import LatencyProtocol

SAMPLE_WIDTH = 300  # px of each predicted image in the side-by-side grid
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
# Which way is better, per column key (the table bolds the best value of each).
HIGHER_BETTER = set(METRICS)
LOWER_BETTER = {"params", "gflops", "latency_torch_ms", "latency_onnx_ms", "latency_best_ms", "train_seconds"}

CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:24px auto;max-width:1320px;color:#222;
     background:#fff;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ddd;
     padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:4px 9px;text-align:right;vertical-align:top}
th{background:#f2f4f7}td:first-child,th:first-child{text-align:left;white-space:nowrap}
td:not(.err){white-space:nowrap}td.best{font-weight:bold;background:#eaf6ea}td.err{color:#b00020;text-align:left;max-width:380px;font-size:.85em}
tr.failed td{background:#fff3f3}
.meta{color:#555;font-size:.9em}.swatch{display:inline-block;width:.9em;height:.9em;border-radius:2px;
     margin-right:.4em;vertical-align:-.1em}
figure{margin:.6em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{color:#555;font-size:.88em}
table.samples td,table.samples th{text-align:center;padding:3px}table.samples img{display:block;width:SAMPLE_Wpx}
code{background:#f4f4f4;padding:0 3px}
""".replace("SAMPLE_W", str(SAMPLE_WIDTH))


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _best_cells(results: Sequence[VariantResult]) -> set[tuple[int, int]]:
    """(row, column) of the best value per column among the variants that have one."""
    best: set[tuple[int, int]] = set()
    for j, col in enumerate(COLUMNS):
        if col.key not in HIGHER_BETTER | LOWER_BETTER:
            continue
        vals = [(i, col.raw(r)) for i, r in enumerate(results)]
        vals = [(i, v) for i, v in vals if isinstance(v, (int, float)) and not math.isnan(float(v))]
        if len(vals) < 2:
            continue
        if len({v for _, v in vals}) == 1:
            continue  # all equal: nothing stands out
        pick = max if col.key in HIGHER_BETTER else min
        target = pick(v for _, v in vals)
        best |= {(i, j) for i, v in vals if v == target}
    return best


def _table_html(
    headers: list[str],
    cells: list[list[str]],
    best: set[tuple[int, int]] | None = None,
    failed: set[int] | None = None,
    swatches: bool = False,
) -> str:
    out = ["<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in headers) + "</tr></thead><tbody>"]
    for i, row in enumerate(cells):
        tds = []
        for j, c in enumerate(row):
            cls = (
                "best"
                if best and (i, j) in best
                else ("err" if c.startswith("error:") or (j == len(row) - 1 and c and headers[j] == "Notes") else "")
            )
            text = html.escape(c if len(c) <= 200 else c[:197] + "...")  # the full text is listed below
            if j == 0 and swatches:
                text = f'<span class="swatch" style="background:{plots.color(i)}"></span>{text}'
            tds.append(f'<td class="{cls}">{text}</td>' if cls else f"<td>{text}</td>")
        tr_cls = ' class="failed"' if failed and i in failed else ""
        out.append(f"<tr{tr_cls}>" + "".join(tds) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _figure_html(title: str, png: bytes, caption: str, alt: str) -> str:
    return (
        f'<figure><img src="{data_uri(png, "image/png")}" alt="{html.escape(alt)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _missing(results: Sequence[VariantResult], has) -> str:
    left = [r.name for r in results if not has(r)]
    return f" Not shown (no data): {', '.join(left)}." if left else ""


def _jpeg(img: np.ndarray) -> bytes:
    import cv2

    h, w = img.shape[:2]
    scale = SAMPLE_WIDTH * 2 / max(w, 1)  # 2x the display width: sharp on high-DPI screens
    if scale < 1:
        img = cv2.resize(img, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise ValueError("could not encode a sample image as JPEG")
    return buf.tobytes()


def _samples_html(results: Sequence[VariantResult], sample_set: Any, names: list[str]) -> str:
    """One row per val image: ground truth, then each variant's detections (conf >= 0.25)."""
    import cv2

    from modyolo.eval.plots import draw_detections

    shown = [r for r in results if len(r.samples) == len(sample_set.paths)]
    head = "<tr><th>ground truth</th>" + "".join(f"<th>{html.escape(r.name)}</th>" for r in shown) + "</tr>"
    rows = [head]
    for k, path in enumerate(sample_set.paths):
        img = cv2.imread(path)
        if img is None:
            continue
        # Draw at (at least) twice the display width, so boxes and tags stay legible on small images.
        f = max(1.0, SAMPLE_WIDTH * 2 / img.shape[1])
        big = cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_LINEAR) if f > 1 else img
        lab = sample_set.labels[k]
        cells = [draw_detections(big, lab[:, 1:5] * f, lab[:, 0].astype(int), None, names)]
        for r in shown:
            det = r.samples[k]
            cells.append(draw_detections(big, det[:, :4] * f, det[:, 5].astype(int), det[:, 4], names))
        rows.append(
            "<tr>"
            + "".join(
                f'<td><img src="{data_uri(_jpeg(c), "image/jpeg")}" alt="{html.escape(Path(path).name)}"></td>'
                for c in cells
            )
            + "</tr>"
        )
    return '<table class="samples">' + "\n".join(rows) + "</table>"


def _stats_html(stats: Any) -> list[str]:
    """Intervals, pairwise tests and the conclusions in words (several seeds or a reused run)."""
    from modyolo.tools.compare_table import STATS_PROCEDURE, stats_tables

    (h1, c1), (h2, c2) = stats_tables(stats)
    parts = ["<h2>Intervals and significance</h2>", _table_html(h1, c1)]
    if c2:
        parts.append(_table_html(h2, c2))
    parts.append("<ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in stats.sentences()) + "</ul>")
    parts.append(
        '<p class="meta">'
        + html.escape(
            STATS_PROCEDURE.format(
                n_boot=stats.n_boot, rng_seed=stats.rng_seed, n_images=stats.n_images, alpha=stats.alpha
            )
        )
        + "</p>"
    )
    parts += [f'<p class="meta">Note: {html.escape(n)}</p>' for n in stats.notes]
    return parts


def _protocol_html(items: dict[str, dict[str, Any]]) -> list[str]:
    from modyolo.tools.compare_table import protocol_tables

    same, (h, cells) = protocol_tables(items)
    parts = [
        "<h2>Protocol</h2>",
        "<p>Identical for every variant:</p><ul>"
        + "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in same)
        + "</ul>",
    ]
    if cells:
        parts += ["<p>Differed:</p>", _table_html(h, cells)]
    return parts


def write_report(
    results: Sequence[VariantResult],
    protocol: LatencyProtocol,
    save_dir: Path,
    *,
    sample_set: Any = None,
    names: list[str] | None = None,
    title: str = "",
    train: dict[str, Any] | None = None,
    stats: Any = None,
    protocol_items: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """Write ``save_dir/report.html`` and the figures (``*.png``); returns the HTML path."""
    save_dir = Path(save_dir)
    results = list(results)
    title = title or "Backbone comparison"
    headers, cells = display_rows(results)
    failed = {i for i, r in enumerate(results) if r.status != "ok"}
    settings = ", ".join(f"{k}={v}" for k, v in (train or {}).items() if k != "hyp")
    hyp = (train or {}).get("hyp") or "default (--optimizer auto fits it; each run's hyp.yaml has the values)"
    hyp_text = hyp if isinstance(hyp, str) else ", ".join(f"{k}={v}" for k, v in (hyp or {}).items())
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="meta">Training: {html.escape(settings)}.<br>'
        f"{html.escape(protocol.describe())}.<br>P, R, mAP on the val split at conf 0.001, IoU 0.6 "
        "(yolov5's protocol); with several seeds: mean ± std over seeds, 95% interval and rank below. "
        "PyTorch/ONNX RT columns are milliseconds per image: median (10th-90th percentile).</p>",
        _table_html(headers, cells, _best_cells(results), failed, swatches=True),
        f'<details class="meta"><summary>hyp</summary>{html.escape(str(hyp_text))}</details>',
    ]
    if stats is not None and stats.variants:
        parts += _stats_html(stats)
    if class_names(results):
        parts += ["<h2>Per-class AP50-95</h2>", _table_html(*per_class_rows(results))]
    if protocol_items:
        parts += _protocol_html(protocol_items)
    if failed:
        parts.append(
            "<h2>Failed variants</h2><ul>"
            + "".join(
                f"<li><b>{html.escape(results[i].name)}</b> ({html.escape(results[i].source)}): "
                f"<code>{html.escape(results[i].error)}</code></li>"
                for i in sorted(failed)
            )
            + "</ul>"
        )
    figures = [
        (
            "pr_curves",
            "Precision-recall curves",
            plots.pr_curves,
            "Mean over classes at IoU 0.5." + _missing(results, lambda r: r.pr_curve is not None),
        ),
        (
            "pareto",
            "Accuracy against cost",
            lambda rs: plots.pareto(rs, ("latency_torch", "gflops")),
            "mAP50-95 against PyTorch CPU latency and against GFLOPs; ringed points and the dashed line are the "
            "Pareto front (no other variant is both cheaper and more accurate)."
            + _missing(results, lambda r: r.map50_95 is not None and r.latency_torch is not None),
        ),
        (
            "per_class_ap",
            "Per-class AP50-95",
            plots.per_class_ap,
            "AP50-95 per class on the val split." + _missing(results, lambda r: bool(r.per_class)),
        ),
        (
            "training_curves",
            "Training curves",
            plots.training_curves,
            "From each run's results.csv; with several seeds the line is the mean over seeds and the band their "
            "min-max range." + _missing(results, lambda r: bool(r.history or r.histories)),
        ),
    ]
    for stem, heading, draw, caption in figures:
        png = plots.png_bytes(draw(results))
        (save_dir / f"{stem}.png").write_bytes(png)
        parts += [f"<h2>{heading}</h2>", _figure_html(heading, png, caption, heading)]
    if sample_set is not None and sample_set.paths:
        parts += [
            "<h2>Predictions on the same val images</h2>",
            '<p class="meta">Left: ground truth. Then each variant\'s detections at conf 0.25, IoU 0.45.</p>',
            _samples_html(results, sample_set, list(names or [])),
        ]
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>\n"
        + "\n".join(parts)
        + "\n</body></html>\n"
    )
    path = save_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def find_browser() -> str | None:
    """A headless-capable Chromium/Chrome on PATH (``$MODYOLO_BROWSER`` first), or None."""
    for name in ([os.environ["MODYOLO_BROWSER"]] if os.environ.get("MODYOLO_BROWSER") else []) + list(BROWSERS):
        found = shutil.which(name)
        if found:
            return found
    return None


def render_screenshot(
    page: str | Path,
    png: str | Path,
    width: int = 1400,
    height: int = 3000,
    timeout_s: float = 120.0,
    browser: str | None = None,
) -> Path:
    """Render ``page`` (an HTML file) with headless Chromium to ``png``; returns the PNG path.

    The browser runs with a fresh profile and background networking, sync and component updates
    off, so rendering reaches nothing. Raises FileNotFoundError when no browser is installed
    (``apt-get install chromium``) and RuntimeError with the browser's output when it fails.
    """
    exe = browser or find_browser()
    if exe is None:
        raise FileNotFoundError(
            "no Chromium found on PATH (tried " + ", ".join(BROWSERS) + "); install it with "
            "`apt-get install chromium` or set MODYOLO_BROWSER"
        )
    png = Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="modyolo-chromium-") as profile:
        cmd = [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--screenshot={png}",
            f"--window-size={width},{height}",
            Path(page).resolve().as_uri(),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0 or not png.is_file():
        raise RuntimeError(
            f"{exe} could not render {page} (exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()[-800:]}"
        )
    return png


__all__ = ["data_uri", "find_browser", "render_screenshot", "write_report"]
