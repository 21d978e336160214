"""A weights file -> a :class:`DetectionModel` with those weights: the one checkpoint-to-model path.

Inference (``modyolo.inference.predictor``), export (``modyolo.deploy.prepare``) and the API build
their models here; the file reading itself (plain data, ``weights_only=True``) is
:mod:`modyolo.weights_io`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modyolo.nn.model import DetectionModel
from modyolo.weights_io import CheckpointError, inference_state_dict, load_checkpoint, names_list, nc_of_state


def build_stored_model(model_yaml: Any, where: str, nc: int | None = None) -> DetectionModel:
    """``DetectionModel(model_yaml, nc=nc)``; a build error also names the weights it came from."""
    try:
        return DetectionModel(model_yaml, nc=nc)
    except Exception as e:  # the YAML error already names the layer; add which weights it came from
        raise ValueError(f"{where}: cannot build the model stored with these weights: {e}") from e


def load_detection_model(
    weights: str | Path, cfg: str | Path | dict | None = None, use_ema: bool = True
) -> tuple[DetectionModel, dict[str, Any]]:
    """A modyolo checkpoint or a bare state_dict -> ``(model, meta)``.

    weights: a ``.pt`` written by modyolo (its model YAML, names and EMA travel with it) or a bare
        state_dict (then ``cfg`` names the model YAML it was built from).
    cfg: the model YAML (path, shipped name or dict); for a checkpoint it replaces the stored one.
    use_ema: take the EMA weights when the checkpoint has them (as training validated).

    The class count comes from the weights' head (a YAML with ``nc: 80`` loads a 3-class
    state_dict), the weights load strictly, and ``model.names`` is a list of ``nc`` names. The
    model is fp32, in eval mode, on the CPU and not fused. ``meta``: ``format`` ("checkpoint" |
    "state_dict"), ``path``, ``imgsz`` (the training image size or None), ``has_ema``, ``epoch``.

    Raises :class:`~modyolo.weights_io.CheckpointError` (a ``ValueError``) saying what to pass
    when the file is not modyolo weights, has no YAML, or does not fit the YAML.
    """
    path = Path(weights)
    model_yaml: Any  # a path, a shipped name or a dict (a checkpoint stores a dict)
    ckpt = load_checkpoint(path, map_location="cpu")
    if ckpt.get("format") == "state_dict":
        if cfg is None:
            raise CheckpointError(
                f"{path} is a bare state_dict without its model YAML; pass the YAML it was "
                f"trained from: modyolo detect / val / export --weights {path} --cfg yolov5n.yaml "
                "(your YAML), or modyolo.load(path, cfg=...)"
            )
        model_yaml, state, names = cfg, ckpt["model"], None
        meta: dict[str, Any] = {
            "format": "state_dict",
            "path": str(path),
            "imgsz": None,
            "has_ema": False,
            "epoch": None,
        }
    else:
        model_yaml = cfg if cfg is not None else ckpt.get("model_yaml")
        if not model_yaml:
            raise CheckpointError(f"{path} stores no model YAML; pass the YAML it was trained from (--cfg)")
        state = inference_state_dict(ckpt) if use_ema else dict(ckpt["model"])
        names = ckpt.get("names")
        meta = {
            "format": "checkpoint",
            "path": str(path),
            "imgsz": (ckpt.get("train_args") or {}).get("imgsz"),
            "has_ema": bool(ckpt.get("ema")),
            "epoch": ckpt.get("epoch"),
        }
    model = build_stored_model(model_yaml, str(path), nc=nc_of_state(state))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(
            f"{path}: weights do not fit the model YAML {model.source} ({str(e).splitlines()[0]}...); "
            "pass the YAML these weights were trained with"
        ) from e
    model.names = names_list(names, model.nc)
    return model.float().eval(), meta
