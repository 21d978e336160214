"""`modyolo export` end to end, and validation through a backend equals validation of the model."""

from __future__ import annotations

import pytest
import torch

from modyolo.cli import main
from modyolo.deploy.backends import load_backend
from modyolo.engine.checkpoint import save_checkpoint

from .tiny import IMG, tiny_model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    model = tiny_model("yolov5n.yaml")
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    return save_checkpoint(path, model=model, epoch=0, names=["a", "b", "c"], model_yaml=model.yaml)


def test_cli_writes_both_formats(checkpoint, tmp_path, capsys):
    rc = main(
        [
            "export",
            "--weights",
            str(checkpoint),
            "--include",
            "onnx",
            "torchscript",
            "--img",
            str(IMG),
            "--batch-size",
            "2",
            "--out-dir",
            str(tmp_path),
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    for suffix in (".onnx", ".torchscript"):
        path = tmp_path / f"best{suffix}"
        assert str(path) in out
        backend = load_backend(path)
        assert backend.batch_size == 2 and backend.names == ["a", "b", "c"]


def test_cli_rounds_a_bad_size_like_every_verb(checkpoint, tmp_path, capsys):
    """The CLI rounds --img up to the stride (modyolo.cli.checks); the API refuses with the fix."""
    from modyolo.deploy.export import export

    rc = main(["export", "--weights", str(checkpoint), "--img", "100", "--out-dir", str(tmp_path)])
    captured = capsys.readouterr()
    assert rc == 0 and "rounded up to 128" in captured.out + captured.err
    assert load_backend(tmp_path / "best.onnx").imgsz == (128, 128)
    with pytest.raises(ValueError, match="use --img 128 128"):
        export(checkpoint, imgsz=100, out_dir=tmp_path)


def test_validation_through_onnx_equals_the_pt(checkpoint, tmp_path):
    from modyolo.data.loader import create_dataloader
    from modyolo.data.synthetic import make_shapes_dataset
    from modyolo.deploy.export import export
    from modyolo.eval.validator import validate

    data = make_shapes_dataset(tmp_path / "shapes", n_train=0, n_val=6, img_size=(64, 96)).parent
    pt = load_backend(checkpoint)
    names = [f"c{i}" for i in range(3)]
    loader, _ = create_dataloader(data / "images" / "val", IMG, 4, 32, workers=0, progress=False, nc=3, names=names)
    onnx_path = export(checkpoint, include=("onnx",), imgsz=IMG, out_dir=tmp_path)["onnx"]
    results = [validate(b, loader, names=names, progress=False) for b in (pt, load_backend(onnx_path))]
    (a, b) = (r.metrics for r in results)
    assert results[0].stats["detections_after_nms"] == results[1].stats["detections_after_nms"] > 0
    for key in ("precision", "recall", "mAP50", "mAP50-95"):
        assert float(torch.as_tensor(a[key]).mean()) == pytest.approx(float(torch.as_tensor(b[key]).mean()), abs=1e-3)
