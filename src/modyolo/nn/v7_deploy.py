"""YOLOv7 re-parameterisation: a training-layout model -> the cfg/deploy layout, same outputs.

yolov7 trains with extra structure that inference does not need and ships a second YAML set
(``cfg/deploy``) without it. The differences, and what this module does about each:

- ``IDetect`` -> ``Detect``: the implicit layers (``ia``: add, ``im``: multiply) are folded into
  the output convs (see :meth:`IDetect.fuse`);
- ``IAuxDetect`` -> ``Detect`` on the lead inputs: the auxiliary head (``m2``) and the rows that
  only fed it (yolov7-w6/e6/d6/e6e's last Conv rows before the head) are dropped;
- ``RepConv`` rows stay (cfg/deploy keeps them too); :meth:`DetectionModel.fuse` folds each into
  one 3x3 conv, which export and val do anyway.

The converted model's state_dict has the keys of yolov7's own deploy model, the Detect head's
``anchor_grid`` included (modyolo's Detect derives it, and writes it back once a state_dict gave it:
see ``Detect._load_from_state_dict``). So it loads strictly into yolov7's ``Model`` built from its
cfg/deploy YAML, a state_dict of that model loads strictly into modyolo's deploy layout, and the
eval outputs equal the training model's (to float rounding).
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch

from modyolo.nn.blocks.yolov7_heads import IAuxDetect, IDetect
from modyolo.nn.model import DetectionModel

LOGGER = logging.getLogger("modyolo.nn.v7_deploy")


def _absolute(f: Any, i: int) -> list[int]:
    items = f if isinstance(f, list) else [f]
    return [x + i if x < 0 else x for x in items]


def deploy_cfg(cfg: dict, nl: int, aux: bool) -> tuple[dict, int]:
    """The deploy-layout YAML dict for a training-layout one; also returns how many rows were dropped.

    cfg: a model YAML dict whose last head row is IDetect / IAuxDetect with ``nl`` levels.
    """
    out = copy.deepcopy(cfg)
    rows = out["backbone"] + out["head"]
    head_index = len(rows) - 1
    f, n, _, args = rows[-1]
    sources = _absolute(f, head_index)
    if aux:
        sources = sources[:nl]
    # Rows at the tail (just before the head) that nothing reads any more: only the aux head did.
    dropped = 0
    while True:
        last = head_index - 1 - dropped
        used = {j for i, row in enumerate(rows[:last]) for j in _absolute(row[0], i)} | set(sources)
        if last < 0 or last in used:
            break
        dropped += 1
    n_backbone = len(out["backbone"])
    if dropped and head_index - dropped < n_backbone:
        raise ValueError("the auxiliary rows reach into the backbone; cannot drop them")
    keep_head = out["head"][: len(out["head"]) - 1 - dropped]
    out["head"] = keep_head + [[sources, n, "Detect", args]]
    out.pop("yaml_file", None)
    return out, dropped


@torch.no_grad()
def to_deploy_layout(model: DetectionModel) -> DetectionModel:
    """A new eval-mode model in yolov7's cfg/deploy layout with the same weights and outputs.

    The input model is not modified. Raises ValueError when its head is not IDetect/IAuxDetect.
    """
    head = model.head
    if not isinstance(head, IDetect):
        raise ValueError(
            f"{model.source}: the deploy layout is for yolov7 training models (an IDetect or "
            f"IAuxDetect head); this model's head is {type(head).__name__}"
        )
    aux = isinstance(head, IAuxDetect)
    cfg, dropped = deploy_cfg(model.yaml, head.nl, aux)
    cfg["nc"] = model.nc
    deploy = DetectionModel(cfg, ch=int(model.yaml.get("ch", 3)))
    deploy.source = f"{model.source} (deploy layout)"

    folded = copy.deepcopy(head).float()
    folded.fuse()  # implicit knowledge -> the output convs
    old_i, new_i = len(model.model) - 1, len(deploy.model) - 1
    state = {}
    for k, v in model.state_dict().items():
        index = int(k.split(".")[1])
        if index >= old_i - dropped and index < old_i:
            continue  # rows only the auxiliary head read
        if index != old_i:
            state[k] = v
    for k, v in folded.state_dict().items():
        if k.startswith(("m.", "anchors")):
            state[f"model.{new_i}.{k}"] = v
    # yolov7's deploy Detect stores anchor_grid too: anchors in pixels, from the anchors themselves
    # (a checkpoint saved before its buffer followed autoanchor may hold a stale copy)
    grid = folded.anchors * folded.stride.view(-1, 1, 1)
    state[f"model.{new_i}.anchor_grid"] = grid.view(folded.nl, 1, folded.na, 1, 1, 2)
    deploy.load_state_dict(state, strict=True)
    deploy.names = list(model.names)
    LOGGER.info(
        "%s -> deploy layout: head %s -> Detect%s",
        model.source,
        type(head).__name__,
        f", {dropped} auxiliary rows dropped" if dropped else "",
    )
    return deploy.eval()
