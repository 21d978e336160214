"""The YAML language: scaling, routing, and the errors bad input must get."""

import textwrap

import pytest
import torch

from modyolo.nn.model import DetectionModel
from modyolo.nn.row import ModelConfigError, make_divisible

STEM = "[-1, 1, Conv, [32, 3, 2]]"


def write(tmp_path, text: str, name: str = "user.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def small_yaml(backbone: str, head: str = "[]", extra: str = "") -> str:
    return f"nc: 2\ndepth_multiple: 1.0\nwidth_multiple: 0.25\n{extra}\nbackbone:\n  {backbone}\nhead:\n  {head}\n"


def test_depth_and_width_scaling_follow_yolov5(tiny_cfg):
    model = DetectionModel(tiny_cfg(depth_multiple=0.33))
    c3 = model.model[4]  # [-1, 6, C3, [256]] -> round(6 * 0.33) = 2 bottlenecks
    assert len(c3.m) == 2
    assert model.report[4].channels == make_divisible(256 * 0.125, 8)
    assert model.report[0].channels == make_divisible(64 * 0.125, 8)
    assert model.head.m[0].out_channels == 3 * (3 + 5)  # the head's `no` is never width-scaled


def test_anchor_count_as_int_builds_placeholder_anchors(tiny_cfg):
    model = DetectionModel(tiny_cfg(anchors=3))
    assert model.head.anchors.shape == (3, 3, 2)


def test_forward_contract_train_and_eval(tiny_cfg):
    model = DetectionModel(tiny_cfg())
    x = torch.rand(2, 3, 64, 96)
    maps = model(x)
    assert [tuple(m.shape) for m in maps] == [(2, 3, 8, 12, 8), (2, 3, 4, 6, 8), (2, 3, 2, 3, 8)]
    model.eval()
    pred, raw = model(x)
    assert pred.shape == (2, 3 * (8 * 12 + 4 * 6 + 2 * 3), 8)
    assert torch.all((pred[..., 4:] >= 0) & (pred[..., 4:] <= 1))
    assert model.stride.tolist() == [8.0, 16.0, 32.0]


def test_fuse_keeps_outputs(tiny_cfg):
    model = DetectionModel(tiny_cfg()).eval()
    for m in model.modules():  # non-trivial BN statistics, so folding is really exercised
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        before = model(x)[0]
        after = model.fuse()(x)[0]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)


def test_activation_key_is_parsed_not_evaluated(tmp_path):
    cfg = small_yaml(f"[{STEM}]", extra="activation: nn.LeakyReLU(0.1)")
    model = DetectionModel(write(tmp_path, cfg))
    act = model.model[0].act
    assert isinstance(act, torch.nn.LeakyReLU) and act.negative_slope == 0.1


@pytest.mark.parametrize(
    "payload",
    [
        "__import__('os').system('touch PWNED')",
        "exec('import os')",
        "os.system",
    ],
)
def test_code_as_module_name_is_rejected_and_runs_nothing(tmp_path, monkeypatch, payload):
    monkeypatch.chdir(tmp_path)
    cfg = small_yaml(f'[{STEM}, [-1, 1, "{payload}", [16]]]')
    with pytest.raises(ModelConfigError, match=r"layer 1 .*unknown module"):
        DetectionModel(write(tmp_path, cfg))
    assert not (tmp_path / "PWNED").exists()


def test_code_as_arg_is_rejected(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = small_yaml(f"[{STEM}, [-1, 1, Conv, [\"__import__('os').system('touch PWNED')\", 3]]]")
    with pytest.raises(ModelConfigError, match=r"layer 1 \(Conv\).*never evaluates"):
        DetectionModel(write(tmp_path, cfg))
    assert not (tmp_path / "PWNED").exists()


def test_code_as_activation_is_rejected(tmp_path):
    cfg = small_yaml(f"[{STEM}]", extra="activation: __import__('os').getcwd()")
    with pytest.raises(ModelConfigError, match="activation"):
        DetectionModel(write(tmp_path, cfg))


def test_unknown_module_suggests_the_near_name(tmp_path):
    cfg = small_yaml(f"[{STEM}, [-1, 1, Convv, [16]]]")
    with pytest.raises(ModelConfigError, match=r"user.yaml.*did you mean 'Conv'"):
        DetectionModel(write(tmp_path, cfg))


def test_from_out_of_range(tmp_path):
    cfg = small_yaml(f"[{STEM}, [5, 1, Conv, [16]]]")
    with pytest.raises(ModelConfigError, match=r"layer 1 \(Conv\).*'from' 5"):
        DetectionModel(write(tmp_path, cfg))


def test_wrong_arg_count(tmp_path):
    cfg = small_yaml(f"[{STEM}, [-1, 1, SPPF, [64, 5, 3, 2, 1]]]")
    with pytest.raises(ModelConfigError, match=r"layer 1 \(SPPF\).*do not fit"):
        DetectionModel(write(tmp_path, cfg))


def test_wrong_arg_type(tmp_path):
    cfg = small_yaml(f"[{STEM}, [-1, 1, Conv, [sixteen]]]")
    with pytest.raises(ModelConfigError, match=r"layer 1 \(Conv\).*integer"):
        DetectionModel(write(tmp_path, cfg))


def test_missing_keys_and_bad_rows(tmp_path):
    with pytest.raises(ModelConfigError, match="missing key 'head'"):
        DetectionModel(write(tmp_path, "nc: 2\nbackbone: []\n"))
    with pytest.raises(ModelConfigError, match=r"layer 0 .*\[from, number, module, args\]"):
        DetectionModel(write(tmp_path, small_yaml("[[-1, Conv, [16]]]")))
    with pytest.raises(ModelConfigError, match="nc must be a positive integer"):
        DetectionModel(write(tmp_path, small_yaml(f"[{STEM}]").replace("nc: 2", "nc: two")))


def test_concat_of_mismatched_sizes_names_both_layers(tmp_path):
    rows = f"[{STEM}, [-1, 1, Conv, [32, 3, 2]], [[-1, 0], 1, Concat, [1]]]"
    with pytest.raises(ModelConfigError) as e:
        DetectionModel(write(tmp_path, small_yaml(rows)))
    msg = str(e.value)
    assert "layer 2 (Concat)" in msg and "layer 1 is 64x64 (stride 4)" in msg and "layer 0 is 128x128 (stride 2)" in msg


def test_detect_with_decreasing_strides_names_the_layers(tmp_path):
    rows = f"[{STEM}, [-1, 1, Conv, [32, 3, 2]], [-1, 1, Conv, [32, 3, 2]], [-1, 1, Conv, [32, 3, 2]]]"
    head = "[[[3, 2, 1], 1, Detect, [nc, anchors]]]"
    text = small_yaml(rows, head, extra="anchors: 3")
    with pytest.raises(ModelConfigError, match=r"increasing strides.*layer 3 at stride 16, layer 2 at stride 8"):
        DetectionModel(write(tmp_path, text))


def test_layer_failing_in_dry_run_is_named(tmp_path):
    rows = f"[{STEM}, [-1, 1, nn.Upsample, [None, 2, bilinearr]]]"
    with pytest.raises(ModelConfigError, match=r"layer 1 \(nn.Upsample\)"):
        DetectionModel(write(tmp_path, small_yaml(rows)))


def test_repeated_channel_changing_block_is_explained(tmp_path):
    rows = f"[{STEM}, [-1, 2, Conv, [64, 3, 1]]]"
    with pytest.raises(ModelConfigError, match="repeated 2 times but changes channels"):
        DetectionModel(write(tmp_path, small_yaml(rows)))


def test_invalid_yaml_names_the_file(tmp_path):
    with pytest.raises(ModelConfigError, match="user.yaml: not valid YAML"):
        DetectionModel(write(tmp_path, "backbone: [[-1, 1, Conv\n"))


def test_missing_config_file_lists_shipped_configs():
    with pytest.raises(FileNotFoundError, match="yolov5n.yaml"):
        DetectionModel("yolov5q.yaml")
