"""Weights -> a DetectionModel ready to export: inference weights, BN fused, Detect returning pred.

Export never mutates the caller's model: it works on a deep copy, because fusing folds BN away
and ``Detect.export`` changes the output contract, and the caller may keep training it.
"""

from __future__ import annotations

import copy
from pathlib import Path

from modyolo.nn.load import load_detection_model
from modyolo.nn.model import DetectionModel


def load_model(weights: str | Path, cfg: str | Path | dict | None = None) -> DetectionModel:
    """A DetectionModel with the checkpoint's inference weights (EMA when present) and names.

    cfg: the model YAML, needed only for a bare state_dict (a modyolo checkpoint stores its own).
    See :func:`modyolo.nn.load.load_detection_model`, which this is.
    """
    return load_detection_model(weights, cfg)[0]


def prepare_for_export(model: DetectionModel) -> DetectionModel:
    """A fused, eval-mode, fp32 copy whose Detect returns only ``pred [B, N, 5+nc]``."""
    if model.head is None:
        raise ValueError(
            f"{model.source}: the model has no Detect head as its last layer; only detectors can be exported"
        )
    model = copy.deepcopy(model).float().eval()
    if not model.fused:
        model.fuse()
    model.head.export = True  # instance attribute: the class default stays False for everyone else
    for p in model.parameters():
        p.requires_grad_(False)
    return model
