"""``modyolo benchmark``: the flags, then :mod:`modyolo.tools.benchmark`, which says what it does."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from modyolo.tools.benchmark import ALL_FORMATS, benchmark, fastest_valid, format_table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", required=True, help="modyolo checkpoint (.pt)")
    parser.add_argument("--data", default=None, help="data YAML: val split for mAP50-95, train split calibrates INT8")
    parser.add_argument("--img", "--imgsz", dest="imgsz", type=int, default=640, help="square input size (default 640)")
    parser.add_argument("--formats", nargs="+", default=None, choices=ALL_FORMATS, help="subset to run (default: all)")
    parser.add_argument("--runs", type=int, default=30, help="timed interleaved rounds (protocol: >= 20)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed forwards per format first")
    parser.add_argument("--settle", type=int, default=1, help="untimed forwards of a format before each timed one")
    parser.add_argument("--threads", type=int, default=0, help="threads for every engine (default: torch's)")
    parser.add_argument("--fraction", type=float, default=1.0, help="share of train images calibrating INT8")
    parser.add_argument("--workers", type=int, default=0, help="data loader workers")
    parser.add_argument("--out-dir", default=None, help="keep the exported files here (default: a temp folder)")
    parser.add_argument(
        "--max-drop",
        type=float,
        default=1.0,
        help="mAP50-95 points a format may lose and still be recommended (default 1.0)",
    )
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")


def run(args: argparse.Namespace) -> int:
    rows, protocol = benchmark(
        args.weights,
        data=args.data,
        imgsz=args.imgsz,
        formats=args.formats,
        runs=args.runs,
        warmup=args.warmup,
        settle=args.settle,
        threads=args.threads,
        fraction=args.fraction,
        workers=args.workers,
        out_dir=args.out_dir,
    )
    print(protocol)
    print(format_table(rows))
    best = fastest_valid(rows, args.max_drop)
    note = f" within {args.max_drop:g} mAP50-95 points of eager fp32" if args.data else " (no --data: mAP not checked)"
    print(f"fastest{note}: {best.format} ({best.median_ms:.2f} ms)")
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return 0
