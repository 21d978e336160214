"""`modyolo export --int8`: calibrated on the user's images, checked by mAP50-95, refused past the limit."""

from __future__ import annotations

import re

import pytest

from modyolo.cli import main
from modyolo.engine.checkpoint import save_checkpoint

from .tiny import IMG, tiny_model

pytest.importorskip("openvino")
pytest.importorskip("nncf")


@pytest.fixture(scope="module")
def pseudo_labelled(tmp_path_factory):
    """(checkpoint, data YAML) where the labels are the float model's own top detections.

    A random tiny model scores ~0 mAP on real labels, so an INT8 check against them could not
    fail; against its own detections fp32 scores high and a broken INT8 model visibly does not.
    """
    import cv2

    from modyolo.data.synthetic import CLASSES, make_shapes_dataset
    from modyolo.deploy.backends import load_backend
    from modyolo.inference.predictor import predict_image

    root = tmp_path_factory.mktemp("int8")
    shapes = make_shapes_dataset(root / "shapes", n_train=8, n_val=8, img_size=(64, 96)).parent
    model = tiny_model("yolov5n.yaml", nc=len(CLASSES), seed=3)
    ckpt = save_checkpoint(root / "best.pt", model=model, epoch=0, names=list(CLASSES), model_yaml=model.yaml)
    backend = load_backend(ckpt)
    for split in ("train", "val"):
        for img_path in sorted((shapes / "images" / split).glob("*.jpg")):
            img = cv2.imread(str(img_path))
            h0, w0 = img.shape[:2]
            det, _ = predict_image(
                backend, img, imgsz=IMG, stride=32, device=backend.device, conf=0.001, iou=0.3, auto=False, max_det=3
            )
            rows = [
                f"{int(c)} {(x1 + x2) / 2 / w0:.6f} {(y1 + y2) / 2 / h0:.6f} {(x2 - x1) / w0:.6f} {(y2 - y1) / h0:.6f}"
                for x1, y1, x2, y2, _, c in det.tolist()
                if x2 - x1 > 2 and y2 - y1 > 2
            ]
            (shapes / "labels" / split / f"{img_path.stem}.txt").write_text("\n".join(rows) + "\n")
    for cache in (shapes / "labels").glob("*.modyolo"):
        cache.unlink()
    data = root / "data.yaml"
    data.write_text(
        f"path: {shapes}\ntrain: images/train\nval: images/val\nnc: {len(CLASSES)}\nnames: {list(CLASSES)}\n"
    )
    return ckpt, data


def _maps(text: str) -> tuple[float, float]:
    m = re.search(r"mAP50-95 fp32 ([\d.]+), int8 ([\d.]+)", text)
    assert m, text
    return float(m.group(1)), float(m.group(2))


def test_int8_export_validates_by_map(pseudo_labelled, tmp_path, capsys):
    import openvino as ov

    from modyolo.deploy.backends import load_backend

    ckpt, data = pseudo_labelled
    rc = main(
        [
            "export",
            "--weights",
            str(ckpt),
            "--int8",
            "--data",
            str(data),
            "--img",
            str(IMG),
            "--workers",
            "0",
            "--int8-max-drop",
            "15",
            "--out-dir",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr()
    assert rc == 0, out.err
    fp32, int8 = _maps(out.out)
    assert fp32 > 0.3  # its own detections: high, so the INT8 comparison means something
    assert int8 > fp32 - 0.15
    xml = tmp_path / "best_int8.xml"
    backend = load_backend(xml)
    assert backend.metadata.precision == "int8" and backend.kind == "openvino_int8"
    ops = ov.Core().read_model(str(xml)).get_ordered_ops()
    fq = [op.get_friendly_name() for op in ops if op.get_type_name() == "FakeQuantize"]
    assert fq, "no layer was quantised"
    head = len(tiny_model("yolov5n.yaml").model) - 1
    assert not [n for n in fq if re.search(rf"model\.{head}/(?!m\.\d+/)", n)], "the head's decode was quantised"


def test_int8_refused_past_the_limit_and_without_data(pseudo_labelled, tmp_path, capsys):
    from modyolo.deploy.diagnose import ExportError
    from modyolo.deploy.export import export

    ckpt, data = pseudo_labelled
    # a negative limit (API only; the CLI wants >= 0) refuses whatever the drop: the refusal path itself
    with pytest.raises(ExportError, match="INT8 model refused.*--int8-allow-drop"):
        export(ckpt, include=("openvino",), imgsz=IMG, int8=True, data=data, int8_max_drop=-100, out_dir=tmp_path)
    assert not (tmp_path / "best_int8.xml").exists() and not (tmp_path / "best_int8.bin").exists()
    rc = main(["export", "--weights", str(ckpt), "--int8", "--img", str(IMG), "--out-dir", str(tmp_path)])
    assert rc == 1 and "--data my.yaml" in capsys.readouterr().err
