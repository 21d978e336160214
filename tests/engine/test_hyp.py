import logging

import pytest
import yaml

from modyolo.engine.hyp import HYPS_DIR, SHIPPED, Hyp, HypError, load_hyp, resolve_hyp_path, save_hyp

YOLOV5_KEYS = [
    "lr0",
    "lrf",
    "momentum",
    "weight_decay",
    "warmup_epochs",
    "warmup_momentum",
    "warmup_bias_lr",
    "box",
    "cls",
    "cls_pw",
    "obj",
    "obj_pw",
    "iou_t",
    "anchor_t",
    "fl_gamma",
    "hsv_h",
    "hsv_s",
    "hsv_v",
    "degrees",
    "translate",
    "scale",
    "shear",
    "perspective",
    "flipud",
    "fliplr",
    "mosaic",
    "mixup",
    "copy_paste",
]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_files_have_every_yolov5_key_and_only_those(name):
    path = resolve_hyp_path(name)
    assert path.parent == HYPS_DIR
    raw = yaml.safe_load(path.read_text())
    assert sorted(raw) == sorted(YOLOV5_KEYS)  # nothing falls back to a default
    hyp = load_hyp(name)
    assert all(getattr(hyp, k) == raw[k] for k in YOLOV5_KEYS)


def test_shipped_values_are_yolov5s():
    low, med, high, ft = (load_hyp(n) for n in ("scratch-low", "hyp.scratch-med", "scratch-high.yaml", "finetune"))
    assert (low.lrf, low.cls, low.obj, low.scale, low.mixup) == (0.01, 0.5, 1.0, 0.5, 0.0)
    assert (med.lrf, med.cls, med.obj, med.scale, med.mixup, med.copy_paste) == (0.1, 0.3, 0.7, 0.9, 0.1, 0.0)
    assert high.copy_paste == 0.1 and high.mixup == 0.1
    assert (ft.lr0, ft.momentum, ft.anchor_t, ft.shear, ft.flipud) == (0.0032, 0.843, 2.91, 0.602, 0.00856)
    assert Hyp() == low  # the dataclass defaults are scratch-low


def test_unknown_key_names_file_and_near_key(tmp_path):
    path = tmp_path / "my_hyp.yaml"
    path.write_text("lr0: 0.01\nmomentun: 0.9\n")
    with pytest.raises(HypError, match=r"my_hyp\.yaml.*'momentun'.*did you mean 'momentum'"):
        load_hyp(path)


def test_missing_keys_take_defaults_and_are_logged(tmp_path, caplog):
    path = tmp_path / "partial.yaml"
    path.write_text("lr0: 0.002\nbox: 1\n")
    with caplog.at_level(logging.INFO, logger="modyolo.engine.hyp"):
        hyp = load_hyp(path)
    assert hyp.lr0 == 0.002 and hyp.box == 1.0 and isinstance(hyp.box, float)
    assert hyp.momentum == Hyp().momentum
    assert "momentum=0.937" in caplog.text and "partial.yaml" in caplog.text


@pytest.mark.parametrize(
    "text, key",
    [
        ("lr0: 0\n", "lr0"),
        ("fliplr: 1.5\n", "fliplr"),
        ("anchor_t: 0.5\n", "anchor_t"),
        ("loss: focal\n", "loss"),
        ("mosaic: yes\n", "mosaic"),
        ("box: .nan\n", "box"),
    ],
)
def test_bad_values_are_rejected_with_key(tmp_path, text, key):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(HypError, match=key):
        load_hyp(path)


def test_unknown_name_suggests_shipped():
    with pytest.raises(HypError, match="scratch-low"):
        load_hyp("scratch-lo")


def test_roundtrip_and_overrides(tmp_path):
    hyp = load_hyp("scratch-med", label_smoothing=0.1, loss="VFL")
    assert hyp.label_smoothing == 0.1 and hyp.loss == "vfl"
    again = load_hyp(save_hyp(hyp, tmp_path / "hyp.yaml"))
    assert again == hyp
    assert "anchors" not in hyp.to_dict()
    assert load_hyp({"anchors": 3}).anchors == 3.0
    with pytest.raises(HypError, match="rho"):
        hyp.replace(rho=-1)
