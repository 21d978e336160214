"""``modyolo val`` on a checkpoint written by ``modyolo train``; bad checkpoints; zero diagnosis."""

from __future__ import annotations

import json
import shutil
import sys
import types

import torch
import yaml

from tiny_run import run_cli

COMMON = ["--img", "64", "--batch-size", "4", "--workers", "0", "--no-plots"]


def test_val_prints_table_speed_and_writes_outputs(checkpoint, shapes, tmp_path, capsys):
    rc, out, _ = run_cli(
        [
            "val",
            "--weights",
            checkpoint,
            "--data",
            shapes,
            *COMMON,
            "--save-txt",
            "--save-conf",
            "--coco-eval",
            "--project",
            tmp_path,
            "--no-diagnose",
        ],
        capsys,
    )
    assert rc == 0
    assert "Class     Images  Instances          P          R      mAP50   mAP50-95" in out
    assert "\n                   all          4" in out
    assert "ms pre-process" in out and "ms inference" in out and "ms NMS per image" in out
    assert out.count("Average Precision  (AP) @[") == 6 and out.count("Average Recall     (AR) @[") == 6
    run = tmp_path / "exp"
    labels = sorted(p.stem for p in (run / "labels").glob("*.txt"))
    assert labels == [f"val_{i:05d}" for i in range(4)]
    rows = [line.split() for p in (run / "labels").glob("*.txt") for line in p.read_text().splitlines()]
    assert rows and all(len(r) == 6 and 0 <= int(r[0]) < 5 for r in rows)  # cls cx cy w h conf
    dets = json.loads((run / f"{checkpoint.stem}_predictions.json").read_text())
    assert dets and {d["image_id"] for d in dets} <= {f"val_{i:05d}" for i in range(4)}  # yolov5: the stem
    assert all(0 <= d["category_id"] < 5 and len(d["bbox"]) == 4 for d in dets)


def test_val_task_speed_and_increment(checkpoint, shapes, tmp_path, capsys):
    for _ in range(2):
        rc, out, _ = run_cli(
            [
                "val",
                "--weights",
                checkpoint,
                "--data",
                shapes,
                *COMMON,
                "--task",
                "speed",
                "--project",
                tmp_path,
                "--no-diagnose",
            ],
            capsys,
        )
        assert rc == 0 and "ms NMS per image" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp", "exp2"]


def test_not_a_checkpoint_is_one_line_error(tmp_path, shapes, capsys):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00definitely not a checkpoint")
    rc, out, err = run_cli(["val", "--weights", garbage, "--data", shapes, "--project", tmp_path], capsys)
    assert rc == 1 and err.count("\n") == 1 and err.startswith("modyolo val: error:") and "garbage.pt" in err
    assert "not a PyTorch checkpoint" in err


def test_pickled_yolov5_model_is_refused_without_unpickling(tmp_path, shapes, capsys, monkeypatch):
    # a stand-in for yolov5's pickled checkpoints: an object of class models.yolo.Model
    models, yolo = types.ModuleType("models"), types.ModuleType("models.yolo")
    executed = []

    class Model(torch.nn.Module):
        def __setstate__(self, state):  # would run if the file were unpickled
            executed.append(True)
            super().__setstate__(state)

    Model.__module__, Model.__qualname__ = "models.yolo", "Model"
    yolo.Model, models.yolo = Model, yolo
    monkeypatch.setitem(sys.modules, "models", models)
    monkeypatch.setitem(sys.modules, "models.yolo", yolo)
    path = tmp_path / "yolov5s.pt"
    torch.save({"model": Model(), "epoch": -1}, path)
    rc, _, err = run_cli(["val", "--weights", path, "--data", shapes, "--project", tmp_path], capsys)
    assert rc == 1 and err.count("\n") == 1 and not executed
    assert "pickled yolov5 model" in err and "state_dict" in err


def test_diagnosis_names_nan_batchnorm(checkpoint, shapes, tmp_path, capsys):
    ckpt = torch.load(checkpoint, weights_only=True)
    key = "model.2.cv1.bn.running_var"
    ckpt["ema"]["model"][key][0] = float("nan")
    bad = tmp_path / "nan_bn.pt"
    torch.save(ckpt, bad)
    rc, out, _ = run_cli(["val", "--weights", bad, "--data", shapes, *COMMON, "--project", tmp_path], capsys)
    assert rc == 0
    assert "[FAIL] weights finite: non-finite values in model.2.cv1.bn.running_var" in out
    cause = out.split("Likely cause:")[1]
    assert "NaN/inf in BatchNorm running statistics (model.2.cv1.bn.running_var)" in cause
    assert "raw vs EMA weights" in out  # both weight sets were evaluated


def test_diagnosis_names_class_ids_beyond_model_nc(checkpoint, shapes, tmp_path, capsys):
    # the same images, labelled with a 10-class scheme in which our 5 classes are ids 5..9
    root = tmp_path / "shifted"
    shutil.copytree(shapes.parent / "images" / "val", root / "images" / "val")
    (root / "labels" / "val").mkdir(parents=True)
    for f in (shapes.parent / "labels" / "val").glob("*.txt"):
        rows = [line.split() for line in f.read_text().splitlines()]
        (root / "labels" / "val" / f.name).write_text(
            "".join(" ".join([str(int(r[0]) + 5), *r[1:]]) + "\n" for r in rows)
        )
    data = root / "data.yaml"
    data.write_text(
        yaml.safe_dump(
            {"path": str(root), "train": "images/val", "val": "images/val", "names": [f"c{i}" for i in range(10)]}
        )
    )
    rc, out, err = run_cli(["val", "--weights", checkpoint, "--data", data, *COMMON, "--project", tmp_path], capsys)
    assert rc == 0
    assert "WARNING: " in err and "has 5 classes but" in err  # warned up front (a log warning: stderr)
    assert "[FAIL] label class ids < model nc" in out
    cause = out.split("Likely cause:")[1]
    assert "100% of the labels use class ids" in cause and "5-class model" in cause and "--data" in cause


def test_yaml_weights_validate(shapes, tmp_path, capsys):
    from tiny_run import tiny_cfg

    cfg = tiny_cfg()
    cfg["nc"] = 5
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    rc, out, _ = run_cli(
        ["val", "--weights", path, "--data", shapes, *COMMON, "--project", tmp_path, "--no-diagnose"], capsys
    )
    assert rc == 0 and "all          4" in out


def test_val_augment_and_single_cls_coco(checkpoint, shapes, tmp_path, capsys):
    rc, out, _ = run_cli(
        [
            "val",
            "--weights",
            checkpoint,
            "--data",
            shapes,
            *COMMON,
            "--augment",
            "--single-cls",
            "--coco-eval",
            "--project",
            tmp_path,
            "--no-diagnose",
        ],
        capsys,
    )
    assert rc == 0 and "all          4" in out and out.count("Average Precision") == 6
