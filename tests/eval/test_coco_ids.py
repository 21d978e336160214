"""``val --save-json`` image ids: yolov5's ``int(stem)`` for numeric file names, so the JSON scores
against COCO's official annotations; the exported ground truth uses the same ids."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from modyolo.data.formats.coco import coco_image_id_list, yolo_to_coco
from tiny_run import run_cli

COCO_IDS = [139, 285, 632, 724]


@pytest.fixture(scope="module")
def coco_named(shapes, tmp_path_factory) -> Path:
    """The shapes val split with its files renamed as COCO's (``000000000139.jpg``)."""
    src = Path(yaml.safe_load(Path(shapes).read_text())["path"])
    root = tmp_path_factory.mktemp("coco-named")
    for sub in ("images", "labels"):
        (root / sub / "val").mkdir(parents=True)
    for i, image in enumerate(sorted((src / "images" / "val").glob("*.jpg"))):
        stem = f"{COCO_IDS[i]:012d}"
        shutil.copy(image, root / "images" / "val" / f"{stem}.jpg")
        shutil.copy(src / "labels" / "val" / f"{image.stem}.txt", root / "labels" / "val" / f"{stem}.txt")
    data = yaml.safe_load(Path(shapes).read_text())
    data.update(path=str(root), train="images/val", val="images/val")
    path = root / "data.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_numeric_stems_become_coco_ids_in_json_and_ground_truth(checkpoint, coco_named, tmp_path, capsys):
    rc, out, _ = run_cli(
        [
            "val",
            "--weights",
            checkpoint,
            "--data",
            coco_named,
            "--img",
            "64",
            "--batch-size",
            "4",
            "--workers",
            "0",
            "--no-plots",
            "--no-diagnose",
            "--conf-thres",
            "0.0001",
            "--coco-eval",
            "--project",
            tmp_path,
        ],
        capsys,
    )
    assert rc == 0
    dets = json.loads((tmp_path / "exp" / f"{checkpoint.stem}_predictions.json").read_text())
    assert dets and {d["image_id"] for d in dets} <= set(COCO_IDS)
    assert all(type(d["image_id"]) is int for d in dets)
    gt = yolo_to_coco(str(coco_named), split="val")
    assert sorted(im["id"] for im in gt["images"]) == COCO_IDS
    assert {a["image_id"] for a in gt["annotations"]} <= set(COCO_IDS)
    assert out.count("Average Precision  (AP) @[") == 6  # pycocotools matched the ids


def test_id_rule_falls_back_to_1_to_n_only_when_it_must():
    assert coco_image_id_list(["a/000000000139.jpg", "b/42.png"]) == [139, 42]
    assert coco_image_id_list(["a/cat.jpg", "a/dog.jpg"]) == ["cat", "dog"]
    assert coco_image_id_list(["a/1.jpg", "b/1.jpg"]) == [1, 2]  # the same stem twice
    assert coco_image_id_list(["a/7.jpg", "a/dog.jpg"]) == [1, 2]  # pycocotools cannot sort int with str
