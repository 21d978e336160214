"""yolov5's hub configs that use GhostConv, C3Ghost, C3TR / TransformerBlock and nn.ZeroPad2d, and
the C3x / C3SPP / CrossConv blocks: yolov5's parameter count, strict state_dict loading and equal
outputs against the yolov5==7.0.14 peer; Segment gets an out-of-scope message."""

import warnings
from pathlib import Path

import pytest
import torch

from modyolo.cli import main
from modyolo.nn.model import DetectionModel
from modyolo.nn.row import ModelConfigError

yolo = pytest.importorskip(
    "yolov5.models.yolo", reason="the yolov5==7.0.14 peer is not installed (make test installs it from tests/peers.txt)"
)
MODELS = Path(yolo.__file__).parent


def yolov5_model(cfg):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return yolo.Model(cfg)


def randomised(state: dict) -> dict:
    g = torch.Generator().manual_seed(1)
    out = {}
    for k, v in state.items():
        if k.endswith("running_var"):
            v = torch.rand(v.shape, generator=g) + 0.5
        elif k.endswith("running_mean"):
            v = torch.rand(v.shape, generator=g) - 0.5
        out[k] = v
    return out


def assert_parity(ref, ours, size=(128, 96)):
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    state = randomised(ref.state_dict())
    ref.load_state_dict(state)
    ours.load_state_dict(state, strict=True)
    ref.eval(), ours.eval()
    x = torch.rand(1, 3, *size)
    with torch.no_grad():
        torch.testing.assert_close(ours(x)[0], ref(x)[0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["yolov5s-ghost.yaml", "yolov5s-transformer.yaml", "yolov3-tiny.yaml"])
def test_hub_config_matches_yolov5(name):
    path = MODELS / "hub" / name
    torch.manual_seed(0)
    assert_parity(yolov5_model(str(path)), DetectionModel(path))


def cross_cfg() -> dict:
    return {
        "nc": 3,
        "depth_multiple": 0.33,
        "width_multiple": 0.25,
        "anchors": [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]],
        "backbone": [
            [-1, 1, "Conv", [64, 6, 2, 2]],
            [-1, 1, "CrossConv", [128, 3, 2]],
            [-1, 3, "C3x", [128]],
            [-1, 1, "Conv", [256, 3, 2]],
            [-1, 3, "C3x", [256, False]],
            [-1, 1, "Conv", [512, 3, 2]],
            [-1, 1, "C3SPP", [512, [5, 9, 13]]],
            [-1, 1, "Conv", [1024, 3, 2]],
            [-1, 1, "C3TR", [1024]],
        ],
        "head": [
            [-1, 1, "GhostConv", [512, 1, 1]],
            [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
            [[-1, 6], 1, "Concat", [1]],
            [-1, 3, "C3Ghost", [512, False]],
            [[4, 6, 9], 1, "Detect", ["nc", "anchors"]],
        ],
    }


def test_c3x_c3spp_crossconv_match_yolov5():
    torch.manual_seed(0)
    assert_parity(yolov5_model(cross_cfg()), DetectionModel(cross_cfg()))


def test_segment_config_is_out_of_scope_through_the_cli(capsys):
    seg = MODELS / "segment" / "yolov5n-seg.yaml"
    with pytest.raises(ModelConfigError, match=r"\(Segment\) of yolov5n-seg.yaml.*out of scope"):
        DetectionModel(seg)
    assert main(["profile", "--cfg", str(seg)]) == 1
    assert "out of scope" in capsys.readouterr().err
