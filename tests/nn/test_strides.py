"""Build-time stride checks of detection heads, and the README's example messages word for word."""

import copy
import logging
import re
from pathlib import Path

import pytest
import yaml

from modyolo.cli import main as cli_main
from modyolo.nn.graph import load_model_yaml
from modyolo.nn.model import DetectionModel
from modyolo.nn.row import ModelConfigError

README = Path(__file__).resolve().parents[2] / "README.md"


def _yolov5n(**edits) -> dict:
    cfg, _ = load_model_yaml("yolov5n.yaml")
    cfg = copy.deepcopy(cfg)
    cfg["width_multiple"] = 0.125
    rows = cfg["backbone"] + cfg["head"]
    for index, row in edits.items():
        rows[int(index[1:])][:] = row
    return cfg


def _write(tmp_path: Path, cfg: dict, name: str = "my.yaml") -> str:
    cfg = dict(cfg)
    cfg.pop("yaml_file", None)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return str(path)


def _readme_messages() -> list[str]:
    text = README.read_text()
    return [line for line in text.splitlines() if re.match(r"^layer \d+ \(\w+\) of my(-\w+)?\.yaml: ", line)]


def test_stride1_row_feeds_detect_at_4_8_16_and_fails(tmp_path):
    path = _write(tmp_path, _yolov5n(r3=[-1, 1, "Conv", [256, 3, 1]]))
    with pytest.raises(ModelConfigError) as e:
        DetectionModel(path)
    msg = str(e.value)
    assert "layer 17 at stride 4" in msg and "layer 23 at stride 16" in msg
    assert "fit strides 8/16/32" in msg and "anchors: 3" in msg


def test_the_cli_says_it_in_one_line(tmp_path, capsys):
    path = _write(tmp_path, _yolov5n(r3=[-1, 1, "Conv", [256, 3, 1]]))
    assert cli_main(["profile", "--cfg", path, "--img", "64"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sized for larger strides" in err[0] and "Traceback" not in err[0]


def test_readme_messages_are_what_the_tool_says(tmp_path):
    built = {
        "Concat": _yolov5n(r12=[[-1, 4], 1, "Concat", [1]]),
        "sized for larger strides": _yolov5n(r3=[-1, 1, "Conv", [256, 3, 1]]),
        "increasing strides": _yolov5n(r24=[[17, 23, 20], 1, "Detect", ["nc", "anchors"]]),
    }
    lines = _readme_messages()
    checked = 0
    for key, cfg in built.items():
        (want,) = [line for line in lines if key in line]
        with pytest.raises(ModelConfigError) as e:
            DetectionModel(_write(tmp_path, cfg))
        assert str(e.value) == want
        checked += 1
    assert checked == 3


def test_shipped_anchors_at_their_strides_build_silently(caplog):
    with caplog.at_level(logging.WARNING, logger="modyolo"):
        model = DetectionModel(_yolov5n())
    assert model.stride.tolist() == [8.0, 16.0, 32.0]
    assert not [r for r in caplog.records if "anchors" in r.getMessage()]


def test_p6_style_anchors_fit_p3_to_p6(caplog):
    """yolov5's P6 anchors are up to 9.6x their stride: the bound must let them through."""
    cfg = _yolov5n()
    cfg["anchors"] = [[19, 27, 44, 40, 38, 94], [96, 68, 86, 152, 180, 137], [140, 301, 303, 264, 238, 542]]
    with caplog.at_level(logging.WARNING, logger="modyolo"):
        DetectionModel(cfg)
    assert not caplog.records


def test_tiny_anchors_warn_with_the_layers_named(caplog):
    cfg = _yolov5n()
    cfg["anchors"] = [[1, 1, 2, 2, 3, 3], [2, 2, 3, 3, 4, 4], [3, 3, 4, 4, 5, 5]]
    with caplog.at_level(logging.WARNING, logger="modyolo"):
        DetectionModel(cfg)
    (record,) = [r for r in caplog.records if "anchors are small" in r.getMessage()]
    assert "layer 17 at stride 8" in record.getMessage()


def test_anchors_fitted_later_are_not_checked():
    cfg = _yolov5n(r3=[-1, 1, "Conv", [256, 3, 1]])
    cfg["anchors"] = 3  # autoanchor fits them to the data: nothing to compare with yet
    model = DetectionModel(cfg)
    assert model.stride.tolist() == [4.0, 8.0, 16.0]


def test_anchor_free_head_needs_increasing_strides():
    cfg, _ = load_model_yaml("yolov5u.yaml")
    cfg = copy.deepcopy(cfg)
    head = cfg["head"][-1]
    assert head[2] == "DetectAF"
    head[0] = list(reversed(head[0]))  # P5, P4, P3
    with pytest.raises(
        ModelConfigError, match=r"\(DetectAF\) of yolov5u.yaml: its inputs must be at increasing strides"
    ):
        DetectionModel(cfg)
