"""``modyolo compare``: train, validate and time several variants under one protocol; write a report.

Every variant gets the same data, hyp, seed and budget (or a finished run / checkpoint is
reused), is validated on the same val split with the same loader, and is timed under one
:class:`~modyolo.tools.latency.LatencyProtocol`. A variant that fails to build, train, validate
or export keeps its row, with the stage and the error in it, and the others go on; tracebacks
go to ``errors.log`` in the output folder.

Outputs in ``runs/compare/exp*``: the table on the terminal, ``compare.csv``, ``compare.md``,
``compare.json`` (everything, for scripts), ``report.html`` (self-contained) and the figures as
PNG; ``cfgs/`` holds the exact model YAML each variant was built from, ``train/<variant>`` the
training runs and ``onnx/<variant>`` the exports that were timed.
"""

from __future__ import annotations

import argparse
import json
import math
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from modyolo.tools.compare_table import VariantResult, display_rows, format_terminal, per_class_rows, write_csv, \
    write_markdown
from modyolo.tools.latency import LatencyProtocol
from modyolo.tools.variants import Variant, evaluate_variant, prepare_variants, time_variants


@dataclass
class CompareResult:
    save_dir: Path
    results: list[VariantResult]
    protocol: LatencyProtocol
    files: dict[str, Path] = field(default_factory=dict)
    table: str = ""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cfg", nargs="*", default=[], help="model YAMLs to train and compare (paths or shipped names)")
    p.add_argument("--runs", nargs="*", default=[],
                   help="finished training runs (folders with weights/best.pt) or checkpoints to reuse instead of training")
    p.add_argument("--data", default="shapes", help="data YAML, or 'shapes' for the embedded demo dataset")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--img", "--imgsz", dest="imgsz", type=int, default=640, help="train, val and latency image size")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--hyp", default="scratch-low", help="hyp YAML or shipped name")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--optimizer", default="SGD", choices=["SGD", "Adam", "AdamW"])
    p.add_argument("--cos-lr", action="store_true")
    p.add_argument("--bf16", action="store_true", help="CPU bf16 autocast while training")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--max-batches", type=int, default=0, help="batches per epoch (0 = all; for smoke runs)")
    p.add_argument("--latency-runs", type=int, default=30, help="timed runs per variant (median reported)")
    p.add_argument("--latency-warmup", type=int, default=10)
    p.add_argument("--latency-layout", default="auto", choices=["auto", "nchw", "channels_last"])
    p.add_argument("--threads", type=int, default=0, help="threads for timing (0 = torch's current setting)")
    p.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime export and timing")
    p.add_argument("--samples", type=int, default=4, help="val images shown predicted by every variant")
    p.add_argument("--project", default="runs/compare")
    p.add_argument("--name", default="exp")
    p.add_argument("--exist-ok", action="store_true")
    p.add_argument("--no-report", action="store_true", help="skip report.html and the figures")
    p.add_argument("--quiet", action="store_true", help="no training progress bars")


def run(args: argparse.Namespace) -> int:
    if not args.cfg and not args.runs:
        raise ValueError("compare needs variants: --cfg a.yaml b.yaml ... and/or --runs runs/train/exp ...")
    train = dict(epochs=args.epochs, imgsz=args.imgsz, batch_size=args.batch_size, hyp=args.hyp, seed=args.seed,
                 optimizer=args.optimizer, cos_lr=args.cos_lr, bf16=args.bf16, workers=args.workers,
                 device=args.device, max_batches=args.max_batches)
    protocol = LatencyProtocol(imgsz=args.imgsz, threads=args.threads, warmup=args.latency_warmup,
                               runs=args.latency_runs, layout=args.latency_layout)
    result = compare(args.cfg, args.runs, data=args.data, train=train, protocol=protocol, project=args.project,
                     name=args.name, exist_ok=args.exist_ok, onnx=not args.no_onnx, samples=args.samples,
                     report=not args.no_report, verbose=not args.quiet)
    return 0 if any(r.status == "ok" for r in result.results) else 1


def compare(cfgs: Sequence[str | Path | dict] = (), runs: Sequence[str | Path] = (), *, data: str | Path = "shapes",
            train: dict[str, Any] | None = None, protocol: LatencyProtocol | None = None,
            project: str | Path = "runs/compare", name: str = "exp", exist_ok: bool = False, onnx: bool = True,
            samples: int = 4, report: bool = True, verbose: bool = True, names: Sequence[str] | None = None,
            title: str = "") -> CompareResult:
    """Compare ``cfgs`` (model YAMLs, trained here) and ``runs`` (finished runs / checkpoints, reused).

    train: :class:`~modyolo.engine.config.TrainConfig` fields shared by every trained variant
        (``epochs``, ``imgsz``, ``batch_size``, ``hyp``, ``seed``, ``optimizer``, ...); ``imgsz`` is
        also the validation size (default 640). protocol: the latency protocol (default: the
        standard one at ``train['imgsz']``).
    names: display names, one per cfg then per run (default: the YAML / run folder names).
    Returns the rows (failed variants included, with their error) and the written files.
    """
    from modyolo.data.dataset_yaml import load_data_config
    from modyolo.paths import increment_path

    train = dict(train or {})
    imgsz = int(train.setdefault("imgsz", 640))
    train.setdefault("hyp", "scratch-low")
    _check_train_settings(train)  # a typo must fail once, here, not once per variant
    protocol = protocol or LatencyProtocol(imgsz=imgsz)
    save_dir = increment_path(Path(project) / name, exist_ok=exist_ok)
    errors_log = save_dir / "errors.log"
    say = print if verbose else (lambda *a, **k: None)
    data_cfg = load_data_config(data)  # shared by every variant: failing here fails the comparison
    say(f"compare: {len(cfgs) + len(runs)} variants on {data_cfg.source} -> {save_dir}")
    say(f"training: {', '.join(f'{k}={v}' for k, v in train.items() if k != 'hyp')}, hyp={_hyp_label(train)}")
    say(protocol.describe())

    variants = prepare_variants(cfgs, runs, names, save_dir / "cfgs")
    results: list[VariantResult] = []
    models: dict[str, Any] = {}
    onnx_files: dict[str, Path] = {}
    sample_set = None
    loaders: dict = {}  # one val loader per stride, shared by the variants
    for i, variant in enumerate(variants, 1):
        say(f"\n[{i}/{len(variants)}] {variant.name} ({variant.source})")
        outcome = evaluate_variant(variant, data_cfg, train, protocol, save_dir, onnx=onnx, samples=samples,
                                   verbose=verbose, sample_set=sample_set, loaders=loaders)
        sample_set = outcome.sample_set or sample_set
        results.append(outcome.result)
        if outcome.model is not None:
            models[variant.name] = outcome.model
        if outcome.onnx_file is not None:
            onnx_files[variant.name] = outcome.onnx_file
        for stage, tb in outcome.tracebacks:
            with errors_log.open("a", encoding="utf-8") as f:
                f.write(f"== {variant.name} ({variant.source}), {stage}\n{tb}\n")
        r = outcome.result
        say(f"[{i}/{len(variants)}] {variant.name}: " + (f"failed at {r.error}" if r.status != "ok" else
            f"mAP50 {r.map50:.3f}  mAP50-95 {r.map50_95:.3f}"))
    if models:
        say(f"\ntiming {len(models)} variants round-robin ({protocol.runs} runs each, PyTorch"
            f"{' and ONNX Runtime' if onnx_files else ''})...")
        time_variants(results, models, onnx_files, protocol)

    out = CompareResult(save_dir, results, protocol)
    headers, cells = display_rows(results)
    out.table = format_terminal(headers, cells)
    out.files["csv"] = write_csv(results, save_dir / "compare.csv")
    out.files["md"] = write_markdown(results, protocol, save_dir / "compare.md", title)
    out.files["json"] = write_json(out, train, data_cfg.source, save_dir / "compare.json")
    if report:
        from modyolo.tools.report import write_report

        try:
            out.files["html"] = write_report(results, protocol, save_dir, sample_set=sample_set,
                                             names=list(data_cfg.names), title=title, train=train)
        except Exception as e:  # the tables are written already: say what broke, keep them
            with errors_log.open("a", encoding="utf-8") as f:
                f.write(f"== report.html\n{traceback.format_exc()}\n")
            say(f"WARNING: report.html not written: {type(e).__name__}: {e} (traceback in {errors_log})")
    if errors_log.exists():
        out.files["errors"] = errors_log
    say("\n" + out.table)
    if any(r.per_class for r in results):
        say("\nper-class AP50-95\n" + format_terminal(*per_class_rows(results)))
    say(protocol.describe())
    for r in results:
        if r.status != "ok":
            say(f"FAILED {r.name}: {r.error}")
    say("\nresults: " + ", ".join(str(p) for p in out.files.values()))
    return out


def _check_train_settings(train: dict[str, Any]) -> None:
    from modyolo.engine.config import TrainConfig
    from modyolo.engine.hyp import load_hyp

    TrainConfig.from_dict(train, source="compare's training settings")
    load_hyp(train["hyp"])


def _hyp_label(train: dict[str, Any]) -> str:
    hyp = train.get("hyp", "scratch-low")
    return hyp if isinstance(hyp, (str, Path)) else "{" + ", ".join(f"{k}: {v}" for k, v in hyp.items()) + "}"


def _plain(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, Path):
        return str(v)
    return v


def write_json(out: CompareResult, train: dict[str, Any], data_source: Path, path: Path) -> Path:
    """compare.json: settings, protocol and every row's figures (no curves or pixels)."""
    rows = []
    for r in out.results:
        row = {k: _plain(getattr(r, k)) for k in ("name", "source", "status", "error", "params", "gflops",
                                                  "gflops_error", "train_seconds", "epochs", "precision", "recall",
                                                  "map50", "map50_95", "per_class", "weights", "run_dir",
                                                  "latency_torch_error", "latency_onnx_error")}
        for key in ("latency_torch", "latency_onnx"):
            lat = getattr(r, key)
            row[key] = None if lat is None else {"median_ms": lat.median_ms, "p10_ms": lat.p10_ms,
                                                 "p90_ms": lat.p90_ms, "runs": lat.runs, "layout": lat.layout,
                                                 "all_layouts": lat.all_layouts}
        rows.append(row)
    doc = {"data": str(data_source), "train": {k: _plain(v) for k, v in train.items()},
           "protocol": out.protocol.to_dict(), "protocol_text": out.protocol.describe(), "variants": rows}
    path.write_text(json.dumps(doc, indent=2, default=str), encoding="utf-8")
    return path


__all__ = ["compare", "CompareResult", "Variant", "add_arguments", "run"]
