"""Parity with yolov7's own code (github.com/WongKinYiu/yolov7, GPL: run, never copied).

1. Always: a reference made by yolov7's code (benchmarks/v7_parity_reference.py ->
   tests/nn/data/yolov7_tiny_parity.npz: yolov7-tiny at nc=2, width 0.125) loads into modyolo's
   shipped yolov7-tiny.yaml with strict=True and gives the same outputs, unfused and fused.
2. When $YOLOV7_REPO points at a yolov7 checkout: every YAML in its cfg/training and cfg/deploy
   builds as written with the parameter count yolov7's Model reports, and the full-size
   yolov7-tiny / yolov7 state_dicts from its Model load strictly with equal outputs; a converted
   deploy-layout state_dict loads strictly into its cfg/deploy Model and its state_dict back.
"""

import contextlib
import io
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from modyolo.nn.graph import load_model_yaml
from modyolo.nn.model import DetectionModel

REFERENCE = Path(__file__).parent / "data" / "yolov7_tiny_parity.npz"
REPO = os.environ.get("YOLOV7_REPO")
needs_repo = pytest.mark.skipif(
    not REPO or not Path(REPO, "models", "yolo.py").is_file(),
    reason="set YOLOV7_REPO to a checkout of github.com/WongKinYiu/yolov7 to compare with its own code",
)


@pytest.mark.skipif(
    not REFERENCE.is_file(),
    reason=f"{REFERENCE.name} absent: run YOLOV7_REPO=... python benchmarks/v7_parity_reference.py to make it",
)
def test_yolov7_state_dict_loads_strictly_and_outputs_agree():
    data = np.load(REFERENCE)
    meta = json.loads(str(data["meta"]))
    state = {
        k[3:]: torch.from_numpy(data[k]).float() if data[k].dtype == np.float16 else torch.from_numpy(data[k])
        for k in data.files
        if k.startswith("sd/")
    }
    cfg, _ = load_model_yaml("yolov7-tiny.yaml")  # ours, with `activation:` instead of per-row args
    cfg.update(nc=meta["nc"], width_multiple=meta["width_multiple"])
    model = DetectionModel(cfg)
    model.load_state_dict(state, strict=True)
    model.eval()
    x = torch.from_numpy(data["x"])
    with torch.no_grad():
        pred = model(x)[0]
        torch.testing.assert_close(pred, torch.from_numpy(data["pred"]), atol=1e-4, rtol=1e-4)
        model.fuse()
        torch.testing.assert_close(model(x)[0], torch.from_numpy(data["pred_fused"]), atol=1e-3, rtol=1e-4)


@pytest.fixture(scope="module")
def yolov7_model():
    sys.path.insert(0, str(Path(REPO).resolve()))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from models.yolo import Model
    finally:
        sys.path.pop(0)

    def build(cfg):
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Model(cfg)

    return build


def _yamls(kind: str) -> list[str]:
    if not REPO:
        return []
    return sorted(p.name for p in Path(REPO, "cfg", kind).glob("*.yaml"))


@needs_repo
@pytest.mark.parametrize(
    "path", [f"training/{n}" for n in _yamls("training")] + [f"deploy/{n}" for n in _yamls("deploy")]
)
def test_every_yolov7_yaml_builds_with_its_parameter_count(path, yolov7_model):
    file = Path(REPO, "cfg", path)
    theirs = sum(p.numel() for p in yolov7_model(str(file)).parameters())
    ours = DetectionModel(file)
    assert sum(p.numel() for p in ours.parameters()) == theirs


@needs_repo
@pytest.mark.parametrize("name", ["yolov7-tiny.yaml", "yolov7.yaml"])
def test_full_size_state_dicts_from_yolov7_load_into_shipped_configs(name, yolov7_model):
    torch.manual_seed(0)
    ref = yolov7_model(str(Path(REPO, "cfg", "training", name)))
    g = torch.Generator().manual_seed(1)
    state = {}
    for k, v in ref.state_dict().items():
        if k.endswith("running_var"):
            v = torch.rand(v.shape, generator=g) + 0.5
        elif k.endswith("running_mean"):
            v = torch.rand(v.shape, generator=g) - 0.5
        state[k] = v
    ref.load_state_dict(state)
    ours = DetectionModel(name)
    ours.load_state_dict(state, strict=True)
    ref.eval(), ours.eval()
    x = torch.rand(1, 3, 128, 160)
    with torch.no_grad():
        torch.testing.assert_close(ours(x)[0], ref(x)[0], atol=1e-4, rtol=1e-4)
        with contextlib.redirect_stdout(io.StringIO()):
            ref.fuse()
        ours.fuse()
        torch.testing.assert_close(ours(x)[0], ref(x)[0], atol=1e-3, rtol=1e-4)


@needs_repo
def test_converted_deploy_state_dict_loads_into_yolov7s_deploy_model_and_back(yolov7_model):
    """modyolo's deploy conversion -> yolov7's own Model built from cfg/deploy/yolov7-tiny.yaml
    (strict, anchor_grid included) with the same outputs; and yolov7's deploy state_dict -> modyolo's
    model of that deploy YAML (strict), key for key."""
    from modyolo.nn.v7_deploy import to_deploy_layout

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(2)
    model = DetectionModel("yolov7-tiny.yaml")
    with torch.no_grad():
        for k, v in model.state_dict().items():  # away from the initial values, BN statistics too
            if k.endswith("running_var"):
                v.copy_(torch.rand(v.shape, generator=g) + 0.5)
            elif v.is_floating_point() and "anchor" not in k:
                v.add_(0.05 * torch.randn(v.shape, generator=g))
    model.eval()
    deploy = to_deploy_layout(model)
    theirs = yolov7_model(str(Path(REPO, "cfg", "deploy", "yolov7-tiny.yaml")))
    theirs.load_state_dict(deploy.state_dict(), strict=True)
    theirs.eval()
    x = torch.rand(1, 3, 128, 160)
    with torch.no_grad():
        torch.testing.assert_close(theirs(x)[0], model(x)[0], atol=1e-4, rtol=1e-4)
    ours = DetectionModel(Path(REPO, "cfg", "deploy", "yolov7-tiny.yaml")).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(ours(x)[0], theirs(x)[0], atol=1e-4, rtol=1e-4)
