"""``modyolo compare``: train, validate and time several variants under one protocol; write a report.

Every variant gets the same data, hyp, seeds and budget (or a finished run / checkpoint is
reused), is validated on the same val split with the same loader, and is timed under one
:class:`~modyolo.tools.latency.LatencyProtocol`. With several seeds each (variant, seed) is a job
(:mod:`~modyolo.tools.compare_jobs`: resumable, run here, in N processes or on Ray) and the table
shows mean ± std, 95% intervals, paired tests and ranks (:mod:`~modyolo.tools.compare_stats`).
A variant that fails to build, train, validate or export keeps its row, with the stage and the
error in it, and the others go on; tracebacks go to ``errors.log`` in the output folder.

Outputs in ``runs/compare/<name>``: the table on the terminal, ``compare.csv``, ``compare.md``,
``compare.json`` (everything, for scripts), ``report.html`` (self-contained) and the figures as
PNG; ``cfgs/`` holds the exact model YAML each variant was built from, ``train/<variant>/seed<k>``
the training runs, ``onnx/<variant>`` the exports that were timed and ``compare_state.json`` the
settings a rerun must match to resume. ``exports/<variant>`` holds the ONNX / OpenVINO files that
were checked and timed: with ``--format auto`` (the default) every variant is timed in each
inference format and the fastest valid one is reported (:mod:`~modyolo.tools.compare_formats`).
"""

from __future__ import annotations

import json
import math
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modyolo.structures import METRICS
from modyolo.tools.compare_formats import time_formats, timed_formats
from modyolo.tools.compare_jobs import check_ray, cpu_cores, job_dir, run_jobs
from modyolo.tools.compare_protocol import (
    cfg_hash,
    check_state,
    data_fingerprint,
    protocol_items,
    run_flags,
    run_settings,
)
from modyolo.tools.compare_stats import CompareStats, Records, compare_stats
from modyolo.tools.compare_table import (
    VariantResult,
    display_rows,
    format_terminal,
    per_class_rows,
    write_csv,
    write_markdown,
)
from modyolo.tools.latency import LatencyProtocol
from modyolo.tools.variants import (
    Variant,
    build_variant,
    finish_variant,
    prepare_variants,
    read_history,
    validate_weights,
)


@dataclass
class CompareResult:
    save_dir: Path
    results: list[VariantResult]
    protocol: LatencyProtocol
    files: dict[str, Path] = field(default_factory=dict)
    table: str = ""
    stats: CompareStats | None = None
    jobs: dict = field(default_factory=dict)  # (variant, seed) -> job.json document


def parse_seeds(values: Sequence[int] | None, default: int = 0) -> list[int]:
    """``--seeds``: one value is a count (3 -> [0, 1, 2]), several are the seeds; None -> ``[default]``."""
    if values is None:
        return [int(default)]
    values = [int(v) for v in values]
    if len(values) == 1:
        if values[0] < 1:
            raise ValueError(
                f"--seeds {values[0]}: a single value is the number of seeds and must be at least 1 "
                "(--seeds 3 trains seeds 0 1 2; to pick one seed use --seed N)"
            )
        return list(range(values[0]))
    dup = sorted({v for v in values if values.count(v) > 1})
    if dup:
        raise ValueError(
            f"--seeds {' '.join(map(str, values))}: seed {', '.join(map(str, dup))} given twice; "
            "each seed must appear once (a repeated seed repeats the same run and fakes agreement)"
        )
    if any(v < 0 for v in values):
        raise ValueError(f"--seeds {' '.join(map(str, values))}: seeds must be >= 0")
    return values


def check_jobs(jobs: int, use_ray: bool) -> None:
    cores = cpu_cores()
    if jobs < 1:
        raise ValueError(f"--jobs {jobs}: must be at least 1")
    if not use_ray and jobs > cores:
        raise ValueError(
            f"--jobs {jobs} is more than the {cores} CPU cores here; use --jobs {cores} or fewer "
            "(or --ray ADDRESS to spread the jobs over more machines)"
        )


def compare(
    cfgs: Sequence[str | Path | dict] = (),
    runs: Sequence[str | Path] = (),
    *,
    data: str | Path = "shapes",
    train: dict[str, Any] | None = None,
    protocol: LatencyProtocol | None = None,
    project: str | Path = "runs/compare",
    name: str = "exp",
    exist_ok: bool = False,
    onnx: bool = True,
    samples: int = 4,
    report: bool = True,
    verbose: bool = True,
    names: Sequence[str] | None = None,
    title: str = "",
    seeds: Sequence[int] | None = None,
    jobs: int = 1,
    ray: str | None = None,
    job_threads: int = 0,
    gpus_per_job: float | None = None,
    n_boot: int = 1000,
    resume: bool | None = None,
    deploy_format: str = "auto",
    format_max_drop: float = 1.0,
) -> CompareResult:
    """Compare ``cfgs`` (model YAMLs, trained here with every seed) and ``runs`` (finished runs / checkpoints).

    train: :class:`~modyolo.engine.config.TrainConfig` fields shared by every trained variant
        (``epochs``, ``imgsz``, ``batch_size``, ``hyp``, ...); ``imgsz`` is also the validation size
        (default 640). seeds: default ``[train['seed']]``. protocol: the latency protocol
        (default: the standard one at ``train['imgsz']``).
    jobs / ray / job_threads / gpus_per_job: where the (variant, seed) jobs run, see
        :mod:`modyolo.tools.compare_jobs`. resume: reuse ``project/name`` (skip finished jobs, resume
        interrupted ones, refuse changed settings); default ``exist_ok`` (False: a new exp2, ...).
    names: display names, one per cfg then per run (default: the YAML / run folder names).
    deploy_format: ``auto`` times every inference format each variant can run and reports the
        fastest valid one; ``torch`` / ``onnx`` / ``openvino`` that engine only (CLI ``--format``).
        onnx: time ONNX Runtime for its column. format_max_drop: mAP50-95 points a bf16 format may
        lose and stay valid (see :mod:`modyolo.tools.compare_formats`).
    Returns the rows (failed variants included, with their error) and the written files.
    """
    from modyolo.data.dataset_yaml import load_data_config
    from modyolo.engine.hyp import load_hyp
    from modyolo.paths import increment_path

    train = dict(train or {})
    imgsz = int(train.setdefault("imgsz", 640))
    train.setdefault("hyp", "")
    seeds = [int(s) for s in (seeds if seeds is not None else [train.get("seed", 0)])]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds {seeds}: give at least one seed, each once")
    check_jobs(jobs, ray is not None)
    timed_formats(deploy_format, "auto", onnx)  # an unknown --format fails before any training
    if ray is not None:
        check_ray(ray)  # before any work: a wrong address or a missing Ray is a one-line error
    train.pop("seed", None)  # each job gets its own
    _check_train_settings(train)  # a typo must fail once, here, not once per job
    hyp = load_hyp(train["hyp"]).to_dict()
    protocol = protocol or LatencyProtocol(imgsz=imgsz)
    resume = exist_ok if resume is None else resume
    save_dir = Path(project) / name if resume else increment_path(Path(project) / name, exist_ok=False)
    save_dir.mkdir(parents=True, exist_ok=True)
    errors_log = save_dir / "errors.log"
    say = print if verbose else (lambda *a, **k: None)
    data_cfg = load_data_config(data)  # shared by every variant: failing here fails the comparison
    fingerprint = data_fingerprint(data_cfg)
    threads = int(job_threads or max(1, cpu_cores() // max(jobs, 1)))
    executor = f"Ray ({ray})" if ray else (f"{jobs} processes" if jobs > 1 else "one process")
    say(f"compare: {len(cfgs) + len(runs)} variants x {len(seeds)} seed(s) on {data_cfg.source} -> {save_dir}")
    say(
        f"training: {', '.join(f'{k}={v}' for k, v in train.items() if k != 'hyp')}, hyp={_hyp_label(train)}, "
        f"seeds {' '.join(map(str, seeds))}; jobs in {executor}, {threads} thread(s) each"
    )
    say(protocol.describe())

    variants = prepare_variants(cfgs, runs, names, save_dir / "cfgs")
    results = [VariantResult(v.name, v.source) for v in variants]
    buildable = []
    for v, r in zip(variants, results):
        problem = build_variant(r, v, data_cfg.nc, imgsz)
        if problem is None:
            buildable.append((v, r))
        else:
            _log_tracebacks(errors_log, r, [(r.error.split(":", 1)[0] or "build", problem)])
    state = {
        "shared": {
            "data": fingerprint,
            "train": {k: _plain(v) for k, v in train.items() if k not in ("verbose", "workers_note")},
            "hyp": hyp,
        },
        "variants": {v.name: cfg_hash(v.cfg) for v, _ in buildable if v.cfg is not None},
        "seeds": seeds,
    }
    state = json.loads(json.dumps(state, default=str))
    for note in check_state(save_dir, state):
        say(f"resume: {note}")
    specs = [
        {
            "variant": v.name,
            "seed": s,
            "cfg": str(v.cfg_path),
            "data": str(data_cfg.source),
            "train": train,
            "job_dir": str(job_dir(save_dir, v.name, s)),
            "threads": threads,
            "verbose": verbose,
        }
        for v, _ in buildable
        if v.cfg is not None
        for s in seeds
    ]
    gpus = gpus_per_job if gpus_per_job is not None else (0.0 if str(train.get("device", "cpu")) == "cpu" else 1.0)
    done = (
        run_jobs(
            json.loads(json.dumps(specs, default=str)),
            jobs=jobs,
            use_ray=ray is not None,
            ray_address=ray,
            gpus_per_job=gpus,
            say=say,
        )
        if specs
        else {}
    )

    records: dict[str, dict[int, Records]] = {}
    loaders: dict = {}
    for v, r in buildable:
        if v.cfg is not None:
            _collect_jobs(r, v, seeds, save_dir, done, records, errors_log)
        else:
            _validate_reused(r, v, data_cfg, train, records, loaders, verbose, errors_log)
            r.flags = run_flags(run_settings(v.run_dir), {**train, "seed": seeds[0]}, hyp, fingerprint)
    if records:
        say(f"\nstatistics: {n_boot} bootstrap replicates over seeds and val images...")
    stats = compare_stats(records, n_boot=n_boot, rng_seed=0) if records else None
    if stats is not None:
        for r in results:
            if r.name in stats.variants:
                r.stats, r.rank = stats.variants[r.name], stats.ranks.get(r.name)

    models: dict[str, Any] = {}
    sample_set = None
    for v, r in buildable:
        if r.status != "ok" or not r.weights:
            continue
        outcome = finish_variant(
            r,
            r.weights,
            data_cfg,
            imgsz,
            samples=samples,
            sample_set=sample_set,
            describe=v.cfg is None,
        )
        sample_set = outcome.sample_set or sample_set
        if outcome.model is not None:
            models[r.name] = outcome.model
        _log_tracebacks(errors_log, r, outcome.tracebacks)
    if models:
        timed, _ = timed_formats(deploy_format, protocol.layout, onnx)
        say(
            f"\ntiming {len(models)} variants x formats round-robin ({protocol.runs} runs each; "
            f"--format {deploy_format}: {', '.join(timed)})..."
        )
        loaded = [r for r in results if r.name in models]
        for r, stage, tb in time_formats(
            loaded,
            protocol,
            save_dir / "exports",
            choice=deploy_format,
            onnx=onnx,
            data=str(data),
            workers=int(train.get("workers", 0)),
            max_drop=format_max_drop,
        ):
            _log_tracebacks(errors_log, r, [(stage, tb)])

    out = CompareResult(save_dir, results, protocol, stats=stats, jobs=done)
    items = protocol_items(
        variants, results, {**train, "seed": seeds[0]}, hyp, fingerprint, seeds, protocol, threads, executor
    )
    headers, cells = display_rows(results)
    out.table = format_terminal(headers, cells)
    out.files["csv"] = write_csv(results, save_dir / "compare.csv")
    out.files["md"] = write_markdown(
        results, protocol, save_dir / "compare.md", title, stats=stats, protocol_items=items
    )
    out.files["json"] = write_json(out, train, data_cfg.source, save_dir / "compare.json", seeds, items)
    if report:
        from modyolo.tools.report import write_report

        try:
            out.files["html"] = write_report(
                results,
                protocol,
                save_dir,
                sample_set=sample_set,
                names=list(data_cfg.names),
                title=title,
                train=train,
                stats=stats,
                protocol_items=items,
            )
        except Exception as e:  # the tables are written already: say what broke, keep them
            with errors_log.open("a", encoding="utf-8") as f:
                f.write(f"== report.html\n{traceback.format_exc()}\n")
            print(f"WARNING: report.html not written: {type(e).__name__}: {e} (traceback in {errors_log})")
    if errors_log.exists():
        out.files["errors"] = errors_log
    print("\n" + out.table)  # the outcome is printed even with --quiet (verbose=False): table, failures, files
    if stats is not None and len(stats.variants) > 1:
        print("\n" + "\n".join(stats.sentences()))  # the conclusions are part of the outcome
    if any(r.per_class for r in results):
        say("\nper-class AP50-95\n" + format_terminal(*per_class_rows(results)))
    say(protocol.describe())
    for r in results:
        if r.status != "ok":
            print(f"FAILED {r.name}: {r.error}")
    print("\nresults: " + ", ".join(str(p) for p in out.files.values()))
    return out


def _log_tracebacks(errors_log: Path, r: VariantResult, tracebacks: list[tuple[str, str]]) -> None:
    for stage, tb in tracebacks:
        with errors_log.open("a", encoding="utf-8") as f:
            f.write(f"== {r.name} ({r.source}), {stage}\n{tb}\n")


def _collect_jobs(
    r: VariantResult,
    v: Variant,
    seeds: Sequence[int],
    save_dir: Path,
    done: dict,
    records: dict[str, dict[int, Records]],
    errors_log: Path,
) -> None:
    """Fill a trained variant's row from its jobs: seed means, histories, per-class means, records."""
    docs = []
    for s in seeds:
        doc = done.get((v.name, s)) or {"status": "failed", "error": "not run"}
        folder = job_dir(save_dir, v.name, s)
        if doc.get("status") == "ok":
            docs.append((s, doc, folder))
        else:
            r.seed_errors[s] = str(doc.get("error"))
            if (folder / "error.log").is_file():
                _log_tracebacks(errors_log, r, [(f"seed {s}", (folder / "error.log").read_text(encoding="utf-8"))])
    if not docs:
        r.status = "failed"
        r.error = "train: every seed failed: " + "; ".join(f"seed {s}: {e}" for s, e in r.seed_errors.items())
        r.seed_errors = {}
        return
    r.seeds = [s for s, _, _ in docs]
    records[v.name] = {s: Records.load(folder / doc["records"]) for s, doc, folder in docs}
    for attr, key in zip(("precision", "recall", "map50", "map50_95"), METRICS):
        setattr(r, attr, float(np.mean([doc["metrics"][key] for _, doc, _ in docs])))
    r.train_seconds = float(np.mean([doc["train_seconds"] for _, doc, _ in docs]))
    r.epochs = int(max(doc["epochs"] for _, doc, _ in docs))
    _, first, folder = docs[0]
    r.weights, r.run_dir = str(folder / first["weights"]), str(folder)
    r.histories = [read_history(f) for _, _, f in docs]
    r.history = r.histories[0]
    classes = {c for _, doc, _ in docs for c in doc["per_class"]}
    r.per_class = {
        c: {
            k: float(np.mean([doc["per_class"][c][k] for _, doc, _ in docs if c in doc["per_class"]]))
            for k in ("ap50", "ap", "instances")
        }
        for c in sorted(classes)
    }
    curves = [doc["pr_curve"] for _, doc, _ in docs if doc.get("pr_curve")]
    if curves:
        r.pr_curve = (curves[0][0], np.mean([c[1] for c in curves], 0).tolist())


def _validate_reused(
    r: VariantResult,
    v: Variant,
    data_cfg: Any,
    train: dict[str, Any],
    records: dict[str, dict[int, Records]],
    loaders: dict,
    verbose: bool,
    errors_log: Path,
) -> None:
    """Validate a reused run here (one 'seed': the run's own) and fill its row."""
    r.weights, r.run_dir = str(v.weights), str(v.run_dir or "")
    r.history = read_history(v.run_dir)
    r.histories = [r.history] if r.history else []
    secs = r.history.get("epoch_seconds")
    r.train_seconds, r.epochs = (float(sum(secs)), len(secs)) if secs else (None, None)
    try:
        _, res, recs = validate_weights(
            v.weights,
            data_cfg,
            int(train["imgsz"]),
            int(train.get("batch_size", 16)) * 2,
            int(train.get("workers", 0)),
            verbose=verbose,
            loaders=loaders,
        )
    except Exception as e:
        r.fail("val", e)
        _log_tracebacks(errors_log, r, [("val", traceback.format_exc())])
        return
    m = res.metrics
    r.precision, r.recall, r.map50, r.map50_95 = (float(m[k]) for k in METRICS)
    inst = np.asarray(m["instances"])
    r.per_class = {
        str(data_cfg.names[int(c)]): {"ap50": float(a50), "ap": float(a), "instances": int(inst[int(c)])}
        for c, a50, a in zip(m["classes"], m["ap50"], m["ap"])
    }
    ap = res.tracker.result
    if len(ap.classes):
        r.pr_curve = (ap.px.tolist(), ap.pr_curve.mean(0).tolist())
    seed = int(run_settings(v.run_dir).get("seed", 0) or 0)
    r.seeds = [seed]
    records[r.name] = {seed: recs}


def _check_train_settings(train: dict[str, Any]) -> None:
    from modyolo.engine.config import TrainConfig
    from modyolo.engine.hyp import load_hyp

    TrainConfig.from_dict(train, source="compare's training settings")
    load_hyp(train["hyp"])


def _hyp_label(train: dict[str, Any]) -> str:
    hyp = train.get("hyp") or "default"
    return hyp if isinstance(hyp, (str, Path)) else "{" + ", ".join(f"{k}: {v}" for k, v in hyp.items()) + "}"


def _plain(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, Path):
        return str(v)
    return v


def write_json(
    out: CompareResult,
    train: dict[str, Any],
    data_source: Path,
    path: Path,
    seeds: Sequence[int] = (),
    protocol_items: dict | None = None,
) -> Path:
    """compare.json: settings, protocol, every row's figures, the statistics and the jobs (no curves or pixels)."""
    rows = []
    for r in out.results:
        row = {
            k: _plain(getattr(r, k))
            for k in (
                "name",
                "source",
                "status",
                "error",
                "params",
                "gflops",
                "gflops_error",
                "train_seconds",
                "epochs",
                "precision",
                "recall",
                "map50",
                "map50_95",
                "per_class",
                "weights",
                "run_dir",
                "latency_torch_error",
                "latency_onnx_error",
                "best_format",
                "latency_best_error",
                "format_checks",
                "format_ms",
                "seeds",
                "rank",
                "flags",
            )
        }
        row["seed_errors"] = {str(k): e for k, e in r.seed_errors.items()}
        for key in ("latency_torch", "latency_onnx", "latency_best"):
            lat = getattr(r, key)
            row[key] = (
                None
                if lat is None
                else {
                    "median_ms": lat.median_ms,
                    "p10_ms": lat.p10_ms,
                    "p90_ms": lat.p90_ms,
                    "runs": lat.runs,
                    "layout": lat.layout,
                    "all_layouts": lat.all_layouts,
                }
            )
        rows.append(row)
    jobs = [{k: v for k, v in doc.items() if k not in ("pr_curve", "per_class")} for doc in out.jobs.values()]
    doc = {
        "data": str(data_source),
        "train": {k: _plain(v) for k, v in train.items()},
        "seeds": list(seeds),
        "protocol": out.protocol.to_dict(),
        "protocol_text": out.protocol.describe(),
        "variants": rows,
        "statistics": out.stats.to_dict() if out.stats else None,
        "conclusions": out.stats.sentences() if out.stats else [],
        "protocol_items": protocol_items or {},
        "jobs": jobs,
    }
    path.write_text(json.dumps(doc, indent=2, default=str), encoding="utf-8")
    return path


__all__ = ["CompareResult", "Variant", "check_jobs", "compare", "parse_seeds"]
