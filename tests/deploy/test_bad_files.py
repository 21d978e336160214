"""Corrupt OpenVINO pairs and files whose graph disagrees with their metadata are refused, saying why."""

from __future__ import annotations

import pytest

from modyolo.deploy.backends import load_backend

from .tiny import IMG, tiny_model

pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    from modyolo.deploy.export import export

    out = tmp_path_factory.mktemp("bad")
    return export(tiny_model("yolov5n.yaml"), include=("onnx", "openvino"), imgsz=IMG, out_dir=out)


def test_truncated_bin_is_refused(exports, tmp_path):
    xml = tmp_path / "m.xml"
    xml.write_bytes(exports["openvino"].read_bytes())
    data = exports["openvino"].with_suffix(".bin").read_bytes()
    xml.with_suffix(".bin").write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match="corrupt"):
        load_backend(xml)


def test_missing_bin_and_garbled_xml_are_refused(exports, tmp_path):
    xml = tmp_path / "m.xml"
    xml.write_bytes(exports["openvino"].read_bytes())
    with pytest.raises(ValueError, match="m.bin is missing"):
        load_backend(xml)
    xml.write_text("<net><layers>")
    xml.with_suffix(".bin").write_bytes(exports["openvino"].with_suffix(".bin").read_bytes())
    with pytest.raises(ValueError, match="not a readable OpenVINO IR"):
        load_backend(xml)


def test_onnx_with_another_input_size_is_refused_with_both_shapes(exports, tmp_path):
    import onnx

    proto = onnx.load(str(exports["onnx"]))
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_value, dims[3].dim_value = 96, 96  # the metadata still says 64x64
    path = tmp_path / "resized.onnx"
    onnx.save(proto, str(path))
    with pytest.raises(ValueError, match=r"input has shape \[1, 3, 96, 96\] but its metadata says \[1, 3, 64, 64\]"):
        load_backend(path)


def test_wrong_image_size_at_run_time_names_expected_and_found(exports):
    import torch

    backend = load_backend(exports["openvino"])
    with pytest.raises(ValueError, match=f"fixed input of {IMG}x{IMG}.*got 96x96"):
        backend(torch.zeros(1, 3, 96, 96))
