"""``compare --format``: each variant timed in every inference format it can run, the fastest valid one reported.

A comparison answers "which backbone, at what cost"; the cost that matters for shipping is the
latency of the path the model will be *deployed* on, and that path changes with model and size
(ONNX Runtime wins for small models at 320, bf16 + channels_last for larger ones at 640 on CPUs
with native bf16, ...). ``--format auto`` therefore exports every variant's weights to each
candidate format, checks it, times all (variant, format) pairs in **one** round-robin loop under
compare's :class:`~modyolo.tools.latency.LatencyProtocol`, and reports per variant the fastest
*valid* format and its latency ("Best format", "Best ms") beside the PyTorch fp32 column.

Valid means:

- exact formats (``torch`` NCHW / ``torch_cl`` channels_last, ``onnx``, ``openvino`` fp32): the
  export's own output check against PyTorch passed (boxes to 1e-3 px + 1e-4 relative, scores to
  1e-4, see :mod:`modyolo.deploy.export`); the PyTorch layouts are the reference itself;
- reduced-precision formats (``torch_bf16``, ``openvino_bf16``; only on CPUs that compute bf16
  natively, elsewhere it is emulated and slow): mAP50-95 on the val split within ``max_drop``
  points of the same weights in fp32 (``modyolo benchmark``'s check; costs one val pass each).

INT8 is not a candidate: it needs its own calibration and mAP check (``modyolo export --int8``,
``modyolo benchmark --data``). Every figure is forward + NMS (for heads that need it, at detect's
conf/IoU), so the PyTorch, ONNX and best-format columns measure the same work. ``--format torch``,
``onnx`` or ``openvino`` restricts the choice to that engine (its figure in the best column); the
PyTorch column is always measured, the ONNX one unless ``--no-onnx``.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from modyolo.tools.compare_table import VariantResult
from modyolo.tools.latency import NMS_CONF, NMS_IOU, Latency, LatencyProtocol, measure_runners

LOGGER = logging.getLogger("modyolo.tools.compare")
FORMAT_CHOICES = ("auto", "torch", "onnx", "openvino")
EXACT = ("torch", "torch_cl", "onnx", "openvino")  # equal to fp32 PyTorch within the export's check
REDUCED = ("torch_bf16", "openvino_bf16")  # checked by mAP50-95 on the val split
TORCH_LAYOUTS = {"torch": "nchw", "torch_cl": "channels_last"}
# formats that share one export (and fail together when it fails)
_GROUPS = (("torch", "torch_cl", "torch_bf16"), ("onnx",), ("openvino", "openvino_bf16"))


def timed_formats(choice: str, layout: str, onnx: bool) -> tuple[list[str], list[str]]:
    """(formats to time, formats the best column may pick) for ``--format choice``.

    layout: the protocol's PyTorch layout (``auto`` times both). onnx: time ONNX Runtime for its
    column (``--no-onnx`` turns it off, and takes it out of ``auto``'s choice too).
    """
    if choice not in FORMAT_CHOICES:
        raise ValueError(f"--format {choice!r}: choose one of {', '.join(FORMAT_CHOICES)}")
    torch_fmts = [f for f, lay in TORCH_LAYOUTS.items() if layout in ("auto", lay)]
    if choice == "auto":
        pick = torch_fmts + ["torch_bf16"] + (["onnx"] if onnx else []) + ["openvino", "openvino_bf16"]
    elif choice == "torch":
        pick = list(torch_fmts)
    else:
        pick = [choice]
    timed = list(torch_fmts) + (["onnx"] if onnx or choice == "onnx" else [])
    timed += [f for f in pick if f not in timed]
    return timed, pick


def _with_nms(run: Callable, needs_nms: bool) -> Callable[[torch.Tensor], Any]:
    """``run`` followed by detect's NMS, so every format's figure is the same work as PyTorch's."""
    from modyolo.eval.nms import non_max_suppression

    if not needs_nms or getattr(run, "end2end", False):
        return run

    def call(x: torch.Tensor) -> Any:
        out = run(x)
        pred = out[0] if isinstance(out, (tuple, list)) else out
        return non_max_suppression(pred.float(), NMS_CONF, NMS_IOU)

    return call


def _short(e: BaseException) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"


def build_variant_runners(
    weights: Path, formats: list[str], imgsz: int, out_dir: Path, threads: int
) -> tuple[dict[str, tuple[Callable, Callable]], dict[str, str], list[tuple[str, str]]]:
    """(format -> (forward, forward + NMS) on ``[B, 3, imgsz, imgsz]``, format -> why it cannot run, tracebacks).

    The forward returns ``pred [B, N, 5+nc]`` (what ``validate`` takes); the second is what is timed.

    Exports what the formats need into ``out_dir`` with the export's output check on; a format
    whose export, check or first forward fails is left out with the reason.
    """
    from modyolo.deploy.prepare import load_model
    from modyolo.nn.heads import needs_nms
    from modyolo.tools.formats import available_formats, build_runners

    usable = set(available_formats(formats, int8=False))
    problems = {f: "not available here (see the log)" for f in formats if f not in usable}
    tracebacks: list[tuple[str, str]] = []
    head_nms = needs_nms(load_model(weights).head)
    x = torch.zeros(1, 3, imgsz, imgsz)
    runners: dict[str, tuple[Callable, Callable]] = {}
    for group in _GROUPS:
        wanted = [f for f in group if f in formats and f in usable]
        if not wanted:
            continue
        try:
            built = build_runners(weights, wanted, imgsz, out_dir, threads, None, 1.0, 0)
        except Exception as e:  # the export's message names the layer; the other engines go on
            problems.update({f: f"export failed: {_short(e)}" for f in wanted})
            tracebacks.append((f"export {'/'.join(wanted)}", traceback.format_exc()))
            continue
        for f, (run, _) in built.items():
            call = _with_nms(run, head_nms)
            try:
                call(x)  # a forward that fails at the protocol's size must not stop the round
            except Exception as e:
                problems[f] = f"forward failed: {_short(e)}"
                tracebacks.append((f"forward {f}", traceback.format_exc()))
                continue
            runners[f] = (run, call)
    return runners, problems, tracebacks


def _reduced_precision_checks(
    runners: dict[str, tuple[Callable, Callable]], data: str, imgsz: int, workers: int, max_drop: float
) -> dict[str, str]:
    """format -> why it is not valid, for the bf16 formats whose mAP50-95 drops more than ``max_drop`` points."""
    from modyolo.tools.benchmark import map50_95

    reduced = [f for f in REDUCED if f in runners]
    reference = next((f for f in ("torch", "torch_cl") if f in runners), None)
    if not reduced:
        return {}
    if reference is None:
        return {f: "no fp32 PyTorch reference to check its mAP50-95 against" for f in reduced}
    ref_map = map50_95(runners[reference][0], data, imgsz, workers)
    out = {}
    for f in reduced:
        got = map50_95(runners[f][0], data, imgsz, workers)
        drop = (ref_map - got) * 100
        LOGGER.info("compare: %s mAP50-95 %.4f vs fp32 %.4f (drop %.2f points)", f, got, ref_map, drop)
        if drop > max_drop:
            out[f] = f"mAP50-95 {got:.4f} vs fp32 {ref_map:.4f}: drop {drop:.2f} points > {max_drop:g}"
    return out


def time_formats(
    results: list[VariantResult],
    protocol: LatencyProtocol,
    out_dir: Path,
    *,
    choice: str = "auto",
    onnx: bool = True,
    data: str | None = None,
    workers: int = 0,
    max_drop: float = 1.0,
) -> list[tuple[VariantResult, str, str]]:
    """Fill the PyTorch, ONNX and best-format cells of every ``ok`` row with weights, round-robin.

    out_dir: exports go to ``out_dir/<variant>/``. data: the data YAML whose val split checks the
    bf16 formats (without it they are not candidates). Returns ``(row, stage, traceback)`` for
    ``errors.log``. Never raises for one variant: its cells hold the reason.
    """
    timed, pick = timed_formats(choice, protocol.layout, onnx)
    if data is None:
        timed = [f for f in timed if f not in REDUCED]
    threads = protocol.resolved_threads()
    all_runners: dict[str, Callable[[], Any]] = {}
    per_variant: dict[str, list[str]] = {}
    logs: list[tuple[VariantResult, str, str]] = []
    x = torch.rand(protocol.batch, 3, protocol.imgsz, protocol.imgsz, generator=torch.Generator().manual_seed(0))
    for r in results:
        if r.status != "ok" or not r.weights:
            continue
        try:
            runners, problems, tbs = build_variant_runners(
                Path(r.weights), timed, protocol.imgsz, Path(out_dir) / r.name, threads
            )
        except Exception as e:  # the weights themselves do not load: no format can run
            runners, problems, tbs = {}, {f: _short(e) for f in timed}, [("formats", traceback.format_exc())]
        if data is not None:
            try:
                problems.update(_reduced_precision_checks(runners, data, protocol.imgsz, workers, max_drop))
            except Exception as e:  # unchecked is not valid: the bf16 formats drop out, the exact ones stay
                problems.update({f: f"mAP check failed: {_short(e)}" for f in REDUCED if f in runners})
                tbs.append(("bf16 mAP check", traceback.format_exc()))
        logs += [(r, stage, tb) for stage, tb in tbs]
        r.format_checks = {f: problems.get(f, "ok") for f in timed}
        per_variant[r.name] = [f for f in timed if f in runners]
        for f in per_variant[r.name]:
            all_runners[f"{r.name}\0{f}"] = _bind(runners[f][1], x)
    timing = measure_runners(all_runners, protocol) if all_runners else {}
    for r in results:
        if r.name not in per_variant:
            continue
        lat = {f: timing[f"{r.name}\0{f}"] for f in per_variant[r.name]}
        r.format_ms = {f: t.median_ms for f, t in lat.items()}
        _fill_row(r, lat, pick)
    return logs


def _bind(run: Callable[[torch.Tensor], Any], x: torch.Tensor) -> Callable[[], Any]:
    return lambda: run(x)


def _fill_row(r: VariantResult, lat: dict[str, Latency], pick: list[str]) -> None:
    """The PyTorch cell (faster layout), the ONNX cell and the best valid format of ``pick``."""
    torch_lats = {TORCH_LAYOUTS[f]: lat[f] for f in TORCH_LAYOUTS if f in lat}
    if torch_lats:
        best = min(torch_lats.values(), key=lambda t: t.median_ms)
        best.all_layouts = {layout: t.median_ms for layout, t in torch_lats.items()}
        for layout, t in torch_lats.items():
            t.layout = layout
        r.latency_torch = best
    else:
        r.latency_torch_error = _reason(r, [f for f in TORCH_LAYOUTS if f in r.format_checks])
    if "onnx" in r.format_checks:
        if "onnx" in lat:
            r.latency_onnx = _relabel(lat["onnx"], "onnx", {})
        else:
            r.latency_onnx_error = r.format_checks["onnx"]
    valid = {f: lat[f] for f in pick if f in lat and r.format_checks.get(f) == "ok"}
    if valid:
        fmt = min(valid, key=lambda f: valid[f].median_ms)
        r.best_format = fmt
        r.latency_best = _relabel(valid[fmt], fmt, {f: t.median_ms for f, t in valid.items()})
    else:
        r.latency_best_error = "no valid format: " + _reason(r, pick)


def _relabel(t: Latency, name: str, medians: dict[str, float]) -> Latency:
    return Latency(t.median_ms, t.p10_ms, t.p90_ms, t.runs, name, dict(medians))


def _reason(r: VariantResult, formats: list[str]) -> str:
    return "; ".join(f"{f}: {r.format_checks.get(f, 'not timed')}" for f in formats) or "none was timed"


__all__ = ["EXACT", "FORMAT_CHOICES", "REDUCED", "time_formats", "timed_formats"]
