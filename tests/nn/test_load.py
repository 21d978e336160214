"""Checkpoint -> model in one place (``modyolo.nn.load``), used by inference and export (issue 13)."""

from __future__ import annotations

import pytest
import torch

from modyolo.deploy.prepare import load_model as export_load_model
from modyolo.engine.checkpoint import save_checkpoint
from modyolo.inference.predictor import load_model as predictor_load_model
from modyolo.nn.load import load_detection_model
from modyolo.nn.model import DetectionModel
from modyolo.weights_io import CheckpointError, names_list, nc_of_state


def _model(tiny_cfg, seed: int = 0) -> DetectionModel:
    torch.manual_seed(seed)
    return DetectionModel(tiny_cfg()).eval()


def test_checkpoint_loads_the_ema_weights_and_names_for_inference_and_export(tiny_cfg, tmp_path):
    raw, ema = _model(tiny_cfg, 0), _model(tiny_cfg, 1)
    path = save_checkpoint(
        tmp_path / "last.pt",
        model=raw,
        ema={"model": ema.state_dict(), "updates": 3, "decay": 0.9999, "tau": 2000},
        epoch=4,
        names={0: "a", 1: "b", 2: "c"},
        model_yaml=raw.yaml,
        train_args={"imgsz": 64},
    )
    model, meta = load_detection_model(path)
    assert meta == {"format": "checkpoint", "path": str(path), "imgsz": 64, "has_ema": True, "epoch": 4}
    assert model.names == ["a", "b", "c"] and not model.training and not model.fused
    for k, v in ema.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    raw_model, _ = load_detection_model(path, use_ema=False)
    assert torch.equal(raw_model.state_dict()["model.0.conv.weight"], raw.state_dict()["model.0.conv.weight"])
    # the exporter and the predictor build the same model from the same function
    exported = export_load_model(path)
    predicted, names, pmeta = predictor_load_model(path, fuse=False)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(exported(x)[0], model(x)[0]) and torch.equal(predicted(x)[0], model(x)[0])
    assert names == ["a", "b", "c"] and pmeta["stride"] == 32 and pmeta["has_ema"]


def test_bare_state_dict_takes_its_class_count_from_the_head(tiny_cfg, tmp_path):
    model = _model(tiny_cfg)  # nc = 3
    path = tmp_path / "bare.pt"
    torch.save(model.state_dict(), path)
    assert nc_of_state(model.state_dict()) == 3
    with pytest.raises(CheckpointError, match=r"bare state_dict without its model YAML.*--cfg"):
        load_detection_model(path)
    yaml80 = tiny_cfg(nc=80)  # a YAML that says nc: 80 still loads the 3-class weights
    loaded, meta = load_detection_model(path, cfg=yaml80)
    assert loaded.nc == 3 and loaded.names == ["0", "1", "2"] and meta["format"] == "state_dict"
    wrong = tiny_cfg(width_multiple=0.25)
    with pytest.raises(CheckpointError, match=r"weights do not fit the model YAML .*pass the YAML"):
        load_detection_model(path, cfg=wrong)


def test_names_list_accepts_lists_dicts_and_pads():
    assert names_list(None, 2) == ["0", "1"]
    assert names_list({"1": "b", 0: "a"}, 2) == ["a", "b"]
    assert names_list(["a"], 3) == ["a", "class1", "class2"]
    assert names_list(["a", "b", "c"], 2) == ["a", "b"]
