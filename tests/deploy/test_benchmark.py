"""`modyolo benchmark` through the CLI on a tiny model (few runs): one row per format, a JSON file."""

from __future__ import annotations

import json

import pytest

from modyolo.cli import main
from modyolo.engine.checkpoint import save_checkpoint

from .tiny import IMG, tiny_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from modyolo.data.synthetic import CLASSES, make_shapes_dataset

    root = tmp_path_factory.mktemp("bench")
    data = make_shapes_dataset(root / "shapes", n_train=4, n_val=4, img_size=(64, 96))
    model = tiny_model("yolov5n.yaml", nc=len(CLASSES))
    ckpt = save_checkpoint(root / "best.pt", model=model, epoch=0, names=list(CLASSES), model_yaml=model.yaml)
    return ckpt, data


def test_benchmark_cli_table_and_json(setup, tmp_path, capsys):
    pytest.importorskip("openvino")
    ckpt, data = setup
    out_json = tmp_path / "bench.json"
    rc = main(
        [
            "benchmark",
            "--weights",
            str(ckpt),
            "--data",
            str(data),
            "--img",
            str(IMG),
            "--runs",
            "3",
            "--warmup",
            "1",
            "--formats",
            "torch",
            "torch_cl",
            "torchscript",
            "onnx",
            "openvino",
            "--json",
            str(out_json),
            "--out-dir",
            str(tmp_path / "files"),
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "latency protocol" in text and "fastest within 1 mAP50-95 points" in text
    assert "each timed call after 1 untimed call(s) of the same format" in text
    rows = {r["format"]: r for r in json.loads(out_json.read_text())}
    assert set(rows) == {"torch", "torch_cl", "torchscript", "onnx", "openvino"}
    for r in rows.values():
        assert r["median_ms"] > 0 and r["p10_ms"] <= r["median_ms"] <= r["p90_ms"] and r["size_mb"] > 0
        assert r["format"] in text
    # every format is the same network: the same mAP on the same images
    maps = [r["map50_95"] for r in rows.values()]
    assert max(maps) - min(maps) < 1e-3
    assert (tmp_path / "files" / "best.xml").is_file()


def test_benchmark_rejects_unknown_format_and_missing_weights(setup, tmp_path, capsys):
    from modyolo.tools.benchmark import available_formats

    with pytest.raises(ValueError, match="unknown"):
        available_formats(["onnx", "tflite"], int8=False)
    rc = main(["benchmark", "--weights", str(tmp_path / "nope.pt")])
    assert rc == 1 and "not found" in capsys.readouterr().err
