"""Strategy flags on a YOLOv7 model, through the command line: a staged --recipe (freeze, then
unfreeze from the previous best) and DDP with 2 CPU processes (gloo), both with yolov7's own hyp
(OTA loss, paste_in). `modyolo tune` on yolov7-tiny is in tests/tools/test_tune.py; SAM, VFL,
freeze and cache in the training tests."""

from __future__ import annotations

import copy
import os
import socket
import subprocess
import sys

import pytest
import torch
import yaml

from modyolo.cli import main as cli_main
from modyolo.data.synthetic import make_shapes_dataset
from modyolo.engine.checkpoint import load_checkpoint, save_checkpoint
from modyolo.nn.blocks.yolov7_heads import IDetect
from modyolo.nn.graph import load_model_yaml
from modyolo.nn.model import DetectionModel


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    return str(make_shapes_dataset(tmp_path_factory.mktemp("shapes"), n_train=8, n_val=4, seed=0, img_size=(96, 160)))


@pytest.fixture
def v7_tiny(tmp_path) -> str:
    cfg, _ = load_model_yaml("yolov7-tiny.yaml")
    cfg = copy.deepcopy(cfg)
    cfg["width_multiple"] = 0.125
    cfg.pop("yaml_file", None)
    path = tmp_path / "v7-tiny.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return str(path)


def test_recipe_trains_yolov7_tiny_frozen_then_unfrozen(data, v7_tiny, tmp_path):
    torch.manual_seed(0)
    start = DetectionModel(v7_tiny)  # known starting weights, so stage 1 can be checked against them
    init = save_checkpoint(tmp_path / "init.pt", model=start, epoch=-1, model_yaml=start.yaml)
    recipe = tmp_path / "stages.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "data": data,
                "cfg": v7_tiny,
                "weights": str(init),
                "hyp": "hyp.scratch.tiny.yaml",
                "imgsz": 64,
                "batch_size": 4,
                "workers": 0,
                "noplots": True,
                "stages": [
                    {"name": "frozen", "epochs": 1, "freeze": "0-28"},  # the backbone (rows 0-28)
                    {"name": "all", "epochs": 1, "freeze": ""},
                ],
            }
        )
    )
    project = tmp_path / "runs"
    code = cli_main(
        ["train", "--recipe", str(recipe), "--project", str(project), "--name", "r", "--quiet", "--device", "cpu"]
    )
    assert code == 0
    frozen, unfrozen = project / "r" / "frozen", project / "r" / "all"
    assert "frozen/weights/best.pt" in (unfrozen / "args.yaml").read_text()  # stage 2 starts from stage 1
    init_sd = start.state_dict()
    first = load_checkpoint(frozen / "weights" / "last.pt")
    last = load_checkpoint(unfrozen / "weights" / "last.pt")
    assert first["model_yaml"]["head"][-1][2] == "IDetect"
    # the frozen backbone did not move in stage 1, the neck did; stage 2 moved the backbone too
    for key in ("model.0.conv.weight", "model.28.conv.weight"):
        torch.testing.assert_close(first["model"][key].float(), init_sd[key].float())
        assert not torch.equal(last["model"][key].float(), first["model"][key].float())
    neck = "model.29.conv.weight"
    assert not torch.equal(first["model"][neck].float(), init_sd[neck].float())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_ddp_trains_yolov7_tiny_with_its_recipe(data, v7_tiny, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1"]
    cmd += ["--master_port", str(free_port()), "-m", "modyolo", "train", "--data", data, "--cfg", v7_tiny]
    cmd += ["--hyp", "hyp.scratch.tiny.yaml", "--epochs", "1", "--img", "64", "--batch-size", "8"]
    cmd += ["--workers", "0", "--project", str(tmp_path / "runs"), "--name", "ddp", "--quiet", "--noplots"]
    cmd += ["--device", "cpu"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["ddp"]
    assert proc.stdout.count("results saved to") == 1, "only rank 0 may print the summary"
    ckpt = load_checkpoint(tmp_path / "runs" / "ddp" / "weights" / "last.pt")
    assert not any(k.startswith("module.") for k in ckpt["model"])
    model = DetectionModel(ckpt["model_yaml"])
    model.load_state_dict(ckpt["model"], strict=True)
    assert isinstance(model.head, IDetect)
    head = model.head  # anchor_grid (yolov7's key) agrees with the anchors autoanchor left
    torch.testing.assert_close(head.anchor_grid.view(head.nl, head.na, 2), head.anchors * head.stride.view(-1, 1, 1))
