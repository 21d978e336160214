"""Reading weights files: checkpoints and bare state_dicts, as plain data, and what they say.

The ground floor of the house (no torch module is built here), so training, evaluation,
deployment, inference and the API all read weights the same way; building a model from them is
:func:`modyolo.nn.load.load_detection_model`. Writing checkpoints (atomic saves, resume state)
is ``modyolo.engine.checkpoint``.

A checkpoint (format ``modyolo.checkpoint``) is a dict of state_dicts, dicts, lists, numbers,
strings and tensors, never a pickled module, so it loads with ``torch.load(weights_only=True)``
and running it cannot execute code from the file.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

FORMAT = "modyolo.checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a usable modyolo checkpoint; the message says what to do instead."""


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint (or a bare state_dict, returned as ``{"model": sd, "format": "state_dict"}``).

    Only plain data is accepted (``weights_only=True``). A pickled yolov5 ``.pt`` and files that
    are not checkpoints raise :class:`CheckpointError` saying how to convert them.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    if not zipfile.is_zipfile(path):  # torch.save has written zip archives since PyTorch 1.6
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint (not a zip archive: truncated, another format, or a "
            "pre-1.6 legacy file; re-save a legacy file with a current torch.save)"
        )
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        text = str(e)
        if "models.yolo" in text or "models.common" in text:
            raise CheckpointError(
                f"{path} is a pickled yolov5 model, which modyolo does not unpickle (it could run "
                "code). Export its weights as a state_dict from a yolov5 checkout with\n"
                "  python -c \"import torch; c = torch.load('IN.pt', weights_only=False); "
                "torch.save(c['model'].float().state_dict(), 'OUT.pt')\"\n"
                "then pass OUT.pt as --weights together with the matching --cfg YAML"
            ) from e
        if "ultralytics." in text:
            raise CheckpointError(
                f"{path} is a pickled ultralytics model, which modyolo does not unpickle (it could run code); "
                "where the ultralytics package is installed, save its state_dict with "
                "python -c \"import torch; c = torch.load('IN.pt', weights_only=False); "
                "torch.save(c['model'].float().state_dict(), 'OUT.pt')\" and pass OUT.pt as --weights with the "
                "YAML it was built from as --cfg (e.g. yolov8n.yaml: its keys load strictly)"
            ) from e
        culprit = next((line.strip() for line in text.splitlines() if "global" in line.lower()), text.splitlines()[0])
        raise CheckpointError(
            f"{path} holds pickled Python objects, not plain data ({culprit}); save a state_dict instead"
        ) from e
    except (
        RuntimeError,
        zipfile.BadZipFile,
        EOFError,
        OSError,
        IndexError,
        KeyError,
        TypeError,
        ValueError,
        AttributeError,
    ) as e:  # a damaged pickle inside a valid zip reaches torch's unpickler in many ways
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint (truncated, damaged or another format): {type(e).__name__}: {e}"
        ) from e
    if isinstance(obj, Mapping) and obj.get("format") == FORMAT:
        version = obj.get("version", 0)
        if not isinstance(version, int):
            raise CheckpointError(f"{path}: damaged checkpoint (version {version!r} is not an integer)")
        if version > VERSION:
            raise CheckpointError(
                f"{path} is checkpoint version {obj['version']}, newer than this modyolo reads ({VERSION}); "
                "upgrade modyolo"
            )
        return dict(obj)
    if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return {"format": "state_dict", "model": dict(obj)}
    raise CheckpointError(
        f"{path} is neither a modyolo checkpoint nor a state_dict (found {type(obj).__name__}"
        + (f" with keys {sorted(map(str, obj))[:8]}" if isinstance(obj, Mapping) else "")
        + ")"
    )


def inference_state_dict(ckpt: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The weights to evaluate or deploy: the EMA's when the checkpoint has one."""
    ema = ckpt.get("ema")
    return dict(ema["model"]) if ema else dict(ckpt["model"])


def names_list(names: Sequence[str] | Mapping[Any, str] | None, nc: int) -> list[str]:
    """Class names as a list of ``nc`` strings.

    names: a list, or ``{index: name}`` (yolov5 / ultralytics write dicts, keys int or str), or
    None (``"0"``, ``"1"``, ...). A list of the wrong length is padded with ``class<i>`` or cut.
    """
    if names is None:
        return [str(i) for i in range(nc)]
    if isinstance(names, Mapping):
        by_index = {int(k): str(v) for k, v in names.items()}
        out = [by_index.get(i, f"class{i}") for i in range(nc)]
    else:
        out = [str(n) for n in names]
    return [out[i] if i < len(out) else f"class{i}" for i in range(nc)]


def nc_of_state(state: Mapping[str, torch.Tensor]) -> int | None:
    """The class count a state_dict's detection head was trained for (None if it has no head).

    Anchor-based heads (yolov5 / yolov7 layout): the first output conv ``m.0.weight`` has
    ``na * (5 + nc)`` rows, ``na`` read from the ``anchors`` buffer ``[nl, na, 2]``. The
    anchor-free head (ultralytics' layout): its class branch ends in ``cv3.0.2``, ``Conv2d(c, nc)``.
    """
    anchors = [k for k in state if k.endswith(".anchors")]
    if not anchors:
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
    return int(conv.shape[0]) // int(na) - 5
