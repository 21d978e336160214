"""YOLOv7's recipe: its hyp files load, the OTA loss is chosen by the head + hyp, its assignment
keeps its invariants, it equals yolov7's ComputeLossOTA / ComputeLossAuxOTA (with $YOLOV7_REPO),
and `modyolo train --cfg yolov7-tiny.yaml --hyp hyp.scratch.tiny.yaml` runs."""

import contextlib
import copy
import io
import os
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from modyolo.cli import main as cli_main
from modyolo.data.synthetic import make_shapes_dataset
from modyolo.engine.assign import build_targets
from modyolo.engine.hyp import HypError, load_hyp
from modyolo.engine.loss import DetectionLoss
from modyolo.engine.loss_ota import LeadDetectionLoss, OTALoss, candidates, ota_match
from modyolo.engine.setup import build_loss
from modyolo.nn.graph import load_model_yaml
from modyolo.nn.model import DetectionModel

REPO = os.environ.get("YOLOV7_REPO")


def small(name: str, **overrides) -> dict:
    cfg, _ = load_model_yaml(name)
    cfg = copy.deepcopy(cfg)
    cfg.update({"width_multiple": 0.125, "nc": 3, **overrides})
    return cfg


def random_targets(n: int, bs: int, nc: int, seed: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.cat(
        [
            torch.randint(0, bs, (n, 1), generator=g).float(),
            torch.randint(0, nc, (n, 1), generator=g).float(),
            torch.rand(n, 2, generator=g) * 0.6 + 0.2,
            torch.rand(n, 2, generator=g) * 0.3 + 0.05,
        ],
        1,
    )


@pytest.mark.parametrize("name", ["hyp.scratch.tiny.yaml", "hyp.scratch.p5.yaml", "scratch.p6"])
def test_yolov7_hyp_files_load_with_their_extra_keys(name, caplog):
    hyp = load_hyp(name)
    assert hyp.loss_ota == 1 and hyp.paste_in > 0
    assert "not implemented" not in caplog.text  # paste_in is implemented (data/paste_in.py)
    with pytest.raises(HypError, match="loss_ota"):
        load_hyp({"loss_ota": 2})


def test_loss_is_chosen_by_the_head_and_the_hyp(tiny_cfg):
    v7 = DetectionModel(small("yolov7-tiny.yaml"))
    args = SimpleNamespace(loss=None)
    assert type(build_loss(args, v7, load_hyp("hyp.scratch.tiny.yaml"))) is OTALoss
    assert type(build_loss(args, v7, load_hyp({"loss_ota": 0}))) is LeadDetectionLoss
    assert type(build_loss(args, DetectionModel(tiny_cfg()), load_hyp("hyp.scratch.tiny.yaml"))) is DetectionLoss


def test_candidates_are_yolov5s_cells():
    anchors = torch.tensor([[[1.2, 1.6], [2.0, 3.7], [4.1, 2.9]], [[1.9, 3.8], [3.9, 2.8], [3.7, 7.4]]])
    targets = random_targets(20, 2, 3)
    shapes = [(16, 12), (8, 6)]
    ours = candidates(shapes, targets, anchors, 4.0)
    ref = build_targets(shapes, targets, anchors, 4.0)
    for c, r in zip(ours, ref):
        for a, b in ((c.image, r.image), (c.anchor, r.anchor), (c.gy, r.gy), (c.gx, r.gx)):
            assert torch.equal(a, b)
        assert torch.equal(targets[c.gt, 1].long(), r.cls)
    wide = candidates(shapes, targets, anchors, 4.0, reach=1.0)
    assert all(len(w.image) > len(c.image) for w, c in zip(wide, ours))  # 5 cells instead of 3


def test_ota_assignment_invariants():
    torch.manual_seed(0)
    model = DetectionModel(small("yolov7-tiny.yaml")).train()
    preds = model(torch.rand(2, 3, 128, 128))
    targets = random_targets(12, 2, 3)
    shapes = [p.shape[2:4] for p in preds]
    cands = candidates(shapes, targets, model.head.anchors, 4.0)
    matched = ota_match(preds, targets, cands, model.head.stride.tolist(), 3)
    owners = []
    for c, m in zip(cands, matched):
        cells = {(int(b), int(a), int(y), int(x)) for b, a, y, x in zip(c.image, c.anchor, c.gy, c.gx)}
        assert all((int(b), int(a), int(y), int(x)) in cells for b, a, y, x in zip(m.image, m.anchor, m.gy, m.gx))
        assert torch.equal(m.target[:, 0].long(), m.image)  # a positive learns a box of its own image
        owners += [tuple(t.tolist()) for t in m.target]
    proposed = {int(g) for c in cands for g in c.gt}
    assert {tuple(targets[g].tolist()) for g in proposed} == set(owners)  # every box with candidates gets >= 1


@pytest.mark.parametrize("aux", [False, True])
def test_ota_loss_trains_lead_and_aux_maps(aux, tmp_path):
    torch.manual_seed(0)
    if aux:
        from test_yolov7 import AUX_YAML  # tests/nn is on sys.path (pytest prepend mode)

        p = tmp_path / "aux.yaml"
        p.write_text(AUX_YAML)
        model = DetectionModel(p)
    else:
        model = DetectionModel(small("yolov7-tiny.yaml"))
    model.train()
    loss_fn = OTALoss(model, load_hyp("hyp.scratch.p6.yaml" if aux else "hyp.scratch.tiny.yaml"))
    loss, parts = loss_fn(model(torch.rand(2, 3, 128, 128)), random_targets(10, 2, 3))
    assert torch.isfinite(loss) and parts.shape == (3,) and (parts > 0).all()
    loss.backward()
    assert model.head.m[0].weight.grad.abs().sum() > 0 and model.head.ia[0].implicit.grad is not None
    if aux:
        assert model.head.m2[0].weight.grad.abs().sum() > 0


def test_train_cli_with_yolov7_config_and_hyp(tmp_path):
    data = make_shapes_dataset(tmp_path / "shapes", n_train=8, n_val=4, seed=0, img_size=(96, 160))
    cfg = small("yolov7-tiny.yaml")
    cfg.pop("yaml_file", None)
    (tmp_path / "v7.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    rc = cli_main(
        [
            "train",
            "--data",
            str(data),
            "--cfg",
            str(tmp_path / "v7.yaml"),
            "--hyp",
            "hyp.scratch.tiny.yaml",
            "--img",
            "64",
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--workers",
            "0",
            "--project",
            str(tmp_path / "runs"),
            "--name",
            "v7",
            "--noplots",
            "--quiet",
        ]
    )
    assert rc == 0
    weights = tmp_path / "runs" / "v7" / "weights" / "last.pt"
    assert weights.is_file()
    assert cli_main(["reparam", "--weights", str(weights), "--img", "64"]) == 0


@pytest.mark.skipif(
    not REPO or not Path(REPO, "utils", "loss.py").is_file(),
    reason="set YOLOV7_REPO to a checkout of github.com/WongKinYiu/yolov7 to compare with its loss",
)
@pytest.mark.parametrize("name,size", [("yolov7-tiny.yaml", 128), ("yolov7-w6.yaml", 256)])
def test_ota_loss_equals_yolov7s(name, size):
    sys.path.insert(0, str(Path(REPO).resolve()))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from models.yolo import Model
            from utils.loss import ComputeLossAuxOTA, ComputeLossOTA
    finally:
        sys.path.pop(0)
    cfg = yaml.safe_load(Path(REPO, "cfg", "training", name).read_text())
    cfg.update(nc=3, width_multiple=0.125)
    torch.manual_seed(0)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = Model(cfg)
    ours = DetectionModel(cfg)
    ours.load_state_dict(ref.state_dict(), strict=True)
    hyp = yaml.safe_load(Path(REPO, "data", "hyp.scratch.p5.yaml").read_text())
    ref.hyp, ref.gr = hyp, 1.0
    ref.train(), ours.train()
    x = torch.rand(2, 3, size, size)
    targets = random_targets(12, 2, 3)
    reference = (ComputeLossAuxOTA if "w6" in name else ComputeLossOTA)(ref)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loss_ref, parts_ref = reference(ref(x), targets, x)
    loss, parts = OTALoss(ours, load_hyp(hyp))(ours(x), targets)
    torch.testing.assert_close(parts, parts_ref[:3], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(loss, loss_ref, atol=1e-6, rtol=1e-5)
