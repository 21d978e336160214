"""YOLOv7 family: activation args, shipped configs, RepConv / implicit fusing, the deploy layout,
the `modyolo reparam` CLI, ONNX without RepConv branches, and bad input (pickles, unknown modules)."""

import copy
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from modyolo.cli import main
from modyolo.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from modyolo.nn.blocks.yolov7 import RepConv
from modyolo.nn.blocks.yolov7_heads import IAuxDetect, IDetect
from modyolo.nn.graph import load_model_yaml
from modyolo.nn.head import Detect
from modyolo.nn.model import DetectionModel
from modyolo.nn.row import ModelConfigError
from modyolo.nn.v7_deploy import to_deploy_layout


def small(name: str, **overrides) -> dict:
    cfg, _ = load_model_yaml(name)
    cfg = copy.deepcopy(cfg)
    cfg.update({"width_multiple": 0.125, "nc": 3, **overrides})
    return cfg


@torch.no_grad()
def perturb(model: nn.Module, seed: int = 0) -> nn.Module:
    """Weights, BN statistics and implicit layers away from their initial values."""
    g = torch.Generator().manual_seed(seed)
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if not t.is_floating_point() or "anchor" in name or name.endswith("stride"):
            continue
        if name.endswith("running_var"):
            t.copy_(torch.rand(t.shape, generator=g) + 0.5)
        else:
            t.add_(0.05 * torch.randn(t.shape, generator=g))
    return model


# -- the YAML language ---------------------------------------------------------------------------
def yaml_with_rows(tmp_path, rows: str, extra: str = ""):
    p = tmp_path / "v7.yaml"
    p.write_text(f"nc: 2\nwidth_multiple: 0.25\n{extra}\nbackbone:\n  [{rows}]\nhead: []\n")
    return p


def test_activation_written_as_an_arg_is_parsed_not_evaluated(tmp_path):
    rows = (
        "[-1, 1, Conv, [32, 3, 2, None, 1, nn.LeakyReLU(0.1)]], [-1, 1, Conv, [32, 3, 1, None, 1, nn.SiLU()]],"
        " [-1, 1, Conv, [32, 1, 1, None, 1, nn.ReLU()]], [-1, 1, RepConv, [32, 3, 1, None, 1, nn.LeakyReLU(0.2)]]"
    )
    model = DetectionModel(yaml_with_rows(tmp_path, rows))
    act0, act1, act2, act3 = (model.model[i].act for i in range(4))
    assert isinstance(act0, nn.LeakyReLU) and act0.negative_slope == 0.1
    assert isinstance(act1, nn.SiLU) and isinstance(act2, nn.ReLU)
    assert isinstance(act3, nn.LeakyReLU) and act3.negative_slope == 0.2
    assert model.model[0].conv.dilation == (1, 1)  # the act took yolov7's 6th slot, not dilation


def test_unknown_activation_and_code_in_an_activation_arg_are_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelConfigError, match=r"layer 0 \(Conv\).*activation.*LeakyRelu"):
        DetectionModel(yaml_with_rows(tmp_path, "[-1, 1, Conv, [32, 3, 2, None, 1, nn.LeakyRelu(0.1)]]"))
    with pytest.raises(ModelConfigError, match="never evaluates"):
        DetectionModel(yaml_with_rows(tmp_path, "[-1, 1, Conv, [32, 3, 2, None, 1, \"nn.ReLU(open('PWNED','w'))\"]]"))
    assert not (tmp_path / "PWNED").exists()


def test_unknown_yolov7_module_suggests_a_name_and_segment_is_out_of_scope(tmp_path):
    with pytest.raises(ModelConfigError, match=r"unknown module 'IBin'.*did you mean 'IDetect'"):
        DetectionModel(yaml_with_rows(tmp_path, "[-1, 1, Conv, [32, 3, 2]], [[0], 1, IBin, [nc, 3]]"))
    with pytest.raises(ModelConfigError, match=r"unknown module 'RepConv_OREPA'; did you mean 'RepConv'"):
        DetectionModel(yaml_with_rows(tmp_path, "[-1, 1, Conv, [32, 3, 2]], [-1, 1, RepConv_OREPA, [32, 3, 1]]"))
    with pytest.raises(ModelConfigError, match=r"layer 1 \(Segment\).*out of scope.*Detect"):
        DetectionModel(yaml_with_rows(tmp_path, "[-1, 1, Conv, [32, 3, 2]], [[0], 1, Segment, [nc, 3, 32, 64]]"))


# -- shipped configs -------------------------------------------------------------------------------
@pytest.mark.parametrize("name,expected", [("yolov7-tiny.yaml", 6_228_762), ("yolov7.yaml", 37_622_682)])
def test_shipped_configs_have_yolov7s_parameter_counts(name, expected):
    """The counts yolov7's own Model reports for cfg/training/<name> at nc=80 (the issue's figures;
    tests/nn/test_yolov7_parity.py recomputes them with yolov7's code when it is available)."""
    model = DetectionModel(name)
    assert sum(p.numel() for p in model.parameters()) == expected
    assert isinstance(model.head, IDetect) and model.stride.tolist() == [8, 16, 32]


@pytest.mark.parametrize("name", ["yolov7-resnet50.yaml", "yolov7-tiny-mobilenetv2.yaml"])
def test_backbone_swaps_under_the_yolov7_head(name):
    model = DetectionModel(small(name, width_multiple=0.25))
    assert isinstance(model.head, IDetect) and model.stride.tolist() == [8, 16, 32]
    model.train()
    out = model(torch.rand(1, 3, 64, 64))
    assert [o.shape[2:4] for o in out] == [(8, 8), (4, 4), (2, 2)]


# -- re-parameterisation ---------------------------------------------------------------------------
@pytest.mark.parametrize("c1,c2,s,g", [(16, 16, 1, 1), (16, 32, 1, 1), (16, 16, 2, 1), (16, 16, 1, 4)])
def test_repconv_fuses_into_one_conv_with_the_same_output(c1, c2, s, g):
    torch.manual_seed(0)
    m = perturb(RepConv(c1, c2, 3, s, None, g))
    assert (m.rbr_identity is not None) == (c1 == c2 and s == 1)
    m.eval()
    x = torch.randn(2, c1, 12, 12)
    with torch.no_grad():
        ref = m(x)
        m.fuse()
        out = m(x)
    assert not hasattr(m, "rbr_dense") and not hasattr(m, "rbr_1x1") and m.rbr_identity is None
    assert isinstance(m.rbr_reparam, nn.Conv2d) and m.rbr_reparam.kernel_size == (3, 3)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["yolov7-tiny.yaml", "yolov7.yaml"])
def test_fused_model_agrees_with_unfused(name):
    torch.manual_seed(0)
    model = perturb(DetectionModel(small(name))).eval()
    x = torch.rand(2, 3, 96, 64)
    with torch.no_grad():
        ref = model(x)[0]
        model.fuse()
        out = model(x)[0]
    assert model.head.ia is None and model.head.im is None
    assert not any(isinstance(m, RepConv) and hasattr(m, "rbr_dense") for m in model.modules())
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


def test_deploy_layout_of_yolov7_has_the_same_outputs():
    torch.manual_seed(0)
    model = perturb(DetectionModel(small("yolov7.yaml"))).eval()
    deploy = to_deploy_layout(model)
    assert type(deploy.head) is Detect and len(deploy.model) == len(model.model)
    assert not any(k.split(".")[-2] in {"ia", "im"} or ".ia." in k or ".im." in k for k in deploy.state_dict())
    assert deploy.yaml["head"][-1][2] == "Detect"
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        ref = model(x)[0]
        torch.testing.assert_close(deploy(x)[0], ref, atol=1e-4, rtol=1e-4)
        deploy.fuse()
        torch.testing.assert_close(deploy(x)[0], ref, atol=1e-4, rtol=1e-4)
    # the deploy YAML rebuilds the same network: the state_dict loads strictly
    DetectionModel(deploy.yaml).load_state_dict(to_deploy_layout(model).state_dict(), strict=True)


AUX_YAML = """
nc: 3
anchors:
  - [4,5, 8,10, 13,16]
  - [12,16, 19,36, 40,28]
  - [36,75, 76,55, 72,146]
  - [142,110, 192,243, 459,401]
backbone:
  [[-1, 1, ReOrg, []],
   [-1, 1, Conv, [16, 3, 1]],
   [-1, 1, DownC, [32]],
   [-1, 1, DownC, [32]],
   [-1, 1, DownC, [32]],
   [-1, 1, DownC, [32]],
   [-1, 1, DownC, [32]],
  ]
head:
  [[-1, 1, SPPCSPC, [32]],
   [3, 1, Conv, [16, 3, 1]],
   [4, 1, Conv, [16, 3, 1]],
   [5, 1, Conv, [16, 3, 1]],
   [7, 1, Conv, [16, 3, 1]],
   [3, 1, Conv, [16, 3, 1]],
   [4, 1, Conv, [16, 3, 1]],
   [5, 1, Conv, [16, 3, 1]],
   [7, 1, Conv, [16, 3, 1]],
   [[8, 9, 10, 11, 12, 13, 14, 15], 1, IAuxDetect, [nc, anchors]],
  ]
"""


def test_aux_head_trains_on_lead_and_aux_maps_and_converts_to_deploy(tmp_path):
    p = tmp_path / "p6-aux.yaml"
    p.write_text(AUX_YAML)
    torch.manual_seed(0)
    model = perturb(DetectionModel(p))
    assert isinstance(model.head, IAuxDetect) and model.stride.tolist() == [8, 16, 32, 64]
    model.train()
    maps = model(torch.rand(1, 3, 128, 128))
    assert len(maps) == 8 and maps[0].shape == maps[4].shape == (1, 3, 16, 16, 8)
    model.eval()
    x = torch.rand(2, 3, 128, 128)
    deploy = to_deploy_layout(model)
    assert type(deploy.head) is Detect and len(deploy.model) == len(model.model) - 4  # aux rows gone
    assert deploy.yaml["head"][-1][0] == [8, 9, 10, 11]
    with torch.no_grad():
        torch.testing.assert_close(deploy(x)[0], model(x)[0], atol=1e-4, rtol=1e-4)


def test_deploy_state_dict_has_yolov7s_keys_and_loads_strictly_both_ways(tmp_path, tiny_cfg):
    """yolov7's Detect (its cfg/deploy head) stores anchors, anchor_grid (pixels, [nl,1,na,1,1,2])
    and m.*; the converted state_dict carries exactly those, a state_dict with them loads strictly
    into a model built from the deploy YAML and comes back key for key; yolov5's has no anchor_grid
    and keeps having none."""
    torch.manual_seed(0)
    model = perturb(DetectionModel(small("yolov7-tiny.yaml"))).eval()
    deploy = to_deploy_layout(model)
    sd = deploy.state_dict()
    n, head = len(deploy.model) - 1, deploy.head
    grid = sd[f"model.{n}.anchor_grid"]
    assert grid.shape == (head.nl, 1, head.na, 1, 1, 2)
    torch.testing.assert_close(grid.view(head.nl, head.na, 2), head.anchors * head.stride.view(-1, 1, 1))
    assert {k.split(".", 2)[2] for k in sd if k.startswith(f"model.{n}.")} == {
        "anchors",
        "anchor_grid",
        *(f"m.{i}.{p}" for i in range(head.nl) for p in ("weight", "bias")),
    }
    # our state_dict -> a fresh deploy-layout model (what yolov7's deploy Model also accepts: same keys)
    fresh = DetectionModel(deploy.yaml).eval()
    fresh.load_state_dict(sd, strict=True)
    assert list(fresh.state_dict()) == list(sd)  # round trip: anchor_grid written back
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x)[0], model(x)[0], atol=1e-4, rtol=1e-4)
    # through a checkpoint file and back
    path = save_checkpoint(tmp_path / "deploy.pt", model=deploy, epoch=-1, model_yaml=deploy.yaml)
    again = DetectionModel(load_checkpoint(path)["model_yaml"])
    again.load_state_dict(load_checkpoint(path)["model"], strict=True)
    assert f"model.{n}.anchor_grid" in again.state_dict()
    # an anchor_grid that disagrees with the anchors is refused, naming the key
    bad = dict(sd)
    bad[f"model.{n}.anchor_grid"] = grid * 2
    with pytest.raises(RuntimeError, match=r"anchor_grid.*disagrees"):
        DetectionModel(deploy.yaml).load_state_dict(bad, strict=True)
    # yolov5's Detect state_dicts have no anchor_grid: unchanged, both ways
    v5 = DetectionModel(tiny_cfg())
    v5_sd = v5.state_dict()
    assert not any(k.endswith("anchor_grid") for k in v5_sd)
    DetectionModel(tiny_cfg()).load_state_dict(v5_sd, strict=True)
    without = {k: v for k, v in sd.items() if not k.endswith("anchor_grid")}
    plain = DetectionModel(deploy.yaml)
    plain.load_state_dict(without, strict=True)
    assert list(plain.state_dict()) == list(without)
    # anchors changed after the build (autoanchor, the DDP broadcast; both call reset_grids):
    # the training head's anchor_grid follows, and a stale copy does not stop the conversion
    h7 = model.head
    with torch.no_grad():
        h7.anchors.mul_(1.25)
    h7.reset_grids()
    torch.testing.assert_close(h7.anchor_grid.view(h7.nl, h7.na, 2), h7.anchors * h7.stride.view(-1, 1, 1))
    with torch.no_grad():
        h7.anchor_grid.zero_()
    converted = to_deploy_layout(model).state_dict()[f"model.{n}.anchor_grid"]
    torch.testing.assert_close(converted.view(h7.nl, h7.na, 2), h7.anchors * h7.stride.view(-1, 1, 1))


def test_deploy_layout_refuses_a_non_yolov7_head(tiny_cfg):
    with pytest.raises(ValueError, match="IDetect"):
        to_deploy_layout(DetectionModel(tiny_cfg()))


# -- CLI: reparam, then export to ONNX without RepConv branches --------------------------------------
def test_reparam_cli_then_onnx_export_has_no_repconv_branches(tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    torch.manual_seed(0)
    model = perturb(DetectionModel(small("yolov7.yaml")))
    weights = save_checkpoint(tmp_path / "best.pt", model=model, epoch=0, names=["a", "b", "c"])
    assert main(["reparam", "--weights", str(weights), "--img", "64"]) == 0
    out = tmp_path / "best_deploy.pt"
    assert "deploy layout (IDetect -> Detect)" in capsys.readouterr().out
    ckpt = load_checkpoint(out)
    assert ckpt["model_yaml"]["head"][-1][2] == "Detect" and ckpt["names"] == ["a", "b", "c"]
    assert main(["export", "--weights", str(out), "--include", "onnx", "--img", "64"]) == 0
    graph = onnx.load(str(tmp_path / "best_deploy.onnx")).graph
    names = [n.name for n in graph.node] + [i.name for i in graph.initializer]
    assert not any(b in n for n in names for b in ("rbr_dense", "rbr_1x1", "rbr_identity", ".ia.", ".im.")), names
    n_conv = sum(n.op_type == "Conv" for n in graph.node)
    n_rows = sum(isinstance(m, nn.Conv2d) for m in DetectionModel(ckpt["model_yaml"]).fuse().modules())
    assert n_conv == n_rows  # one Conv per RepConv, no parallel branches left


def test_reparam_cli_refuses_a_yolov5_model(tmp_path, tiny_cfg, capsys):
    weights = save_checkpoint(tmp_path / "v5.pt", model=DetectionModel(tiny_cfg()), epoch=0)
    assert main(["reparam", "--weights", str(weights)]) == 1
    assert "IDetect" in capsys.readouterr().err


# -- a pickled yolov7 checkpoint ---------------------------------------------------------------------
def test_pickled_yolov7_checkpoint_is_refused_like_a_yolov5_one(tmp_path, capsys):
    """yolov7's train.py pickles {'model': models.yolo.Model, ...}; a stand-in module of that name
    writes the same kind of file without needing yolov7's code."""
    pkg = tmp_path / "fake" / "models"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "yolo.py").write_text("import torch\nclass Model(torch.nn.Module):\n    pass\n")
    pt = tmp_path / "yolov7.pt"
    script = textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {str(tmp_path / "fake")!r})
        from models.yolo import Model
        torch.save({{'epoch': -1, 'model': Model()}}, {str(pt)!r})
    """)
    subprocess.run([sys.executable, "-c", script], check=True)
    with pytest.raises(CheckpointError, match="pickled yolov5 model.*state_dict"):
        load_checkpoint(pt)
    assert main(["export", "--weights", str(pt), "--cfg", "yolov7-tiny.yaml"]) == 1
    err = capsys.readouterr().err
    assert "pickled yolov5 model" in err and "state_dict" in err
