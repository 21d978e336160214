"""ultralytics-format YAMLs build as ultralytics builds them, and its state_dicts give the same outputs.

The peer package is installed only in the test/benchmark extras; every test here is skipped with
that reason when it is absent. Nothing of ultralytics is used by modyolo itself.
"""

from pathlib import Path

import pytest
import torch

from modyolo.nn.heads.anchor_free import DetectAF
from modyolo.nn.model import DetectionModel

ultralytics = pytest.importorskip("ultralytics", reason="the ultralytics package (test extra) is not installed")
from ultralytics.nn.tasks import DetectionModel as UltralyticsModel  # noqa: E402

CFG = Path(ultralytics.__file__).parent / "cfg" / "models"
NANO = ["v8/yolov8n.yaml", "11/yolo11n.yaml", "v5/yolov5n.yaml"]


def peer(rel: str, nc: int = 80) -> torch.nn.Module:
    return UltralyticsModel(str(CFG / rel), nc=nc, verbose=False)


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("rel", NANO + ["11/yolo11s.yaml"])
def test_parameter_counts_match_ultralytics(rel):
    ours = DetectionModel(str(CFG / rel))
    assert isinstance(ours.head, DetectAF), "a Detect [nc] row (no anchors) is the anchor-free head"
    assert n_params(ours) == n_params(peer(rel))


def test_scale_letter_from_the_file_name_applies_max_channels():
    """yolo11m: scale m caps channels at 512 and turns C3k2 into its C3k form (ultralytics' rule)."""
    ours = DetectionModel(str(CFG / "11/yolo11m.yaml"))
    assert ours.yaml["scale"] == "m"
    assert n_params(ours) == n_params(peer("11/yolo11m.yaml"))


def _randomise(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point() or name.endswith("dfl.conv.weight"):
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) * 0.5 + 0.75)
            elif name.endswith(("running_mean", "bn.bias")):
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
            elif name.endswith("bn.weight"):
                t.copy_(torch.rand(t.shape, generator=g) * 0.5 + 0.75)
            else:
                t.copy_(torch.randn(t.shape, generator=g) * (1.0 / max(t[0].numel(), 1)) ** 0.5)


@pytest.mark.parametrize("rel", ["v8/yolov8n.yaml", "11/yolo11n.yaml"])
def test_ultralytics_state_dict_loads_strictly_with_the_same_outputs(rel):
    theirs = peer(rel, nc=3)
    _randomise(theirs, seed=0)
    ours = DetectionModel(str(CFG / rel), nc=3)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    theirs.eval()
    ours.eval()
    ours.head.layout = "ultralytics"
    x = torch.rand(2, 3, 96, 128)
    with torch.no_grad():
        ref, _ = theirs(x)
        out, _ = ours(x)
        rows, _ = ours.head.__class__.nms_rows(out), None
    assert out.shape == ref.shape == (2, 4 + 3, (12 * 16 + 6 * 8 + 3 * 4))
    assert torch.allclose(out, ref, atol=1e-4, rtol=1e-4), (out - ref).abs().max()
    ours.head.layout = "rows"
    with torch.no_grad():
        pred, _ = ours(x)
    assert torch.allclose(pred, rows, atol=1e-6)  # the NMS rows carry the same numbers, objectness 1
    assert torch.all(pred[..., 4] == 1)
