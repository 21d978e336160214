"""``modyolo compare --format``: every variant timed in each inference format, the fastest valid one reported."""

import csv
import json
from pathlib import Path

import pytest

from modyolo.cli import main as cli_main
from modyolo.tools.compare_formats import timed_formats
from modyolo.tools.formats import cpu_has_bf16


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, tiny_shapes):
    """Two untrained tiny variants saved as checkpoints: compare --runs reuses them without training."""
    import torch

    from modyolo.data.dataset_yaml import load_data_config
    from modyolo.engine.checkpoint import save_checkpoint
    from modyolo.nn.graph import load_model_yaml
    from modyolo.nn.model import DetectionModel

    names = list(load_data_config(tiny_shapes).names)
    folder = tmp_path_factory.mktemp("ckpts")
    out = []
    for cfg_name in ("yolov5n.yaml", "yolov5-mobilenetv2.yaml"):
        cfg, _ = load_model_yaml(cfg_name)
        cfg.update(width_multiple=0.125, nc=len(names))
        torch.manual_seed(0)
        model = DetectionModel(cfg).eval()
        out.append(
            save_checkpoint(
                folder / f"{Path(cfg_name).stem}.pt", model=model, epoch=0, names=names, model_yaml=model.yaml
            )
        )
    return out


def _compare(checkpoints, data, project: Path, *extra: str) -> tuple[int, list[dict], dict]:
    code = cli_main(
        [
            "compare",
            "--runs",
            *map(str, checkpoints),
            "--data",
            data,
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
            "--no-report",
            "--samples",
            "0",
            "--project",
            str(project),
            "--quiet",
            *extra,
        ]
    )
    with (project / "exp" / "compare.csv").open() as f:
        rows = list(csv.DictReader(f))
    return code, rows, json.loads((project / "exp" / "compare.json").read_text())


def test_format_auto_reports_the_fastest_valid_format(checkpoints, tiny_shapes, tmp_path):
    pytest.importorskip("onnxruntime")
    code, rows, doc = _compare(checkpoints, tiny_shapes, tmp_path, "--format", "auto")
    assert code == 0
    _, pick = timed_formats("auto", "auto", True)
    for row, v in zip(rows, doc["variants"]):
        assert v["status"] == "ok", v["error"]
        checks, ms = v["format_checks"], v["format_ms"]
        assert checks["torch"] == checks["torch_cl"] == checks["onnx"] == "ok", checks
        valid = {f: ms[f] for f in pick if checks.get(f) == "ok" and f in ms}
        best = min(valid, key=valid.get)
        # the best column is the fastest valid format of this very round, the PyTorch column kept
        assert row["best_format"] == v["best_format"] == best
        assert float(row["latency_best_ms"]) == pytest.approx(valid[best], rel=1e-5)
        assert v["latency_best"]["all_layouts"] == pytest.approx(valid)
        assert float(row["latency_torch_ms"]) == pytest.approx(min(ms["torch"], ms["torch_cl"]), rel=1e-5)
        assert float(row["latency_onnx_ms"]) == pytest.approx(ms["onnx"], rel=1e-5)
        if "openvino" in checks:  # the OpenVINO extra is installed: converted, checked and timed too
            assert checks["openvino"] == "ok"
        if cpu_has_bf16():  # bf16 is a candidate, valid by its mAP check (untrained: both ~0)
            assert checks["torch_bf16"] == "ok"
        assert (tmp_path / "exp" / "exports" / v["name"] / f"{Path(v['weights']).stem}.onnx").is_file()
    md = (tmp_path / "exp" / "compare.md").read_text()
    assert "Best format" in md and "## Inference formats" in md and "(best)" in md


def test_format_onnx_restricts_the_choice_and_bad_choices_fail(checkpoints, tiny_shapes, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    code, rows, doc = _compare(checkpoints[:1], tiny_shapes, tmp_path, "--format", "onnx")
    assert code == 0
    assert [r["best_format"] for r in rows] == ["onnx"]
    assert set(doc["variants"][0]["format_checks"]) == {"torch", "torch_cl", "onnx"}  # no OpenVINO, no bf16
    with pytest.raises(SystemExit):
        cli_main(["compare", "--runs", str(checkpoints[0]), "--format", "tflite"])
    assert "invalid choice" in capsys.readouterr().err


def test_a_format_failing_its_check_is_never_the_best(checkpoints, tiny_shapes, tmp_path):
    """--format-max-drop -1 makes every bf16 format fail its mAP check: shown as invalid, not chosen."""
    if not cpu_has_bf16():
        pytest.skip("bf16 formats are candidates only on CPUs with native bf16")
    code, rows, doc = _compare(checkpoints[:1], tiny_shapes, tmp_path, "--format-max-drop", "-1")
    assert code == 0
    v = doc["variants"][0]
    assert v["format_checks"]["torch_bf16"].startswith("mAP50-95") and "drop" in v["format_checks"]["torch_bf16"]
    assert v["best_format"] not in ("torch_bf16", "openvino_bf16")
    assert "invalid: mAP50-95" in (tmp_path / "exp" / "compare.md").read_text()


def test_timed_formats():
    assert timed_formats("torch", "nchw", False) == (["torch"], ["torch"])
    timed, pick = timed_formats("auto", "auto", False)
    assert "onnx" not in pick and "onnx" not in timed and {"torch_bf16", "openvino"} <= set(pick)
    with pytest.raises(ValueError, match="--format"):
        timed_formats("tensorrt", "auto", True)
