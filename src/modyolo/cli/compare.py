"""``modyolo compare``: the flags, then :mod:`modyolo.tools.compare`, which says what it does."""

from __future__ import annotations

import argparse

from modyolo.tools.compare import check_jobs, compare, parse_seeds
from modyolo.tools.compare_formats import FORMAT_CHOICES
from modyolo.tools.latency import LatencyProtocol


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cfg", nargs="*", default=[], help="model YAMLs to train and compare (paths or shipped names)")
    p.add_argument(
        "--runs",
        nargs="*",
        default=[],
        help="finished training runs (folders with weights/best.pt) or checkpoints to reuse instead of training",
    )
    p.add_argument("--data", default="shapes", help="data YAML, or 'shapes' for the embedded demo dataset")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--img", "--imgsz", dest="imgsz", type=int, default=640, help="train, val and latency image size")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--hyp", default="", help="hyp YAML or shipped name (default: as modyolo train)")
    p.add_argument("--seed", type=int, default=0, help="the seed when --seeds is not given")
    p.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=None,
        help="train every variant with several seeds: a count (--seeds 3 = seeds 0 1 2) or a list "
        "of two or more (--seeds 0 5 7); the table shows mean ± std, 95%% intervals and paired tests",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="(variant, seed) jobs at once on this machine, each in its "
        "own process with cores/N threads (1 = one after another in this process)",
    )
    p.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="run the jobs as Ray tasks: --ray alone starts a local instance, --ray HOST:PORT joins a "
        "cluster (`ray start --head` there); needs the 'ray' extra",
    )
    p.add_argument("--job-threads", type=int, default=0, help="torch threads (Ray: CPUs) per job; 0 = cores // --jobs")
    p.add_argument(
        "--gpus-per-job",
        type=float,
        default=None,
        help="GPUs a Ray task asks for (default: 1 when --device is a GPU, else 0)",
    )
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates for intervals and tests")
    p.add_argument(
        "--fresh",
        action="store_true",
        help="start a new folder (exp2, ...) instead of resuming the one named by --project/--name",
    )
    p.add_argument(
        "--optimizer",
        default="auto",
        choices=["auto", "SGD", "Adam", "AdamW"],
        help="as modyolo train: auto fits the recipe to the run length (see README)",
    )
    p.add_argument("--cos-lr", action="store_true")
    p.add_argument("--bf16", action="store_true", help="CPU bf16 autocast while training")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--max-batches", type=int, default=0, help="batches per epoch (0 = all; for smoke runs)")
    p.add_argument("--latency-runs", type=int, default=30, help="timed runs per variant (median reported)")
    p.add_argument("--latency-warmup", type=int, default=10)
    p.add_argument("--latency-settle", type=int, default=1, help="untimed runs of the same path before each timed one")
    p.add_argument("--latency-layout", default="auto", choices=["auto", "nchw", "channels_last"])
    p.add_argument("--threads", type=int, default=0, help="threads for timing (0 = torch's current setting)")
    p.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime export and timing")
    p.add_argument(
        "--format",
        dest="deploy_format",
        default="auto",
        choices=FORMAT_CHOICES,
        help="inference format in the 'Best' columns: auto (default) exports each variant to every format "
        "this machine runs (PyTorch fp32 layouts, bf16 where native, ONNX Runtime, OpenVINO), checks each "
        "and reports the fastest valid one; torch / onnx / openvino: that engine only (cheaper: no "
        "OpenVINO conversion, no bf16 mAP check)",
    )
    p.add_argument(
        "--format-max-drop",
        type=float,
        default=1.0,
        help="mAP50-95 points a bf16 format may lose against fp32 and still be valid (default 1.0)",
    )
    p.add_argument("--samples", type=int, default=4, help="val images shown predicted by every variant")
    p.add_argument("--project", default="runs/compare")
    p.add_argument("--name", default="exp")
    p.add_argument("--exist-ok", action="store_true", help="kept for old scripts: the folder is reused unless --fresh")
    p.add_argument("--no-report", action="store_true", help="skip report.html and the figures")
    p.add_argument("--quiet", action="store_true", help="no training progress bars")


def run(args: argparse.Namespace) -> int:
    if not args.cfg and not args.runs:
        raise ValueError("compare needs variants: --cfg a.yaml b.yaml ... and/or --runs runs/train/exp ...")
    seeds = parse_seeds(args.seeds, args.seed)
    check_jobs(args.jobs, args.ray is not None)
    train = dict(
        epochs=args.epochs,
        imgsz=args.imgsz,
        batch_size=args.batch_size,
        hyp=args.hyp,
        seed=seeds[0],
        optimizer=args.optimizer,
        cos_lr=args.cos_lr,
        bf16=args.bf16,
        workers=args.workers,
        device=args.device,
        max_batches=args.max_batches,
    )
    protocol = LatencyProtocol(
        imgsz=args.imgsz,
        threads=args.threads,
        warmup=args.latency_warmup,
        settle=args.latency_settle,
        runs=args.latency_runs,
        layout=args.latency_layout,
    )
    result = compare(
        args.cfg,
        args.runs,
        data=args.data,
        train=train,
        protocol=protocol,
        project=args.project,
        name=args.name,
        onnx=not args.no_onnx,
        samples=args.samples,
        report=not args.no_report,
        verbose=not args.quiet,
        seeds=seeds,
        jobs=args.jobs,
        ray=args.ray,
        job_threads=args.job_threads,
        gpus_per_job=args.gpus_per_job,
        n_boot=args.bootstrap,
        resume=not args.fresh,
        deploy_format=args.deploy_format,
        format_max_drop=args.format_max_drop,
    )
    return 0 if any(r.status == "ok" for r in result.results) else 1
