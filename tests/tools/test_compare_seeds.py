"""``modyolo compare --seeds``: intervals and paired tests that match an independent computation,
resumable jobs, bad input, and ``--jobs 2`` / Ray giving the same per-job results as one process."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from modyolo.cli import main as cli_main
from modyolo.eval.metrics import DetectionMetrics, ap_per_class
from modyolo.tools.compare_stats import Records, compare_stats, holm

VARIANTS = ("tiny-yolov5n", "tiny-yolov5-mobilenetv2")
SEEDS = (0, 1)


# -- an independent computation of the documented procedure, with numpy only (+ the project's AP) ----------


def _metrics_of(per_image: list[tuple], order: np.ndarray) -> np.ndarray:
    """[P, R, mAP50, mAP50-95] of the images ``order`` (repeats allowed), by plain concatenation."""
    parts = [per_image[i] for i in order]
    tp = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, 10), bool)
    conf, pcls, tcls = (np.concatenate([p[k] for p in parts]) for k in (1, 2, 3))
    res = ap_per_class(tp, conf, pcls, tcls)
    if not len(res.classes):
        return np.zeros(4)
    return np.array([res.p.mean(), res.r.mean(), res.ap[:, 0].mean(), res.ap.mean(1).mean()])


def _per_image(rec: Records) -> list[tuple]:
    out = []
    for i in range(rec.n_images):
        d0, d1, l0, l1 = rec.det_start[i], rec.det_start[i + 1], rec.lab_start[i], rec.lab_start[i + 1]
        out.append((rec.tp[d0:d1], rec.conf[d0:d1], rec.pred_cls[d0:d1], rec.target_cls[l0:l1]))
    return out


def independent_stats(runs: dict[str, dict[int, Records]], n_boot: int, rng_seed: int = 0) -> dict:
    """The README's procedure, written out again: all variants share their seed list here."""
    names = list(runs)
    seeds = list(runs[names[0]])
    per = {v: [_per_image(runs[v][s]) for s in seeds] for v in names}
    n, S = runs[names[0]][seeds[0]].n_images, len(seeds)
    point = {v: np.array([_metrics_of(img, np.arange(n)) for img in per[v]]) for v in names}
    rng = np.random.default_rng(rng_seed)
    reps = {v: [] for v in names}
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        sidx = rng.integers(0, S, S)
        for v in names:
            reps[v].append(np.mean([_metrics_of(per[v][k], idx) for k in sidx], axis=0))
    reps = {v: np.array(r) for v, r in reps.items()}
    out = {"variants": {}, "pairs": []}
    for v in names:
        out["variants"][v] = {
            "mean": point[v].mean(0),
            "std": point[v].std(0, ddof=1) if S > 1 else np.full(4, np.nan),
            "lo": np.percentile(reps[v], 2.5, axis=0),
            "hi": np.percentile(reps[v], 97.5, axis=0),
        }
    ps = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            d = reps[a][:, 3] - reps[b][:, 3]
            p = min(1.0, 2 * min((d <= 0).sum() + 1, (d >= 0).sum() + 1) / (n_boot + 1))
            ps.append(p)
            out["pairs"].append(
                {
                    "a": a,
                    "b": b,
                    "diff": point[a][:, 3].mean() - point[b][:, 3].mean(),
                    "lo": np.percentile(d, 2.5),
                    "hi": np.percentile(d, 97.5),
                    "p": p,
                }
            )
    # Holm by hand: sorted p times (m - rank), running maximum, capped at 1
    m, order, run = len(ps), np.argsort(ps, kind="mergesort"), 0.0
    adj = [0.0] * m
    for k, i in enumerate(order):
        run = max(run, min(1.0, (m - k) * ps[i]))
        adj[i] = run
    for pair, pa in zip(out["pairs"], adj):
        pair["p_holm"] = pa
    return out


def _assert_stats_match(stats, expected: dict, tol: float = 1e-9) -> None:
    keys = ("precision", "recall", "mAP50", "mAP50-95")
    for v, exp in expected["variants"].items():
        for j, k in enumerate(keys):
            got = stats.variants[v][k]
            assert got.mean == pytest.approx(exp["mean"][j], abs=tol), (v, k)
            assert got.lo == pytest.approx(exp["lo"][j], abs=tol) and got.hi == pytest.approx(exp["hi"][j], abs=tol)
            if np.isnan(exp["std"][j]):
                assert np.isnan(got.std)
            else:
                assert got.std == pytest.approx(exp["std"][j], abs=tol)
    assert len(stats.pairs) == len(expected["pairs"])
    for got, exp in zip(stats.pairs, expected["pairs"]):
        assert (got.a, got.b) == (exp["a"], exp["b"])
        for k in ("diff", "lo", "hi", "p", "p_holm"):
            assert getattr(got, k) == pytest.approx(exp[k], abs=tol), k


# -- synthetic records: the statistics on numbers that are not all zero ------------------------------


def _synthetic_tracker(rng: np.random.Generator, n_images: int, skill: float) -> tuple[DetectionMetrics, list]:
    """A DetectionMetrics fed detections near the labels (``skill`` = share that land on them)."""
    tracker = DetectionMetrics(3)
    paths = []
    for i in range(n_images):
        m = int(rng.integers(1, 4))
        xy = rng.uniform(0, 60, (m, 2))
        labels = np.concatenate([rng.integers(0, 3, (m, 1)), xy, xy + rng.uniform(10, 30, (m, 2))], 1)
        dets = []
        for lab in labels:
            if rng.random() < skill:
                box = lab[1:5] + rng.normal(0, 2.5, 4)
                dets.append([*box, rng.uniform(0.3, 1.0), lab[0]])
        for _ in range(int(rng.integers(0, 3))):  # false alarms
            xy0 = rng.uniform(0, 60, 2)
            dets.append([*xy0, *(xy0 + 15), rng.uniform(0.0, 0.6), rng.integers(0, 3)])
        det = torch.tensor(sorted(dets, key=lambda d: -d[4]), dtype=torch.float32).reshape(-1, 6)
        tracker.update([det], [torch.tensor(labels, dtype=torch.float32)])
        paths.append(f"img{i}.jpg")
    return tracker, paths


def test_intervals_and_tests_match_an_independent_computation():
    rng = np.random.default_rng(7)
    runs, trackers = {}, {}
    for v, skill in (("good", 0.9), ("fair", 0.75), ("poor", 0.3)):
        runs[v] = {}
        for s in SEEDS:
            tracker, paths = _synthetic_tracker(rng, 14, skill)
            runs[v][s] = Records.from_tracker(tracker, paths)
            trackers[(v, s)] = tracker
    stats = compare_stats(runs, n_boot=150, rng_seed=0)
    # the point values are the validation's own numbers
    for (v, s), tracker in trackers.items():
        assert stats.variants[v]["mAP50-95"].per_seed[SEEDS.index(s)] == pytest.approx(
            tracker.compute()["mAP50-95"], abs=1e-12
        )
    expected = independent_stats(runs, n_boot=150)
    _assert_stats_match(stats, expected)
    assert 0 < stats.variants["poor"]["mAP50-95"].mean < stats.variants["good"]["mAP50-95"].mean
    good_poor = next(p for p in stats.pairs if {p.a, p.b} == {"good", "poor"})
    assert good_poor.significant and stats.ranks["good"] < stats.ranks["poor"]
    assert any("good is better than poor" in s for s in stats.sentences())
    # saved and loaded records give the same numbers
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


# -- the tiny end-to-end comparison ------------------------------------------------------------------


def _argv(data: str, cfgs: list[str], project: Path, *extra: str) -> list[str]:
    return [
        "compare",
        "--cfg",
        *cfgs,
        "--data",
        data,
        "--epochs",
        "1",
        "--img",
        "64",
        "--batch-size",
        "4",
        "--workers",
        "0",
        "--max-batches",
        "2",
        "--seeds",
        "2",
        "--job-threads",
        "1",
        "--bootstrap",
        "100",
        "--latency-runs",
        "3",
        "--latency-warmup",
        "1",
        "--threads",
        "1",
        "--no-onnx",
        "--samples",
        "1",
        "--project",
        str(project),
        "--name",
        "cmp",
        "--quiet",
        *extra,
    ]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory, tiny_shapes, tiny_cfg_file):
    cfgs = [tiny_cfg_file("yolov5n.yaml"), tiny_cfg_file("yolov5-mobilenetv2.yaml")]
    project = tmp_path_factory.mktemp("compare-seeds")
    argv = _argv(tiny_shapes, cfgs, project)
    assert cli_main(argv) == 0
    return argv, project / "cmp"


def _job_dirs(save_dir: Path) -> dict[tuple[str, int], Path]:
    return {(v, s): save_dir / "train" / v / f"seed{s}" for v in VARIANTS for s in SEEDS}


def test_every_job_and_table_is_written(seeded):
    _, d = seeded
    for (v, s), folder in _job_dirs(d).items():
        doc = json.loads((folder / "job.json").read_text())
        assert doc["status"] == "ok" and doc["seed"] == s and doc["epochs"] == 1
        assert (folder / "val_records.npz").is_file() and (folder / "weights" / "best.pt").is_file()
    md = (d / "compare.md").read_text()
    for part in (
        "| Seeds |",
        "mAP50-95 95% CI",
        "## Intervals and significance",
        "## Protocol",
        "Ranking by mAP50-95",
        "Identical for every variant",
        "sha1",
        "bootstrap",
    ):
        assert part in md, part
    doc = json.loads((d / "compare.json").read_text())
    assert doc["seeds"] == [0, 1] and [v["seeds"] for v in doc["variants"]] == [[0, 1], [0, 1]]
    assert len(doc["statistics"]["pairs"]) == 1 and doc["conclusions"]
    page = (d / "report.html").read_text()
    assert "Intervals and significance" in page and "Protocol" in page


def test_stats_match_an_independent_computation_from_the_jobs(seeded):
    _, d = seeded
    runs = {v: {s: Records.load(_job_dirs(d)[(v, s)] / "val_records.npz") for s in SEEDS} for v in VARIANTS}
    for (v, s), folder in _job_dirs(d).items():  # each job's numbers are the metrics of its records
        job = json.loads((folder / "job.json").read_text())
        got = _metrics_of(_per_image(runs[v][s]), np.arange(runs[v][s].n_images))
        assert got == pytest.approx([job["metrics"][k] for k in ("precision", "recall", "mAP50", "mAP50-95")])
        assert runs[v][s].n_images == 4 and len(runs[v][s].conf) > 0
    expected = independent_stats(runs, n_boot=100)
    doc = json.loads((d / "compare.json").read_text())["statistics"]
    for v in VARIANTS:
        for j, k in enumerate(("precision", "recall", "mAP50", "mAP50-95")):
            got = doc["variants"][v][k]
            for key in ("mean", "lo", "hi"):
                assert got[key] == pytest.approx(expected["variants"][v][key][j], abs=1e-9)
    (pair,) = doc["pairs"]
    for key in ("diff", "lo", "hi", "p"):
        assert pair[key] == pytest.approx(expected["pairs"][0][key], abs=1e-9)


def _mtimes(save_dir: Path) -> dict[str, int]:
    return {
        str(p.relative_to(save_dir)): p.stat().st_mtime_ns
        for p in (save_dir / "train").rglob("*")
        if p.is_file() and p.name in ("job.json", "last.pt", "best.pt", "results.csv")
    }


def test_rerun_skips_finished_jobs_and_redoes_only_what_was_lost(seeded, capsys):
    argv, d = seeded
    before = _mtimes(d)
    assert cli_main(argv) == 0
    assert _mtimes(d) == before  # nothing retrained, nothing revalidated
    # a job killed after training, before its results were written: validated again, not retrained
    lost = _job_dirs(d)[(VARIANTS[1], 1)]
    (lost / "job.json").unlink()
    (lost / "train_done.json").unlink()
    time.sleep(0.01)
    assert cli_main(argv) == 0
    after = _mtimes(d)
    changed = {k for k in before if after[k] != before[k]}
    assert changed == {str((lost / "job.json").relative_to(d))}
    # a changed setting is refused with the difference, in one line, and nothing is touched
    capsys.readouterr()
    assert cli_main(argv[: argv.index("--epochs") + 1] + ["2"] + argv[argv.index("--epochs") + 2 :]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "other settings" in err and "epochs: was 1, now 2" in err and "--fresh" in err
    assert _mtimes(d) == after


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--seeds", "0"], "at least 1"),
        (["--seeds", "1", "2", "1"], "seed 1 given twice"),
        (["--jobs", "999"], "more than the"),
        (["--ray", "127.0.0.1:1"], "cannot reach a Ray head at 127.0.0.1:1"),
    ],
)
def test_bad_input_is_one_clear_line(extra, message, tiny_shapes, tiny_cfg_file, tmp_path, capsys):
    argv = _argv(tiny_shapes, [tiny_cfg_file()], tmp_path) + extra  # the bad flag comes last and wins
    assert cli_main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "cmp" / "train").exists()  # refused before any training


# -- the same jobs elsewhere -------------------------------------------------------------------------


def _same_jobs(a: Path, b: Path) -> None:
    for (v, s), folder in _job_dirs(a).items():
        other = b / folder.relative_to(a)
        ja, jb = (json.loads((f / "job.json").read_text()) for f in (folder, other))
        assert ja["status"] == jb["status"] == "ok"
        assert ja["metrics"] == pytest.approx(jb["metrics"], abs=1e-9)
        ra, rb = Records.load(folder / "val_records.npz"), Records.load(other / "val_records.npz")
        assert len(ra.conf) == len(rb.conf) and np.allclose(ra.conf, rb.conf, atol=1e-6), (v, s)
        wa = torch.load(folder / "weights" / "best.pt", weights_only=True)["model"]
        wb = torch.load(other / "weights" / "best.pt", weights_only=True)["model"]
        assert all(torch.allclose(wa[k].float(), wb[k].float(), atol=1e-6) for k in wa), (v, s)


@pytest.mark.slow
def test_jobs_2_gives_the_same_per_job_results(seeded, tmp_path):
    argv, d = seeded
    i = argv.index("--project")
    assert cli_main(argv[: i + 1] + [str(tmp_path)] + argv[i + 2 :] + ["--jobs", "2"]) == 0
    _same_jobs(d, tmp_path / "cmp")
    assert (tmp_path / "cmp" / "train" / VARIANTS[0] / "seed0" / "job.log").is_file()  # ran in a worker process


@pytest.mark.slow
def test_a_local_ray_instance_gives_the_same_per_job_results(seeded, tmp_path):
    """``modyolo compare --ray`` as a user runs it, in a fresh process (its own session) that starts
    its local Ray instance."""
    pytest.importorskip("ray")
    argv, d = seeded
    i = argv.index("--project")
    cmd = [sys.executable, "-m", "modyolo", *argv[: i + 1], str(tmp_path), *argv[i + 2 :], "--ray"]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, start_new_session=True)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    _same_jobs(d, tmp_path / "cmp")


def test_a_failing_job_is_retried_once_then_recorded_and_the_others_go_on(tiny_shapes, tmp_path):
    from modyolo.tools.compare_jobs import read_job, run_jobs

    train = dict(epochs=1, imgsz=64, batch_size=4, workers=0, max_batches=1, noplots=True)
    specs = [
        {
            "variant": v,
            "seed": 0,
            "cfg": str(tmp_path / f"{v}.yaml"),
            "data": tiny_shapes,
            "train": train,
            "job_dir": str(tmp_path / v / "seed0"),
            "threads": 1,
        }
        for v in ("missing-a", "missing-b")
    ]
    said: list[str] = []
    done = run_jobs(specs, say=said.append)
    assert set(done) == {("missing-a", 0), ("missing-b", 0)}
    for spec in specs:
        doc = read_job(Path(spec["job_dir"]))
        assert doc["status"] == "failed" and doc["attempts"] == 2 and "missing" in doc["error"]
        assert (Path(spec["job_dir"]) / "error.log").is_file()
    assert sum("retrying once" in s for s in said) == 2 and sum("FAILED after 2 attempts" in s for s in said) == 2


def test_a_job_killed_mid_training_resumes_from_last_pt_and_ends_as_an_uninterrupted_one(
    tiny_shapes, tiny_cfg_file, tmp_path
):
    from modyolo.engine.callbacks import Callbacks
    from modyolo.engine.config import TrainConfig
    from modyolo.engine.trainer import Trainer
    from modyolo.eval.validator import validate
    from modyolo.tools.compare_jobs import run_job

    train = dict(epochs=2, imgsz=64, batch_size=4, workers=0, max_batches=1, noplots=True)

    def spec(folder: Path) -> dict:
        return {
            "variant": "tiny",
            "seed": 3,
            "cfg": tiny_cfg_file(),
            "data": tiny_shapes,
            "train": train,
            "job_dir": str(folder),
            "threads": 1,
        }

    killed = tmp_path / "killed" / "seed3"

    def die(*_):
        raise KeyboardInterrupt  # the process is stopped right after epoch 0 was saved and logged

    settings = {
        **train,
        "seed": 3,
        "data": tiny_shapes,
        "cfg": tiny_cfg_file(),
        "project": str(killed.parent),
        "name": killed.name,
        "exist_ok": True,
        "verbose": False,
    }
    trainer = Trainer(TrainConfig.from_dict(settings), Callbacks(), evaluator=validate)
    trainer.callbacks.add("on_fit_epoch_end", die)  # after the default ones (results.csv, last.pt)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert torch.load(killed / "weights" / "last.pt", weights_only=True)["epoch"] == 0
    resumed = run_job(spec(killed))
    straight = run_job(spec(tmp_path / "straight" / "seed3"))
    assert resumed["status"] == straight["status"] == "ok" and resumed["resumed"] and not straight["resumed"]
    assert resumed["epochs"] == straight["epochs"] == 2
    wa = torch.load(killed / "weights" / "last.pt", weights_only=True)["model"]
    wb = torch.load(tmp_path / "straight" / "seed3" / "weights" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)  # the resumed job ends exactly where an uninterrupted one does
    assert resumed["metrics"] == straight["metrics"]


def test_a_reused_run_trained_otherwise_is_flagged_and_the_protocol_splits(tmp_path):
    import yaml

    from modyolo.tools.compare_protocol import protocol_rows, run_flags, run_settings

    (tmp_path / "args.yaml").write_text(yaml.safe_dump({"epochs": 50, "imgsz": 64, "seed": 0, "data": "a/shapes.yaml"}))
    (tmp_path / "hyp.yaml").write_text(yaml.safe_dump({"lr0": 0.02, "mosaic": 1.0}))
    data = {"source": "/d/shapes.yaml"}
    ours = {"epochs": 1, "imgsz": 64, "seed": 0}
    assert run_flags(run_settings(tmp_path), ours, {"lr0": 0.01, "mosaic": 1.0}, data) == [
        "trained with other settings: epochs 50 (here 1), hyp lr0=0.02 (here 0.01)"
    ]
    assert run_flags(run_settings(tmp_path), {**ours, "epochs": 50}, {"lr0": 0.02, "mosaic": 1.0}, data) == []
    assert "unknown" in run_flags(run_settings(tmp_path / "nothing"), ours, {}, data)[0]
    same, differed = protocol_rows({"epochs": {"a": 30, "b": 30}, "head": {"a": "Detect", "b": "IDetect"}})
    assert same == [("epochs", "30")] and differed == [("head", {"a": "Detect", "b": "IDetect"})]


def test_the_winner_sentence_states_the_interval_of_its_own_gain():
    """A pair listed worse-first (diff < 0) is said as "B is better than A" with B - A's interval (positive)."""
    from modyolo.tools.compare_stats import CompareStats, PairStats

    pair = PairStats(
        a="yolov5n",
        b="resnet18",
        diff=-0.0624,
        lo=-0.0924,
        hi=-0.0380,
        p=0.01,
        p_holm=0.03,
        significant=True,
        paired_seeds=True,
    )
    stats = CompareStats(
        variants={}, seeds={}, pairs=[pair, pair], ranks={}, n_images=100, n_boot=200, alpha=0.05, rng_seed=0
    )
    sentence = stats.sentences()[0]
    assert sentence.startswith("resnet18 is better than yolov5n: mAP50-95 0.0624 higher")
    assert "95% CI +0.0380 to +0.0924" in sentence
