from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from modyolo.data.formats.coco import coco_to_yolo, yolo_to_coco
from modyolo.data.formats.voc import voc_to_yolo
from modyolo.data.formats.yolo import img2label_path, write_data_yaml


def _coco(tmp_path: Path) -> tuple[Path, Path, dict]:
    imgs = tmp_path / "coco_imgs"
    imgs.mkdir()
    images, anns = [], []
    for k, (w, h) in enumerate([(100, 80), (64, 128)], start=10):
        cv2.imwrite(str(imgs / f"im{k}.jpg"), np.full((h, w, 3), 90, np.uint8))
        images.append({"id": k, "file_name": f"im{k}.jpg", "width": w, "height": h})
    anns += [
        {"id": 1, "image_id": 10, "category_id": 3, "bbox": [10.0, 5.0, 30.0, 20.0], "iscrowd": 0},
        {"id": 2, "image_id": 10, "category_id": 7, "bbox": [50.0, 40.0, 40.0, 30.0], "iscrowd": 0},
        {"id": 3, "image_id": 11, "category_id": 7, "bbox": [0.0, 0.0, 64.0, 128.0], "iscrowd": 0},
        {"id": 4, "image_id": 11, "category_id": 3, "bbox": [1.0, 1.0, 5.0, 5.0], "iscrowd": 1},
    ]
    gt = {"images": images, "annotations": anns, "categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}]}
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    return path, imgs, gt


def test_coco_yolo_coco_round_trip(tmp_path):
    path, imgs, gt = _coco(tmp_path)
    out = tmp_path / "yolo"
    names = coco_to_yolo(path, imgs, out, split="val")
    assert names == ["cat", "dog"]  # category ids sorted: 3 -> 0, 7 -> 1
    assert (out / "labels" / "val" / "im10.txt").read_text().split("\n")[0].startswith("0 0.25")
    back = yolo_to_coco(write_data_yaml(out, names, reuse_missing=True), split="val")
    assert [c["name"] for c in back["categories"]] == names
    by_file = {im["file_name"]: im["id"] for im in back["images"]}
    orig_names = {c["id"]: c["name"] for c in gt["categories"]}
    want = sorted(
        (f"images/val/im{a['image_id']}.jpg", orig_names[a["category_id"]], *a["bbox"])
        for a in gt["annotations"]
        if not a["iscrowd"]
    )
    got = sorted(
        (next(f for f, i in by_file.items() if i == a["image_id"]), names[a["category_id"]], *a["bbox"])
        for a in back["annotations"]
    )
    assert [g[:2] for g in got] == [w[:2] for w in want]
    assert np.allclose([g[2:] for g in got], [w[2:] for w in want], atol=1e-3)


def test_yolo_to_coco_loads_in_pycocotools(shapes_yaml, tmp_path):
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO

    gt = yolo_to_coco(str(shapes_yaml), split="val")
    f = tmp_path / "gt.json"
    f.write_text(json.dumps(gt))
    coco = COCO(str(f))
    assert len(coco.getImgIds()) == 4 and len(coco.getCatIds()) == 5
    assert all(Path(im["path"]).is_file() for im in gt["images"])


def _voc(tmp_path: Path) -> Path:
    voc = tmp_path / "VOC"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "JPEGImages").mkdir()
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    objs = {"a": [("cat", (11, 21, 50, 60), 0), ("dog", (1, 1, 100, 80), 1)], "b": [("dog", (5, 5, 20, 30), 0)]}
    for stem, rows in objs.items():
        cv2.imwrite(str(voc / "JPEGImages" / f"{stem}.jpg"), np.zeros((80, 100, 3), np.uint8))
        body = "".join(
            f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin>"
            f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
            for n, b, d in rows
        )
        (voc / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><filename>{stem}.jpg</filename><size><width>100</width><height>80</height>"
            f"<depth>3</depth></size>{body}</annotation>"
        )
    (voc / "ImageSets" / "Main" / "train.txt").write_text("a\n")
    (voc / "ImageSets" / "Main" / "val.txt").write_text("b\n")
    return voc


@pytest.mark.parametrize("keep", [False, True])
def test_voc_to_yolo_then_coco_gives_the_xml_boxes(tmp_path, keep):
    out = tmp_path / f"yolo{keep}"
    names = voc_to_yolo(_voc(tmp_path), out, keep_difficult=keep)
    assert names == ["cat", "dog"]
    gt = yolo_to_coco(write_data_yaml(out, names), split="train")
    boxes = sorted((a["category_id"], *np.round(a["bbox"], 3)) for a in gt["annotations"])
    want = [(0, 10.0, 20.0, 40.0, 40.0)] + ([(1, 0.0, 0.0, 100.0, 80.0)] if keep else [])
    assert boxes == want
    assert (out / "labels" / "val" / "b.txt").is_file() and (out / "images" / "val" / "b.jpg").is_file()


def test_voc_given_names_skips_unknown_class(tmp_path, caplog):
    out = tmp_path / "y"
    voc_to_yolo(_voc(tmp_path), out, names=["dog"])
    assert (out / "labels" / "train" / "a.txt").read_text() == ""
    assert "class 'cat' is not in the class list" in caplog.text


def test_label_path_rule():
    assert img2label_path("/d/images/train/images/x.jpg") == "/d/images/train/labels/x.txt"
    assert img2label_path("/d/images/a.b.png") == "/d/labels/a.b.txt"


def test_convert_cli(tmp_path):
    from modyolo.cli import main

    path, imgs, _ = _coco(tmp_path)
    assert main(["convert", "coco2yolo", "--json", str(path), "--images", str(imgs), "--out", str(tmp_path / "o")]) == 0
    # no val split yet: data.yaml lists train only (no silent 'val: images/train'); converting val completes it
    assert "val" not in (tmp_path / "o" / "data.yaml").read_text()
    assert (
        main(
            [
                "convert",
                "coco2yolo",
                "--json",
                str(path),
                "--images",
                str(imgs),
                "--out",
                str(tmp_path / "o"),
                "--split",
                "val",
            ]
        )
        == 0
    )
    assert "val: images/val" in (tmp_path / "o" / "data.yaml").read_text()
    assert (
        main(
            [
                "convert",
                "yolo2coco",
                "--data",
                str(tmp_path / "o" / "data.yaml"),
                "--split",
                "train",
                "--out",
                str(tmp_path / "gt2.json"),
            ]
        )
        == 0
    )
    assert len(json.loads((tmp_path / "gt2.json").read_text())["annotations"]) == 3
    assert main(["convert", "voc2yolo", "--out", str(tmp_path / "v")]) == 1  # missing --src: a clear error
