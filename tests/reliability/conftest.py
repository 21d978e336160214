"""Fixtures of the reliability suite: a tiny dataset, model YAML and checkpoints, made once per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from tests.reliability.cases import Env


@pytest.fixture(scope="session")
def base_inputs(tmp_path_factory) -> Path:
    """4 train / 2 val shapes images (nc=5), a yolov5n YAML at width 0.125, checkpoints for nc=5 and nc=2."""
    from modyolo.data.synthetic import make_shapes_dataset
    from modyolo.engine.checkpoint import save_checkpoint
    from modyolo.nn.graph import load_model_yaml
    from modyolo.nn.model import DetectionModel

    root = tmp_path_factory.mktemp("reliability_base")
    data = make_shapes_dataset(root / "ds", n_train=4, n_val=2, seed=0, img_size=(64, 96))
    names = list(yaml.safe_load(Path(data).read_text())["names"].values())
    cfg, _ = load_model_yaml("yolov5n.yaml")
    cfg.update(width_multiple=0.125, depth_multiple=0.33)
    cfg.pop("yaml_file", None)
    (root / "tiny.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    for nc, name in ((len(names), "tiny.pt"), (2, "tiny_nc2.pt")):
        model = DetectionModel(dict(cfg), nc=nc)
        save_checkpoint(root / name, model=model, epoch=0, names=names[:nc], model_yaml=model.yaml)
    return root


@pytest.fixture
def env(base_inputs, tmp_path, monkeypatch) -> Env:
    """A fresh copy of the inputs (``inp``) and an empty run folder (``work``, the cwd)."""
    inp, work = tmp_path / "inp", tmp_path / "work"
    shutil.copytree(base_inputs, inp)
    work.mkdir()
    monkeypatch.chdir(work)
    data = inp / "ds" / "shapes.yaml"
    text = data.read_text().replace(str(base_inputs), str(inp))
    data.write_text(text)
    return Env(inp=inp, work=work, data=data, cfg=inp / "tiny.yaml", ckpt=inp / "tiny.pt", ckpt_nc2=inp / "tiny_nc2.pt")
