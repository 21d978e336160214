"""``modyolo compare`` end to end on tiny settings: every file written, the same numbers in all of them."""

import csv
import json
import math
import re
import time
from pathlib import Path
from unittest import mock

import pytest
import torch

from modyolo.cli import main as cli_main
from modyolo.tools.compare import compare
from modyolo.tools.compare_table import COLUMNS, parse_markdown_table
from modyolo.tools.latency import LatencyProtocol, measure_torch
from modyolo.tools.report_plots import pareto_front

TINY_TRAIN = dict(epochs=1, imgsz=64, batch_size=4, workers=0, max_batches=2, noplots=True, seed=0)
TINY_PROTOCOL = LatencyProtocol(imgsz=64, warmup=1, runs=3, threads=1)


@pytest.fixture(scope="module")
def compared(tmp_path_factory, tiny_shapes, tiny_cfg_file):
    """Two tiny good variants around a broken one (unknown module 'C3Typo'), compared once."""
    cfgs = [
        tiny_cfg_file("yolov5n.yaml"),
        tiny_cfg_file("yolov5n.yaml", replace=(" C3", " C3Typo"), stem="broken"),
        tiny_cfg_file("yolov5-mobilenetv2.yaml"),
    ]
    project = tmp_path_factory.mktemp("compare")
    return compare(
        cfgs, data=tiny_shapes, train=TINY_TRAIN, protocol=TINY_PROTOCOL, project=project, samples=2, verbose=False
    )


def _close(a: float, b: float, tol: float) -> bool:
    return abs(a - b) <= tol


def test_every_file_is_written(compared):
    d = compared.save_dir
    for name in (
        "compare.csv",
        "compare.md",
        "compare.json",
        "report.html",
        "errors.log",
        "pr_curves.png",
        "pareto.png",
        "per_class_ap.png",
        "training_curves.png",
    ):
        assert (d / name).is_file() and (d / name).stat().st_size > 0, name
    for variant in ("tiny-yolov5n", "tiny-yolov5-mobilenetv2"):
        assert (d / "cfgs" / f"{variant}.yaml").is_file()
        assert (d / "train" / variant / "seed0" / "results.csv").is_file()
        assert (d / "exports" / variant).is_dir()


def test_failing_variant_is_a_row_and_the_others_go_on(compared):
    by_name = {r.name: r for r in compared.results}
    assert list(by_name) == ["tiny-yolov5n", "broken", "tiny-yolov5-mobilenetv2"]  # order kept
    broken = by_name["broken"]
    assert broken.status == "failed" and broken.error.startswith("build:") and "C3Typo" in broken.error
    assert broken.params is None and broken.map50 is None
    for name in ("tiny-yolov5n", "tiny-yolov5-mobilenetv2"):
        r = by_name[name]
        assert r.status == "ok", r.error
        assert r.params > 0 and r.gflops > 0 and r.epochs == 1 and r.train_seconds > 0
        assert r.latency_torch.median_ms > 0 and r.latency_torch.runs == 3
        assert r.latency_torch.layout in ("nchw", "channels_last") and len(r.latency_torch.all_layouts) == 2
        assert r.latency_onnx is not None, r.latency_onnx_error
        assert 0 <= r.map50_95 <= r.map50 <= 1
        assert set(r.per_class) <= {"circle", "square", "triangle", "star", "cross"}
        assert r.history["epoch"] == [0.0] and len(r.samples) == 2
    assert "C3Typo" in (compared.save_dir / "errors.log").read_text()


def test_params_and_gflops_match_the_model(compared, tiny_cfg_file):
    from modyolo.nn.inspect import count_flops
    from modyolo.nn.model import DetectionModel

    r = compared.results[0]
    model = DetectionModel(tiny_cfg_file("yolov5n.yaml"), nc=5)
    assert r.params == sum(p.numel() for p in model.parameters())
    assert math.isclose(r.gflops, count_flops(model, 64) / 1e9, rel_tol=1e-9)


def test_metrics_match_an_independent_validation(compared, tiny_shapes):
    from modyolo.data.dataset_yaml import load_data_config
    from modyolo.data.loader import create_dataloader
    from modyolo.eval.validator import validate
    from modyolo.inference.predictor import load_model

    r = compared.results[0]
    model, _, _ = load_model(r.weights, fuse=True)
    data = load_data_config(tiny_shapes)
    loader, _ = create_dataloader(
        data.val, 64, 8, 32, rect=True, pad=0.5, workers=0, names=data.names, nc=data.nc, progress=False
    )
    m = validate(model, loader, names=data.names, progress=False).metrics
    for key, attr in (("precision", "precision"), ("recall", "recall"), ("mAP50", "map50"), ("mAP50-95", "map50_95")):
        assert _close(m[key], getattr(r, attr), 1e-9), key


def test_csv_markdown_and_results_agree(compared):
    d = compared.save_dir
    with (d / "compare.csv").open() as f:
        rows = list(csv.DictReader(f))
    headers, cells = parse_markdown_table((d / "compare.md").read_text())
    assert headers == [c.header for c in COLUMNS]
    assert [row["variant"] for row in rows] == [c[0] for c in cells] == [r.name for r in compared.results]
    for r, row, md in zip(compared.results, rows, cells):
        for j, col in enumerate(COLUMNS):
            raw, shown = col.raw(r), md[j]
            assert shown == col.display(r)
            if isinstance(raw, str):
                assert row[col.key] == raw
            elif raw is None:
                assert row[col.key] == "" and (shown == "-" or shown.startswith("error:"))
            else:
                assert _close(float(row[col.key]), raw, 1e-5 * max(1.0, abs(raw)))  # CSV: 6 significant digits
                assert _close(float(shown.split()[0]), raw * col.scale, 0.51 * 10**-col.digits)  # MD: rounded
                if col.spread == "latency":  # median (p10-p90)
                    assert re.fullmatch(r"[\d.]+ \([\d.]+-[\d.]+\)", shown), shown
        for name, pc in r.per_class.items():
            assert _close(float(row[f"AP50-95:{name}"]), pc["ap"], 1e-6)
            assert _close(float(row[f"AP50:{name}"]), pc["ap50"], 1e-6)
    doc = json.loads((d / "compare.json").read_text())
    assert [v["name"] for v in doc["variants"]] == [r.name for r in compared.results]
    assert doc["variants"][0]["map50_95"] == compared.results[0].map50_95
    assert doc["protocol"]["runs"] == 3 and "median of 3 runs" in doc["protocol_text"]


def test_report_is_self_contained(compared):
    page = (compared.save_dir / "report.html").read_text()
    assert "<script" not in page.lower()
    assert not re.search(r"https?://", page)
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) >= 4 + 2 * 3  # 4 figures + 2 sample rows x (ground truth + 2 variants)
    assert all(s.startswith(("data:image/png;base64,", "data:image/jpeg;base64,")) for s in sources)
    assert "C3Typo" in page and "tiny-yolov5-mobilenetv2" in page


def test_reusing_runs_gives_the_same_numbers_without_training(compared, tiny_shapes, tmp_path):
    first = compared.results[0]
    code = cli_main(
        [
            "compare",
            "--runs",
            first.run_dir,
            str(tmp_path / "missing-run"),
            "--data",
            tiny_shapes,
            "--img",
            "64",
            "--batch-size",
            "4",
            "--workers",
            "0",
            "--latency-runs",
            "3",
            "--latency-warmup",
            "1",
            "--threads",
            "1",
            "--no-onnx",
            "--no-report",
            "--samples",
            "0",
            "--project",
            str(tmp_path),
            "--quiet",
        ]
    )
    assert code == 0
    with (tmp_path / "exp" / "compare.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["variant"] for r in rows] == [Path(first.run_dir).name, "missing-run"]
    reused, missing = rows
    assert _close(float(reused["mAP50-95"]), first.map50_95, 1e-6) and reused["epochs"] == "1"
    assert int(reused["params"]) == first.params
    assert missing["status"] == "failed" and "neither a run folder nor a checkpoint" in missing["error"]
    assert not (tmp_path / "exp" / "train").exists()  # nothing was trained


def test_pareto_front():
    pts = [(10.0, 0.5), (5.0, 0.4), (20.0, 0.45), (5.0, 0.3), (30.0, 0.6)]
    assert pareto_front(pts) == [1, 0, 4]  # (20, .45) is beaten by (10, .5); (5, .3) by (5, .4)
    assert pareto_front([]) == []


def test_latency_protocol_is_validated_and_printed():
    with pytest.raises(ValueError, match="layout"):
        LatencyProtocol(layout="nhwc")
    text = LatencyProtocol(imgsz=320, runs=30, warmup=10, threads=2).describe()
    for part in ("2 threads", "batch 1", "320x320", "fused", "warm-up 10", "median of 30 runs", "after 1 untimed"):
        assert part in text
    with pytest.raises(ValueError, match="settle"):
        LatencyProtocol(settle=-1)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    lat = measure_torch({"m": model}, LatencyProtocol(imgsz=32, warmup=0, runs=3, threads=1, layout="nchw"))["m"]
    assert lat.runs == 3 and lat.p10_ms <= lat.median_ms <= lat.p90_ms and lat.layout == "nchw"


def test_every_timed_call_follows_an_untimed_call_of_the_same_path():
    """Round-robin with ``settle``: no path is timed right after another path ran (the other
    runtime's spinning threads would be charged to it), and each is timed ``runs`` times."""
    from modyolo.tools.latency import measure_runners

    calls: list[str] = []
    clock_reads: list[int] = []  # how many calls had been made at each read of the clock

    def runner(name: str):
        return lambda: calls.append(name)

    real_counter = time.perf_counter

    def counter() -> float:  # read right before and right after each timed call
        clock_reads.append(len(calls))
        return real_counter()

    protocol = LatencyProtocol(imgsz=32, warmup=1, runs=4, threads=1, settle=1)
    with mock.patch("modyolo.tools.latency.time.perf_counter", counter):
        lat = measure_runners({"a": runner("a"), "b": runner("b")}, protocol)
    starts, ends = clock_reads[0::2], clock_reads[1::2]
    assert lat["a"].runs == 4 and lat["b"].runs == 4 and len(starts) == 8
    assert all(end == start + 1 for start, end in zip(starts, ends))  # one call between the two reads
    assert all(start >= 1 and calls[start] == calls[start - 1] for start in starts), calls
    assert calls[2:6] == ["a", "a", "b", "b"]  # after the warm-up: rounds stay interleaved


def test_demo_settings_build_and_typos_are_caught(tmp_path):
    import yaml

    from modyolo.engine.config import TrainConfig
    from modyolo.nn.model import DetectionModel
    from modyolo.tools.demo import build_hyp, build_variants, load_demo_config

    cfg = load_demo_config()  # the shipped cfg/demo.yaml
    models, names = build_variants(cfg)
    assert names == ["yolov5n", "mobilenetv2", "resnet18"]
    for spec, model_cfg in zip(cfg["variants"], models):
        assert model_cfg["width_multiple"] == spec["width_multiple"]
        DetectionModel(model_cfg, nc=5)  # every demo variant builds
    TrainConfig.from_dict({**cfg["train"], "hyp": build_hyp(cfg)})  # every train key is a TrainConfig field
    assert build_hyp(cfg) == "" and not {"optimizer", "nbs", "bf16"} & set(cfg["train"])  # modyolo train's defaults
    bad = tmp_path / "demo.yaml"
    bad.write_text(yaml.safe_dump({**{k: v for k, v in cfg.items() if k != "_path"}, "epoch": 3}))
    with pytest.raises(ValueError, match="did you mean 'epochs'|unknown key 'epoch'"):
        load_demo_config(bad)


def test_a_training_typo_fails_once_before_any_variant(tiny_shapes, tiny_cfg_file, tmp_path):
    with pytest.raises(ValueError, match="did you mean 'epochs'"):
        compare([tiny_cfg_file()], data=tiny_shapes, train={"epoch": 1}, project=tmp_path, verbose=False)
