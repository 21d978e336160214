"""The (variant, seed) jobs of a comparison: one run folder each, resumable, run here, in N processes or on Ray.

A job trains one variant with one seed into ``<compare>/train/<variant>/seed<k>/`` and validates
its best weights on the val split. Its state is on disk, so a comparison that dies can be rerun:

* ``job.json`` with ``"status": "ok"``: finished (metrics, per-image records in
  ``val_records.npz``); skipped on rerun, never retrained.
* ``train_done.json``: training finished, validation did not; only validation runs again.
* ``weights/last.pt``: training was interrupted; the trainer resumes it (``--resume`` semantics:
  model, optimizer, EMA and RNG state, so the result equals an uninterrupted run).
* nothing: the job starts from scratch.

Where jobs run (results always land in the same folders):

* sequentially in this process (``jobs=1``);
* ``jobs=N``: N worker processes at once (``python -m modyolo.tools.compare_jobs <spec.json>``
  started by a thread pool), each with its share of the cores as torch threads; a worker that
  dies takes only its own job down;
* Ray: one Ray task per job with its CPU/GPU request, on a local instance or a cluster. The task
  returns its result files, which are written here when the worker ran on another machine.

A job that fails (an exception, or a process or Ray worker that dies) is run once more; if it
fails again it is recorded as failed with its error and the other jobs go on.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from modyolo.structures import METRICS

LOGGER = logging.getLogger("modyolo.compare")
ATTEMPTS = 2  # a failing job is run once more, then recorded as failed
SHIPPED = ("job.json", "val_records.npz", "results.csv", "args.yaml", "hyp.yaml", "weights/best.pt")


def cpu_cores() -> int:
    """Cores this process may use (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def job_dir(save_dir: Path, variant: str, seed: int) -> Path:
    return Path(save_dir) / "train" / variant / f"seed{seed}"


def read_job(folder: Path) -> dict | None:
    """A job's ``job.json`` (None when there is none or it is unreadable, e.g. cut mid-write)."""
    path = Path(folder) / "job.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_json(path: Path, doc: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str), encoding="utf-8")
    os.replace(tmp, path)  # atomic: a reader sees the old file or the new one, never half


# -- one job ------------------------------------------------------------------------------------


def run_job(spec: dict[str, Any]) -> dict[str, Any]:
    """Train (or resume) and validate one (variant, seed); returns the ``job.json`` document.

    spec: ``variant, seed, cfg`` (model YAML path), ``data`` (data YAML), ``train`` (TrainConfig
    fields shared by all jobs), ``job_dir``, ``threads`` (torch threads for this job), optional
    ``verbose`` and ``ship_files`` (return the result files' bytes under ``"files"``).
    Never raises except on KeyboardInterrupt: a failure is returned (and written) as
    ``{"status": "failed", "error": ...}``.
    """
    import torch

    folder = Path(spec["job_dir"])
    folder.mkdir(parents=True, exist_ok=True)
    old_threads = torch.get_num_threads()
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    t0 = time.time()
    try:
        doc = _train_and_validate(spec, folder)
    except Exception as e:
        (folder / "error.log").write_text(traceback.format_exc(), encoding="utf-8")
        doc = {
            "status": "failed",
            "variant": spec["variant"],
            "seed": spec["seed"],
            "error": f"{type(e).__name__}: {' '.join(str(e).split())[:500]}",
        }
    finally:
        torch.set_num_threads(old_threads)
    doc["wall_seconds"] = time.time() - t0
    _write_json(folder / "job.json", doc)
    if spec.get("ship_files"):
        doc = {**doc, "files": {name: (folder / name).read_bytes() for name in SHIPPED if (folder / name).is_file()}}
    return doc


def _train_and_validate(spec: dict[str, Any], folder: Path) -> dict[str, Any]:
    from modyolo.data.dataset_yaml import load_data_config
    from modyolo.tools.variants import read_history, validate_weights

    resumed = _train(spec, folder)
    weights = next((w for w in (folder / "weights" / "best.pt", folder / "weights" / "last.pt") if w.is_file()), None)
    if weights is None:
        raise RuntimeError(f"training finished without writing weights in {folder / 'weights'}")
    train = spec["train"]
    data_cfg = load_data_config(spec["data"])
    _, res, records = validate_weights(
        weights,
        data_cfg,
        int(train["imgsz"]),
        int(train.get("batch_size", 16)) * 2,
        int(train.get("workers", 0)),
        verbose=bool(spec.get("verbose")),
    )
    records.save(folder / "val_records.npz")
    m = res.metrics
    history = read_history(folder)
    secs = history.get("epoch_seconds") or []
    names = list(data_cfg.names)
    ap = res.tracker.result
    return {
        "status": "ok",
        "variant": spec["variant"],
        "seed": int(spec["seed"]),
        "resumed": resumed,
        "metrics": {k: float(m[k]) for k in METRICS},
        "per_class": {
            names[int(c)]: {"ap50": float(a50), "ap": float(a), "instances": int(m["instances"][int(c)])}
            for c, a50, a in zip(m["classes"], m["ap50"], m["ap"])
        },
        "pr_curve": [ap.px.tolist(), ap.pr_curve.mean(0).tolist()] if len(ap.classes) else None,
        "train_seconds": float(sum(secs)),
        "epochs": len(secs),
        "weights": str(weights.relative_to(folder)),
        "records": "val_records.npz",
        "images": int(m["images"]),
    }


def _train(spec: dict[str, Any], folder: Path) -> bool:
    """Train the job, resuming ``weights/last.pt`` when a previous attempt left one; True if resumed."""
    from modyolo.engine.checkpoint import load_checkpoint
    from modyolo.engine.config import TrainConfig
    from modyolo.engine.trainer import Trainer
    from modyolo.eval.validator import validate

    done = folder / "train_done.json"
    if done.is_file():
        return False
    train = spec["train"]
    last = folder / "weights" / "last.pt"
    settings = {
        **train,
        "seed": int(spec["seed"]),
        "data": str(spec["data"]),
        "cfg": str(spec["cfg"]),
        "project": str(folder.parent),
        "name": folder.name,
        "exist_ok": True,
        "verbose": bool(spec.get("verbose")),
    }
    resumed = False
    if last.is_file():
        try:
            ckpt = load_checkpoint(last)
            finished = int(ckpt.get("epoch", -1)) + 1 >= int(train["epochs"])
        except Exception:  # cut while being written: this attempt starts again
            finished, ckpt = False, None
            last.unlink()
        if ckpt is not None and finished:
            _write_json(done, {"resumed": False})
            return False
        if ckpt is not None:
            settings = {**settings, "resume": str(last)}
            resumed = True
            LOGGER.info("%s seed %s: resuming %s", spec["variant"], spec["seed"], last)
    config = TrainConfig.from_dict(settings, source=f"compare job {spec['variant']} seed {spec['seed']}")
    Trainer(config, evaluator=validate).fit()
    _write_json(done, {"resumed": resumed})
    return resumed


def run_job_remote(spec: dict[str, Any]) -> dict[str, Any]:
    """The Ray task: :func:`run_job` in the worker, returning the result files too."""
    return run_job({**spec, "ship_files": True})


def main(argv: list[str] | None = None) -> int:
    """``python -m modyolo.tools.compare_jobs spec.json``: one job in this process (what ``--jobs N`` starts)."""
    args = list(sys.argv[1:] if argv is None else argv)
    spec = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    doc = run_job(spec)
    return 0 if doc.get("status") == "ok" else 1


# -- many jobs ----------------------------------------------------------------------------------


def _failed(spec: dict, error: str) -> dict:
    return {"status": "failed", "variant": spec["variant"], "seed": spec["seed"], "error": error}


def _done_future(fn: Callable[[], dict]) -> Future:
    f: Future = Future()
    f.set_result(fn())
    return f


def _process_job(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one job in a fresh Python process; its output goes to ``job.log`` in the job folder."""
    folder = Path(spec["job_dir"])
    folder.mkdir(parents=True, exist_ok=True)
    spec_file = folder / "job_spec.json"
    _write_json(spec_file, spec)
    (folder / "job.json").unlink(missing_ok=True)  # a failed attempt's: only this attempt's answer counts
    threads = str(int(spec.get("threads") or 1))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "MODYOLO_THREADS": threads}
    log_path = folder / "job.log"
    with log_path.open("a", encoding="utf-8") as log:
        log.write(f"== attempt at {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        log.flush()
        proc = subprocess.run(
            [sys.executable, "-m", "modyolo.tools.compare_jobs", str(spec_file)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    doc = read_job(folder)
    if doc is not None and doc.get("status") in ("ok", "failed") and proc.returncode in (0, 1):
        return doc
    how = (
        f"killed by signal {signal.Signals(-proc.returncode).name}"
        if proc.returncode < 0
        else f"exit code {proc.returncode}"
    )
    tail = " | ".join(log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:])
    return _failed(spec, f"worker process died ({how}); last output: {tail[-300:]}")


def check_ray_address(address: str) -> None:
    """Fail fast, in one line, when a Ray head at ``host:port`` (or ``ray://host:port``) cannot be reached."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(
            f"--ray {address}: expected HOST:PORT or ray://HOST:PORT (e.g. 10.0.0.5:6379), "
            "or --ray alone for a local instance"
        )
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except OSError as e:
        raise ValueError(
            f"--ray {address}: cannot reach a Ray head at {host}:{port} ({e}); start one there with "
            "`ray start --head`, check the address, or use --ray alone for a local instance"
        ) from e


def check_ray(address: str | None) -> None:
    """Ray is installed and, for a cluster address, its head answers; else a one-line ValueError."""
    try:
        import ray  # noqa: F401
    except ImportError as e:
        raise ValueError("--ray needs Ray, which is not installed: pip install 'modyolo[ray]'") from e
    if address and address not in ("local", "auto"):
        check_ray_address(address)


def start_ray(address: str | None, num_cpus: int) -> bool:
    """Connect to Ray (a cluster at ``address``, or a new local instance); True if this call started it."""
    check_ray(address)
    import ray

    if ray.is_initialized():
        return False
    if address and address != "local":
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING)
    return True


def _ship_back(doc: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """Write a Ray task's result files here when it ran on another machine (its folder is not ours)."""
    files = doc.pop("files", None) or {}
    folder = Path(spec["job_dir"])
    here = read_job(folder)
    if files and (here is None or here.get("wall_seconds") != doc.get("wall_seconds")):
        for name, data in files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
    return doc


def run_jobs(
    specs: list[dict[str, Any]],
    *,
    jobs: int = 1,
    ray_address: str | None = None,
    use_ray: bool = False,
    gpus_per_job: float = 0.0,
    say: Callable[..., None] = print,
) -> dict[tuple[str, int], dict]:
    """Run every spec not finished yet; returns ``(variant, seed) -> job.json document`` for all of them.

    jobs: processes at once on this machine (1 = in this process). use_ray: Ray tasks instead
    (``ray_address`` None or "local" = a local instance with this machine's cores).
    """
    results: dict[tuple[str, int], dict] = {}
    todo = []
    for spec in specs:
        doc = read_job(Path(spec["job_dir"]))
        if doc is not None and doc.get("status") == "ok":
            results[(spec["variant"], spec["seed"])] = doc
            say(f"  {spec['variant']} seed {spec['seed']}: finished earlier, skipped")
        else:
            (Path(spec["job_dir"]) / "job.json").unlink(missing_ok=True)
            todo.append(spec)
    if not todo:
        return results
    started_ray, pool, refs = False, None, []
    if use_ray:
        started_ray = start_ray(ray_address, cpu_cores())
        import ray

        task = ray.remote(run_job_remote).options(
            num_cpus=int(todo[0].get("threads") or 1), num_gpus=gpus_per_job, max_retries=0
        )

        def submit(spec: dict) -> Future:
            ref = task.remote(spec)
            refs.append(ref)
            return ref.future()

        where = (
            f"Ray ({ray_address or 'local instance'}), {todo[0].get('threads')} CPU(s)"
            f"{f' and {gpus_per_job} GPU(s)' if gpus_per_job else ''} per task"
        )
    elif jobs > 1:
        pool = ThreadPoolExecutor(jobs, thread_name_prefix="compare-job")

        def submit(spec: dict) -> Future:
            return pool.submit(_process_job, spec)

        where = f"{jobs} processes, {todo[0].get('threads')} thread(s) each"
    else:

        def submit(spec: dict) -> Future:
            return _done_future(lambda: run_job(spec))

        where = "this process"
    say(f"  {len(todo)} job(s) to run in {where}")
    try:
        pending: dict[Future, tuple[dict, int]] = {}
        for spec in todo:
            pending[submit(spec)] = (spec, 1)
        while pending:
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for fut in done:
                spec, attempt = pending.pop(fut)
                try:
                    doc = fut.result()
                except Exception as e:  # a Ray worker that died, a task that could not run
                    doc = _failed(spec, f"{type(e).__name__}: {' '.join(str(e).split())[:300]}")
                doc = _ship_back(doc, spec) if use_ray else doc
                label = f"{spec['variant']} seed {spec['seed']}"
                if doc.get("status") != "ok" and attempt < ATTEMPTS:
                    say(f"  {label}: failed ({doc.get('error')}); retrying once")
                    pending[submit(spec)] = (spec, attempt + 1)
                    continue
                if doc.get("status") != "ok":
                    doc = {**doc, "attempts": attempt}
                    _write_json(Path(spec["job_dir"]) / "job.json", doc)
                    say(f"  {label}: FAILED after {attempt} attempts: {doc.get('error')}")
                else:
                    m = doc["metrics"]
                    say(
                        f"  {label}: mAP50 {m['mAP50']:.3f}  mAP50-95 {m['mAP50-95']:.3f}"
                        f"{'  (resumed)' if doc.get('resumed') else ''}"
                    )
                results[(spec["variant"], spec["seed"])] = doc
    except BaseException:  # Ctrl-C: queued jobs never start; running ones save last.pt (they got the SIGINT too)
        if refs:
            import ray

            for ref in refs:
                ray.cancel(ref)
        raise
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if started_ray:
            import ray

            ray.shutdown()
    return results


__all__ = [
    "check_ray",
    "check_ray_address",
    "cpu_cores",
    "job_dir",
    "main",
    "read_job",
    "run_job",
    "run_jobs",
    "start_ray",
]

if __name__ == "__main__":
    sys.exit(main())
