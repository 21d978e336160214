"""The acceptance matrix's configs: the shipped model YAMLs (found at collection time) and their
scaled-down copies for CI.

Configs are listed from the installed package (``modyolo/cfg/models/*.yaml``), so a config added
there joins the matrix without editing a test. The scale-down only lowers the depth and width
multiples (in yolov5 format, or every row of an ultralytics ``scales:`` table): the layer list,
head, anchors and every training default stay what a user gets.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from modyolo.nn.graph import load_model_yaml, shipped_configs
from modyolo.nn.scales import guess_scale

DEPTH = 0.33  # the most a config's depth multiple is allowed in the matrix
WIDTH = 0.25  # ... and its width multiple (yolov5n's; lower breaks rows that derive heads from channels)
# Backbone rows whose widths are fixed by the pretrained network and ignore the width multiple:
# these configs stay heavy after the scale-down, so their rows are marked slow (CI still runs them).
FIXED_WIDTH_ROWS = {"TorchVision", "Timm"}


def _rows(cfg: dict) -> list:
    return [r for part in ("backbone", "head") for r in (cfg.get(part) or []) if isinstance(r, list) and len(r) >= 3]


def is_heavy(name: str) -> bool:
    """True for a config with a TorchVision / Timm row (its backbone does not scale down)."""
    cfg, _ = load_model_yaml(name)
    return any(str(r[2]) in FIXED_WIDTH_ROWS for r in _rows(cfg))


def matrix_params() -> list:
    """One pytest param per distinct scaled-down config: a tuple of shipped file names, heavy ones slow.

    Configs that are the same file after the scale-down (yolov5n/s/m/l/x differ only in their
    multiples) train once, under an id naming them all; running the same model five times would
    test nothing more and cost a minute of CI.
    """
    groups: dict[str, list[str]] = {}
    for name in shipped_configs():
        cfg = scaled_dict(name)
        letter = guess_scale(name) if "scales" in cfg else None  # the name picks the row of a scales table
        groups.setdefault(json.dumps([cfg, letter], sort_keys=True, default=str), []).append(name)
    return [
        pytest.param(tuple(names), id="+".join(names), marks=[pytest.mark.slow] if is_heavy(names[0]) else [])
        for names in groups.values()
    ]


def scaled_dict(name: str) -> dict:
    """The shipped config ``name`` with depth <= DEPTH and width <= WIDTH (a ``scales:`` table has
    every row lowered, so whichever scale the file name picks is small)."""
    cfg, _ = load_model_yaml(name)
    cfg.pop("yaml_file", None)
    scales = cfg.get("scales")
    if isinstance(scales, dict):
        cfg["scales"] = {k: [min(v[0], DEPTH), min(v[1], WIDTH), *v[2:]] for k, v in scales.items()}
    else:
        cfg["depth_multiple"] = min(float(cfg.get("depth_multiple", 1.0)), DEPTH)
        cfg["width_multiple"] = min(float(cfg.get("width_multiple", 1.0)), WIDTH)
    return cfg


def scaled_copy(name: str, folder: Path) -> Path:
    """Write ``scaled_dict(name)`` to ``folder/<name>``. The copy keeps the file name, since an
    ultralytics-format name carries the scale letter (``yolov8n.yaml``)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(scaled_dict(name), sort_keys=False), encoding="utf-8")
    return path
