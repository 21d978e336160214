"""OpenVINO export and NMS inside the graph: outputs against PyTorch, val round trips through the CLI."""

from __future__ import annotations

import pytest
import torch

from modyolo.cli import main
from modyolo.deploy.backends import load_backend, read_metadata
from modyolo.engine.checkpoint import save_checkpoint

from .tiny import IMG, assert_pred_close, tiny_model

pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from modyolo.data.synthetic import CLASSES

    model = tiny_model("yolov5n.yaml", nc=len(CLASSES))
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    return save_checkpoint(path, model=model, epoch=0, names=list(CLASSES), model_yaml=model.yaml)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """The data YAML of a 6-image shapes dataset (val split: the random tiny model finds boxes at conf 0.001)."""
    from modyolo.data.synthetic import make_shapes_dataset

    return make_shapes_dataset(tmp_path_factory.mktemp("shapes"), n_train=6, n_val=6, img_size=(64, 96))


def _val_cli(weights, data, tmp_path, capsys) -> float:
    rc = main(
        [
            "val",
            "--weights",
            str(weights),
            "--data",
            str(data),
            "--img",
            str(IMG),
            "--batch-size",
            "4",
            "--workers",
            "0",
            "--project",
            str(tmp_path),
            "--no-plots",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("all"))
    return float(line.split()[-1])  # mAP50-95


def test_openvino_matches_pytorch_and_keeps_metadata(checkpoint, tmp_path):
    rc = main(
        ["export", "--weights", str(checkpoint), "--include", "openvino", "--img", str(IMG), "--out-dir", str(tmp_path)]
    )
    assert rc == 0
    xml = tmp_path / "best.xml"
    assert xml.is_file() and xml.with_suffix(".bin").is_file()
    backend = load_backend(xml)
    assert backend.kind == "openvino" and backend.names == ref_names(checkpoint) and not backend.end2end
    assert read_metadata(xml)["imgsz"] == [IMG, IMG]
    ref = load_backend(checkpoint)
    x = torch.rand(3, 3, IMG, IMG, generator=torch.Generator().manual_seed(5))  # batch 3 through a batch-1 model
    assert_pred_close(backend(x), ref(x))


def test_openvino_dynamic_runs_other_sizes(checkpoint, tmp_path):
    from modyolo.deploy.export import export

    xml = export(checkpoint, include=("openvino",), imgsz=IMG, dynamic=True, out_dir=tmp_path)["openvino"]
    x = torch.rand(2, 3, IMG + 32, IMG, generator=torch.Generator().manual_seed(6))
    assert_pred_close(load_backend(xml)(x), load_backend(checkpoint)(x))


@pytest.mark.parametrize("fmt,suffix", [("onnx", ".onnx"), ("openvino", ".xml")])
def test_nms_graph_equals_python_nms(checkpoint, tmp_path, fmt, suffix):
    from modyolo.deploy.export import export
    from modyolo.deploy.nms_graph import compare_detections, split_detections
    from modyolo.eval.nms import non_max_suppression

    path = export(checkpoint, include=(fmt,), imgsz=IMG, batch_size=2, nms=True, max_det=50, out_dir=tmp_path)[fmt]
    assert path.suffix == suffix
    backend, ref = load_backend(path), load_backend(checkpoint)
    assert backend.end2end and backend.max_det == 50
    x = torch.rand(3, 3, IMG, IMG, generator=torch.Generator().manual_seed(7))
    pred = ref(x)
    for conf, iou, multi in ((0.001, 0.6, True), (0.003, 0.45, False)):
        dets, num = backend(x, conf, iou, multi)
        assert dets.shape == (3, 50, 6) and num.shape == (3,)
        want = non_max_suppression(pred, conf, iou, multi_label=multi, max_det=50)
        assert sum(len(w) for w in want) > 0
        assert compare_detections(want, split_detections(dets, num)) is None


def test_val_round_trips_with_nms_inside_and_openvino(checkpoint, shapes, tmp_path, capsys):
    """validate() on the .pt, the OpenVINO IR and the ONNX / OpenVINO NMS graphs: same detections and
    metrics; `modyolo val` runs the OpenVINO NMS graph like the .pt."""
    from modyolo.data.dataset_yaml import load_data_config
    from modyolo.data.loader import create_dataloader
    from modyolo.deploy.export import export
    from modyolo.eval.validator import validate

    plain = export(checkpoint, include=("openvino",), imgsz=IMG, out_dir=tmp_path / "plain")
    nms = export(checkpoint, include=("onnx", "openvino"), imgsz=IMG, nms=True, out_dir=tmp_path / "nms")
    cfg = load_data_config(shapes)
    loader, _ = create_dataloader(cfg.val, IMG, 4, 32, workers=0, progress=False, nc=cfg.nc, names=cfg.names)
    names = list(cfg.names.values()) if isinstance(cfg.names, dict) else list(cfg.names)
    results = {
        name: validate(load_backend(w), loader, names=names, progress=False)
        for name, w in (
            ("pt", checkpoint),
            ("ov", plain["openvino"]),
            ("onnx_nms", nms["onnx"]),
            ("ov_nms", nms["openvino"]),
        )
    }
    ref = results["pt"]
    assert ref.stats["detections_after_nms"] > 0
    for name, r in results.items():
        assert r.stats["detections_after_nms"] == ref.stats["detections_after_nms"], name
        for key in ("precision", "recall", "mAP50", "mAP50-95"):
            assert float(torch.as_tensor(r.metrics[key]).mean()) == pytest.approx(
                float(torch.as_tensor(ref.metrics[key]).mean()), abs=1e-3
            ), (name, key)
    assert _val_cli(nms["openvino"], shapes, tmp_path / "cli", capsys) == pytest.approx(
        _val_cli(checkpoint, shapes, tmp_path / "cli", capsys), abs=1e-3
    )


def test_detect_through_nms_graph_equals_pt(checkpoint, tmp_path):
    import numpy as np

    from modyolo.deploy.export import export
    from modyolo.inference.predictor import predict_image

    onnx = export(checkpoint, include=("onnx",), imgsz=IMG, nms=True, out_dir=tmp_path)["onnx"]
    img = (np.random.default_rng(0).random((48, 80, 3)) * 255).astype(np.uint8)
    kw = dict(imgsz=IMG, stride=32, device=torch.device("cpu"), conf=0.002, iou=0.45, auto=False)
    want, _ = predict_image(load_backend(checkpoint), img, **kw)
    got, _ = predict_image(load_backend(onnx), img, **kw)
    from modyolo.deploy.nms_graph import compare_detections

    assert len(want) > 0 and compare_detections([want], [got]) is None
    with pytest.raises(ValueError, match="--nms"):
        predict_image(load_backend(onnx), img, **{**kw, "augment": True})


def test_nms_refused_for_torchscript(checkpoint, tmp_path, capsys):
    rc = main(
        [
            "export",
            "--weights",
            str(checkpoint),
            "--include",
            "torchscript",
            "--nms",
            "--img",
            str(IMG),
            "--out-dir",
            str(tmp_path),
        ]
    )
    assert rc == 1 and "ONNX / OpenVINO graphs only" in capsys.readouterr().err


def ref_names(checkpoint) -> list[str]:
    return list(load_backend(checkpoint).names)


def test_val_augment_refused_for_nms_graph(checkpoint, shapes, tmp_path, capsys):
    from modyolo.deploy.export import export

    onnx = export(checkpoint, include=("onnx",), imgsz=IMG, nms=True, out_dir=tmp_path)["onnx"]
    rc = main(
        [
            "val",
            "--weights",
            str(onnx),
            "--data",
            str(shapes),
            "--img",
            str(IMG),
            "--augment",
            "--workers",
            "0",
            "--project",
            str(tmp_path),
            "--no-plots",
        ]
    )
    assert rc == 1 and "NMS inside its graph" in capsys.readouterr().err


def test_dynamic_nms_graph_runs_other_batches_and_sizes(checkpoint, tmp_path):
    from modyolo.deploy.export import export
    from modyolo.deploy.nms_graph import compare_detections, split_detections
    from modyolo.eval.nms import non_max_suppression

    xml = export(checkpoint, include=("openvino",), imgsz=IMG, dynamic=True, nms=True, max_det=30, out_dir=tmp_path)[
        "openvino"
    ]
    backend = load_backend(xml)
    x = torch.rand(3, 3, IMG + 32, IMG, generator=torch.Generator().manual_seed(8))
    dets, num = backend(x, 0.002, 0.5, True)
    assert dets.shape == (3, 30, 6)
    want = non_max_suppression(load_backend(checkpoint)(x), 0.002, 0.5, multi_label=True, max_det=30)
    assert compare_detections(want, split_detections(dets, num), slack=0.02) is None
