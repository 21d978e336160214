"""The anchor-free head through the command line (train -> val -> export -> detect), and the
bad inputs of ultralytics-format YAMLs and weights, each a one-line message naming file and fix."""

import csv
from pathlib import Path

import pytest
import torch
import yaml

from modyolo.cli import main
from modyolo.nn.graph import load_model_yaml
from modyolo.nn.model import DetectionModel


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    from modyolo.data.synthetic import make_shapes_dataset

    return str(make_shapes_dataset(tmp_path_factory.mktemp("shapes"), n_train=8, n_val=4, seed=0, img_size=(96, 160)))


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "expected an error message on stderr"
    return err[-1]


def test_anchor_free_model_trains_validates_exports_and_detects(shapes, tmp_path, capsys):
    common = ["--data", shapes, "--img", "64", "--workers", "0"]
    assert (
        main(
            [
                "train",
                "--cfg",
                "yolov8n.yaml",
                "--epochs",
                "1",
                "--batch",
                "4",
                "--noplots",
                "--project",
                str(tmp_path / "runs"),
                "--name",
                "af",
                *common,
            ]
        )
        == 0
    )
    run = tmp_path / "runs" / "af"
    rows = list(csv.DictReader((run / "results.csv").open()))
    assert {"box_loss", "cls_loss", "dfl_loss", "val_dfl_loss"} <= set(rows[0])  # the head's loss names
    assert "obj_loss" not in rows[0]
    assert all(float(rows[0][k]) > 0 for k in ("box_loss", "cls_loss", "dfl_loss"))
    ckpt_yaml = torch.load(run / "weights" / "last.pt", weights_only=True)["model_yaml"]
    assert ckpt_yaml["scale"] == "n" and ckpt_yaml["width_multiple"] == 0.25  # rebuilds the same model

    assert main(["val", "--weights", str(run / "weights" / "last.pt"), *common]) == 0
    assert (
        main(
            [
                "export",
                "--weights",
                str(run / "weights" / "last.pt"),
                "--img",
                "64",
                "--out-dir",
                str(tmp_path / "export"),
            ]
        )
        == 0
    )  # the exporter checks ONNX against PyTorch
    onnx = tmp_path / "export" / "last.onnx"
    assert onnx.is_file()
    images = Path(shapes).parent / "images" / "val"
    assert (
        main(
            [
                "detect",
                "--weights",
                str(onnx),
                "--source",
                str(images),
                "--img",
                "64",
                "--conf",
                "0.001",
                "--project",
                str(tmp_path / "det"),
            ]
        )
        == 0
    )
    assert "val_00000" in capsys.readouterr().out


def test_anchor_free_head_with_anchors_is_refused(tmp_path, capsys):
    cfg, _ = load_model_yaml("yolov8n.yaml")
    cfg["anchors"] = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]
    path = tmp_path / "v8-anchors.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["profile", "--cfg", str(path), "--img", "64"]) != 0
    msg = _error(capsys)
    assert "v8-anchors.yaml" in msg and "anchor-free" in msg and "anchors:" in msg and "[nc, anchors]" in msg


def test_undefined_scale_letter_names_file_key_and_choices(capsys):
    assert main(["profile", "--cfg", "yolov8x.yaml", "--img", "64"]) != 0
    msg = _error(capsys)
    assert "yolov8x.yaml" in msg and "'x'" in msg and "scales" in msg and "n, s" in msg


def test_scale_key_without_scales_table_is_refused(tmp_path, capsys):
    cfg, _ = load_model_yaml("yolov5n.yaml")
    cfg["scale"] = "s"
    path = tmp_path / "v5-scale.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["profile", "--cfg", str(path), "--img", "64"]) != 0
    assert "v5-scale.yaml" in _error(capsys)


def test_reg_max_that_does_not_fit_the_weights(tmp_path, shapes, capsys):
    torch.save(DetectionModel("yolov8n.yaml", nc=5).state_dict(), tmp_path / "sd.pt")
    cfg, _ = load_model_yaml("yolov8n.yaml")
    cfg.update(nc=5, reg_max=8)
    path = tmp_path / "v8-reg8.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert (
        main(
            [
                "val",
                "--weights",
                str(tmp_path / "sd.pt"),
                "--cfg",
                str(path),
                "--data",
                shapes,
                "--img",
                "64",
                "--workers",
                "0",
            ]
        )
        != 0
    )
    msg = _error(capsys)
    assert "v8-reg8.yaml" in msg and "reg_max 16" in msg and "reg_max: 16" in msg


def test_pickled_ultralytics_model_is_not_unpickled(tmp_path, shapes, capsys):
    pytest.importorskip("ultralytics", reason="the ultralytics package (test extra) makes the pickled file")
    from ultralytics.nn.tasks import DetectionModel as UltralyticsModel

    torch.save({"model": UltralyticsModel("yolov8n.yaml", nc=5, verbose=False), "epoch": 0}, tmp_path / "u.pt")
    assert main(["val", "--weights", str(tmp_path / "u.pt"), "--data", shapes, "--img", "64", "--workers", "0"]) != 0
    msg = _error(capsys)
    assert "u.pt" in msg and "pickled ultralytics model" in msg and "state_dict" in msg and "--cfg" in msg


def test_nms_free_head_trains_both_branches_and_outputs_final_detections(shapes, tmp_path, capsys):
    model = DetectionModel("yolo11n-e2e.yaml", nc=5)
    assert model.head.end2end and not model.head.needs_nms
    preds = model.train()(torch.rand(2, 3, 64, 64))
    assert set(preds) == {"one2many", "one2one"}
    from modyolo.engine.loss_af import AnchorFreeLoss

    loss, parts = AnchorFreeLoss(model)(preds, torch.tensor([[0, 1, 0.5, 0.5, 0.4, 0.3], [1, 2, 0.3, 0.3, 0.2, 0.2]]))
    loss.sum().backward()
    grads = [p.grad for p in model.head.one2one_cv3.parameters()] + [p.grad for p in model.head.cv3.parameters()]
    assert all(g is not None for g in grads), "both branches learn"
    model.eval()
    assert model.end2end
    with torch.no_grad():
        dets, raw = model(torch.rand(1, 3, 64, 64))
        assert set(raw) == {"one2one"}  # inference runs the one-to-one branch only
        assert dets.shape == (1, min(300, 8 * 8 + 4 * 4 + 2 * 2), 6)
        assert torch.all(dets[0, :-1, 4] >= dets[0, 1:, 4])  # sorted by score
        det, num = model(torch.rand(1, 3, 64, 64), 0.5)  # the end-to-end protocol val/detect use
        assert int(num[0]) == int((det[0, :, 4] > 0.5).sum())

    common = ["--data", shapes, "--img", "64", "--workers", "0"]
    assert (
        main(
            [
                "train",
                "--cfg",
                "yolo11n-e2e.yaml",
                "--epochs",
                "1",
                "--batch",
                "4",
                "--noplots",
                "--project",
                str(tmp_path / "runs"),
                "--name",
                "e2e",
                *common,
            ]
        )
        == 0
    )
    last = tmp_path / "runs" / "e2e" / "weights" / "last.pt"
    assert main(["val", "--weights", str(last), *common]) == 0
    # export: the graph outputs final detections with the NMS graph's I/O (checked against PyTorch,
    # tie-tolerant), and val / detect read it back without NMS
    assert main(["export", "--weights", str(last), "--img", "64", "--out-dir", str(tmp_path / "x")]) == 0
    from modyolo.deploy.backends import load_backend

    backend = load_backend(tmp_path / "x" / "last.onnx", device="cpu")
    assert backend.end2end
    dets, num = backend(torch.rand(1, 3, 64, 64), 0.001, 0.6, True)
    assert dets.shape[-1] == 6 and int(num[0]) <= dets.shape[1]
    assert main(["val", "--weights", str(tmp_path / "x" / "last.onnx"), *common]) == 0
    capsys.readouterr()


def test_compare_runs_the_three_heads_side_by_side_with_nms_in_latency_where_needed(shapes, tmp_path, monkeypatch):
    import modyolo.eval.nms as nms_module
    from modyolo.tools.compare import compare
    from modyolo.tools.latency import LatencyProtocol, measure_torch

    cfgs = []
    for name in ("yolov5n.yaml", "yolov8n.yaml", "yolo11n-e2e.yaml"):
        cfg, _ = load_model_yaml(name)
        cfg.update(width_multiple=0.125, depth_multiple=0.33)
        path = tmp_path / f"tiny-{Path(name).stem}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        cfgs.append(str(path))
    protocol = LatencyProtocol(imgsz=64, warmup=1, runs=3, threads=1)
    result = compare(
        cfgs,
        data=shapes,
        train=dict(epochs=1, imgsz=64, batch_size=4, workers=0, max_batches=2, noplots=True, seed=0),
        protocol=protocol,
        project=tmp_path / "compare",
        samples=1,
        verbose=False,
    )
    assert [r.status for r in result.results] == ["ok"] * 3, [r.error for r in result.results]
    assert all(r.latency_torch.median_ms > 0 and 0 <= r.map50_95 <= 1 for r in result.results)

    calls = []
    real = nms_module.non_max_suppression
    monkeypatch.setattr(nms_module, "non_max_suppression", lambda *a, **k: calls.append(1) or real(*a, **k))
    models = {"af": DetectionModel(cfgs[1]), "e2e": DetectionModel(cfgs[2])}
    measure_torch(models, LatencyProtocol(imgsz=64, warmup=0, runs=2, threads=1, layout="nchw", settle=1))
    # the anchor-free model's two timed runs and their two untimed settle runs pay NMS; the NMS-free model's do not
    assert len(calls) == 4


def test_bare_anchor_free_state_dict_exports_with_its_class_count(tmp_path, capsys):
    """A state_dict in ultralytics' layout (what its .pt's state_dict() gives) for 5 classes exports
    with the shipped nc=80 YAML: the class count is read from the head's class branch."""
    torch.save(DetectionModel("yolov8n.yaml", nc=5).state_dict(), tmp_path / "sd.pt")
    assert (
        main(
            [
                "export",
                "--weights",
                str(tmp_path / "sd.pt"),
                "--cfg",
                "yolov8n.yaml",
                "--img",
                "64",
                "--out-dir",
                str(tmp_path / "x"),
            ]
        )
        == 0
    )
    from modyolo.deploy.backends import load_backend

    assert load_backend(tmp_path / "x" / "sd.onnx", device="cpu").metadata.nc == 5
    capsys.readouterr()
