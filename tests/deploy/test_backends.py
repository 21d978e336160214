"""Backends read the metadata, refuse inputs they cannot take, and agree with the .pt."""

from __future__ import annotations

import onnx
import pytest
import torch

from modyolo.deploy.backends import load_backend, read_metadata
from modyolo.deploy.diagnose import quiet_exporter
from modyolo.deploy.export import export
from modyolo.deploy.metadata import MetadataError
from modyolo.engine.checkpoint import save_checkpoint

from .tiny import IMG, assert_pred_close, tiny_model


@pytest.mark.parametrize("kind", ["onnx", "torchscript"])
def test_metadata_round_trip(yolov5n_exports, kind):
    model, paths = yolov5n_exports
    meta = read_metadata(paths[kind])
    backend = load_backend(paths[kind])
    assert meta["names"] == model.names == backend.names
    assert backend.stride == meta["stride"] == 32
    assert backend.imgsz == (IMG, IMG) and backend.batch_size == 1 and backend.dynamic is False
    assert meta["strides"] == [8, 16, 32] and meta["nc"] == 3 and meta["model"] == "yolov5n.yaml"


def test_onnx_metadata_is_readable_json_props(yolov5n_exports):
    _, paths = yolov5n_exports
    props = {p.key: p.value for p in onnx.load(str(paths["onnx"])).metadata_props}
    assert props["names"] == '["class0", "class1", "class2"]' and props["imgsz"] == "[64, 64]"
    onnx.checker.check_model(str(paths["onnx"]))


@pytest.mark.parametrize("kind", ["onnx", "torchscript"])
def test_fixed_size_model_refuses_another_size_with_the_fix(yolov5n_exports, kind):
    _, paths = yolov5n_exports
    backend = load_backend(paths[kind])
    with pytest.raises(ValueError, match=r"fixed input of 64x64.*--dynamic"):
        backend(torch.rand(1, 3, 96, 64))


def test_dynamic_export_runs_other_batches_and_sizes(tmp_path):
    model = tiny_model("yolov5s.yaml")
    paths = export(model, include=("onnx", "torchscript"), imgsz=IMG, dynamic=True, out_dir=tmp_path)
    x = torch.rand(2, 3, 96, 128)
    with torch.no_grad():
        ref = model(x)[0]
    for path in paths.values():
        backend = load_backend(path, threads=1)
        assert backend.dynamic and backend.batch_size is None
        assert_pred_close(backend(x), ref)
        with pytest.raises(ValueError, match="multiple of the model stride 32"):
            backend(torch.rand(1, 3, 80, 64))


def test_simplified_onnx_matches_and_keeps_metadata(tmp_path):
    pytest.importorskip("onnxslim", reason="--simplify needs onnxslim")
    model = tiny_model("yolov5n.yaml")
    path = export(model, include=("onnx",), imgsz=IMG, simplify=True, out_dir=tmp_path)["onnx"]
    x = torch.rand(1, 3, IMG, IMG)
    with torch.no_grad():
        ref = model(x)[0]
    backend = load_backend(path)
    assert backend.names == model.names
    assert_pred_close(backend(x), ref)


def test_checkpoint_export_equals_pt_backend(tmp_path):
    """.pt -> export -> .onnx gives the .pt backend's outputs (names from the checkpoint)."""
    model = tiny_model("yolov5n.yaml")
    names = ["cat", "dog", "bird"]
    weights = save_checkpoint(tmp_path / "best.pt", model=model, epoch=0, names=names, model_yaml=model.yaml)
    paths = export(weights, include=("onnx",), imgsz=IMG)
    assert paths["onnx"] == tmp_path / "best.onnx"
    pt, ox = load_backend(weights), load_backend(paths["onnx"])
    assert pt.kind == "torch" and pt.names == ox.names == names
    x = torch.rand(2, 3, IMG, IMG)
    assert_pred_close(ox(x), pt(x))


def test_foreign_onnx_without_metadata_is_refused(tmp_path):
    path = tmp_path / "plain.onnx"
    with torch.no_grad(), quiet_exporter():
        torch.onnx.export(torch.nn.Conv2d(3, 4, 1), (torch.rand(1, 3, 8, 8),), str(path), dynamo=False)
    with pytest.raises(MetadataError, match="not exported by `modyolo export`"):
        load_backend(path)


def test_unknown_suffix_and_missing_file(tmp_path):
    (tmp_path / "m.tflite").write_bytes(b"x")
    with pytest.raises(ValueError, match="unknown weights format '.tflite'"):
        load_backend(tmp_path / "m.tflite")
    with pytest.raises(FileNotFoundError):
        load_backend(tmp_path / "missing.onnx")
