"""Weights -> a DetectionModel ready to export: inference weights, BN fused, Detect returning pred.

Export never mutates the caller's model: it works on a deep copy, because fusing folds BN away
and ``Detect.export`` changes the output contract, and the caller may keep training it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from modyolo.engine.checkpoint import inference_state_dict, load_checkpoint
from modyolo.nn.model import DetectionModel


def names_list(names: Sequence[str] | Mapping[int, str] | None, nc: int) -> list[str]:
    """Class names as a list of ``nc`` strings (checkpoints may hold ``{index: name}``)."""
    if names is None:
        return [str(i) for i in range(nc)]
    if isinstance(names, Mapping):
        return [str(names.get(i, names.get(str(i), i))) for i in range(nc)]  # type: ignore[call-overload]
    out = [str(n) for n in names]
    if len(out) != nc:
        raise ValueError(
            f"the checkpoint has {len(out)} class names but its model has nc={nc}; "
            "fix the names saved with the weights (or the data YAML it was trained on)"
        )
    return out


def load_model(weights: str | Path, cfg: str | Path | dict | None = None) -> DetectionModel:
    """A DetectionModel with the checkpoint's inference weights (EMA when present) and names.

    cfg: the model YAML, needed only for a bare state_dict (a modyolo checkpoint stores its own).
    """
    ckpt = load_checkpoint(weights)
    model_cfg = cfg or ckpt.get("model_yaml")
    if not model_cfg:
        raise ValueError(
            f"{weights} is a bare state_dict without its model YAML; pass the YAML it was "
            "built from (--cfg yolov5s.yaml, or cfg= in the API)"
        )
    state = inference_state_dict(ckpt) if ckpt.get("format") != "state_dict" else ckpt["model"]
    nc = _nc_of(state)
    model = DetectionModel(model_cfg, nc=nc)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(
            f"{weights}: weights do not fit the model YAML {model.source} ({e}); "
            "pass the YAML the weights were trained with"
        ) from e
    model.names = names_list(ckpt.get("names"), model.nc)
    return model.float().eval()


def _nc_of(state: Mapping[str, torch.Tensor]) -> int | None:
    """The class count a state_dict's Detect head was trained for (None if it has no head)."""
    anchors = [k for k in state if k.endswith(".anchors")]
    if not anchors:  # the anchor-free head (ultralytics' layout): its class branch ends in Conv2d(c, nc)
        cls_out = [
            k
            for k in state
            if k.endswith(".cv3.0.2.weight") and k[: -len("cv3.0.2.weight")] + "cv2.0.2.weight" in state
        ]
        return int(state[cls_out[-1]].shape[0]) if cls_out else None
    prefix = anchors[-1][: -len("anchors")]
    conv = state.get(f"{prefix}m.0.weight")
    if conv is None:
        return None
    na = state[anchors[-1]].shape[1]
    return conv.shape[0] // na - 5


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
