"""The anchor-free loss equals ultralytics' v8DetectionLoss on a fixed batch (same weights, targets),
and behaves on the edge cases (no targets, padding, one image without boxes)."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from modyolo.engine.assign_tal import TaskAlignedAssigner
from modyolo.engine.loss_af import AnchorFreeLoss
from modyolo.nn.model import DetectionModel

TINY = {
    "nc": 3,
    "depth_multiple": 0.33,
    "width_multiple": 0.125,
    "backbone": [
        [-1, 1, "Conv", [64, 3, 2]],
        [-1, 1, "Conv", [128, 3, 2]],
        [-1, 1, "C2f", [128, True]],
        [-1, 1, "Conv", [256, 3, 2]],
        [-1, 1, "C2f", [256, True]],
        [-1, 1, "Conv", [512, 3, 2]],
        [-1, 1, "C2f", [512, True]],
    ],
    "head": [[[2, 4, 6], 1, "Detect", ["nc"]]],
}
TARGETS = torch.tensor(
    [
        [0, 0, 0.30, 0.40, 0.20, 0.30],
        [0, 2, 0.70, 0.60, 0.40, 0.50],
        [0, 1, 0.32, 0.42, 0.10, 0.08],
        [1, 1, 0.50, 0.50, 0.90, 0.80],
    ]
)


def test_no_targets_gives_a_finite_class_loss_only():
    model = DetectionModel(TINY)
    loss_fn = AnchorFreeLoss(model)
    loss, parts = loss_fn(model(torch.rand(2, 3, 64, 64)), torch.zeros(0, 6))
    assert torch.isfinite(loss).all() and parts[0] == 0 and parts[2] == 0 and parts[1] > 0
    loss.sum().backward()


def test_an_image_without_boxes_and_padding_rows_assign_nothing():
    model = DetectionModel(TINY)
    preds = model(torch.rand(3, 3, 64, 64))
    loss, parts = AnchorFreeLoss(model)(preds, TARGETS[:3])  # images 1 and 2 have no boxes
    assert torch.isfinite(parts).all() and (parts > 0).all()


def test_assigner_gives_each_ground_truth_at_most_topk_positives_inside_it():
    g = torch.Generator().manual_seed(0)
    points = torch.stack(torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="xy"), -1).view(-1, 2) * 8 + 4
    scores = torch.rand(1, 64, 2, generator=g)
    boxes = torch.cat((points - 6, points + 6), -1)[None]
    gt = torch.tensor([[[8.0, 8.0, 40.0, 40.0], [0.0, 0.0, 0.0, 0.0]]])
    out = TaskAlignedAssigner(2, topk=5, strides=[8.0])(
        scores, boxes, points, torch.tensor([[[1.0], [0.0]]]), gt, torch.tensor([[[1.0], [0.0]]])
    )
    fg_points = points[out.fg[0]]
    assert 1 <= int(out.fg.sum()) <= 5
    assert ((fg_points > 8) & (fg_points < 40)).all()
    assert (out.target_scores[0, out.fg[0], 1] > 0).all() and out.target_scores[..., 0].sum() == 0


@pytest.mark.parametrize("rel", ["v8/yolov8n.yaml", "11/yolo11n.yaml"])
def test_loss_equals_ultralytics_v8_detection_loss(rel):
    ultralytics = pytest.importorskip("ultralytics", reason="the ultralytics package (test extra) is not installed")
    from ultralytics.nn.tasks import DetectionModel as UltralyticsModel
    from ultralytics.utils.loss import v8DetectionLoss

    cfg = Path(ultralytics.__file__).parent / "cfg" / "models" / rel
    theirs = UltralyticsModel(str(cfg), nc=3, verbose=False)
    theirs.args = SimpleNamespace(box=7.5, cls=0.5, dfl=1.5)
    ours = DetectionModel(str(cfg), nc=3)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    # class biases raised so that the task-aligned metric is far from zero for many candidates
    for m in (ours, theirs):
        for seq in m.model[-1].cv3:
            seq[-1].bias.data.fill_(0.0)
    theirs.train()
    ours.train()
    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    batch = {"batch_idx": TARGETS[:, 0], "cls": TARGETS[:, 1:2], "bboxes": TARGETS[:, 2:]}
    ref_total, ref_parts = v8DetectionLoss(theirs)(theirs(x), batch)
    total, parts = AnchorFreeLoss(ours, box=7.5, cls=0.5, dfl=1.5)(ours(x), TARGETS)
    ref_parts = torch.stack([ref_parts[k] for k in ("box_loss", "cls_loss", "dfl_loss")])
    assert (parts > 0).all()
    assert torch.allclose(parts, ref_parts, rtol=1e-4, atol=1e-5), (parts, ref_parts)
    assert torch.allclose(total.sum(), ref_total.sum(), rtol=1e-4)
