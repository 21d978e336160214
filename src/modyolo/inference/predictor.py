"""Weights -> a model ready for inference, and the exact letterbox pre-processing around it.

``load_model`` turns a modyolo checkpoint (``.pt``), a bare state_dict together with its model
YAML (both through :func:`modyolo.nn.load.load_detection_model`, the path export takes too), a
model YAML (fresh weights) or, through ``modyolo.deploy.backends``, an exported ``.onnx``
/ ``.torchscript`` file into something callable on a float ``[B, 3, H, W]`` 0-1 RGB batch that
returns yolov5's inference output ``pred: [B, N, 5 + nc]`` (cx, cy, w, h input pixels, obj, cls).

``letterbox_image`` records the geometry the resize and padding actually applied (integer pads,
per-axis scale of the rounded resized size), so ``Letterbox.to_original`` is the exact inverse:
yolov5 undoes the letterbox with the float half-padding and the un-rounded ratio, which is off
by up to half a pixel when the padding is odd.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import numpy as np
import torch

from modyolo.device import select_device as select_device  # re-exported for the verbs and the API
from modyolo.eval.nms import non_max_suppression

if TYPE_CHECKING:
    from modyolo.nn.model import DetectionModel

LOGGER = logging.getLogger("modyolo.inference.predictor")
BACKEND_SUFFIXES = (".onnx", ".torchscript", ".ts", ".xml")  # .xml: OpenVINO IR (+ .bin)
YAML_SUFFIXES = (".yaml", ".yml")


# --------------------------------------------------------------------------- loading


def load_model(
    weights: str | Path,
    device: str | torch.device = "cpu",
    fuse: bool = True,
    cfg: str | Path | dict | None = None,
    use_ema: bool = True,
) -> tuple[Any, list[str], dict]:
    """Load weights for inference.

    Args:
        weights: a modyolo checkpoint, a bare state_dict (then ``cfg`` names its model YAML), a
            model YAML (a fresh, untrained model: handy for smoke tests), or an exported
            ``.onnx`` / ``.torchscript`` file (through ``modyolo.deploy.backends``).
        fuse: fold BatchNorm into convolutions (faster; the diagnosis asks for ``False`` so the
            BN statistics stay inspectable).
        use_ema: take the EMA weights when the checkpoint has them (as training validated);
            ``False`` loads the raw training weights.

    Returns ``(model, names, meta)``: ``model`` in eval mode on ``device``; ``names`` the class
    names by id; ``meta`` a dict with ``format`` ("checkpoint" | "state_dict" | "yaml" |
    "backend"), ``path``, ``stride`` (int, the largest), ``nc``, ``imgsz`` (training image size
    or None), ``has_ema``, ``dynamic`` (whether any input shape is accepted) and, for
    checkpoints, ``epoch``.

    Raises ``CheckpointError`` (a ``ValueError``) for files that are not modyolo weights,
    saying what they are and how to convert them; nothing is unpickled.
    """
    from modyolo.nn.load import build_stored_model, load_detection_model

    path = Path(weights)
    dev = select_device(device)
    suffix = path.suffix.lower()
    if suffix in BACKEND_SUFFIXES:
        return _load_backend(path, dev)
    if suffix in YAML_SUFFIXES:
        model = build_stored_model(str(path), str(path))
        meta = {"format": "yaml", "path": str(path), "imgsz": None, "has_ema": False, "epoch": None}
        return _finish(model, list(model.names), meta, dev, fuse)
    model, meta = load_detection_model(path, cfg=cfg, use_ema=use_ema)
    return _finish(model, list(model.names), meta, dev, fuse)


def _finish(
    model: DetectionModel, names: list[str], meta: dict, dev: torch.device, fuse: bool
) -> tuple[DetectionModel, list[str], dict]:
    model = model.float().to(dev).eval()
    if fuse:
        model.fuse()
    for p in model.parameters():
        p.requires_grad_(False)
    meta.update(stride=int(model.stride.max()), nc=int(model.nc), dynamic=True)
    return model, names, meta


def _load_backend(path: Path, dev: torch.device) -> tuple[Any, list[str], dict]:
    """The seam for exported files: ``modyolo.deploy.backends.load_backend(path)``.

    A backend is callable on a ``[B, 3, H, W]`` float 0-1 batch, returns ``pred: [B, N, 5 + nc]``
    and carries ``names``, ``stride``, ``imgsz`` ``(h, w)`` and ``dynamic`` from the export metadata.
    """
    try:
        from modyolo.deploy.backends import load_backend
    except ImportError as e:
        raise ValueError(
            f"{path}: running exported {path.suffix} files needs modyolo.deploy.backends, which is "
            "not available in this installation; validate the .pt checkpoint instead, or "
            "install a modyolo with export support"
        ) from e
    backend = load_backend(path, device=dev)
    names = list(backend.names)
    imgsz = tuple(int(v) for v in backend.imgsz) if getattr(backend, "imgsz", None) else None
    meta = {
        "format": "backend",
        "path": str(path),
        "imgsz": imgsz,
        "has_ema": False,
        "epoch": None,
        "stride": int(backend.stride),
        "nc": len(names),
        "dynamic": bool(backend.dynamic),
    }
    return backend, names, meta


def load_model_for_cli(
    weights: str | Path, device: str | torch.device = "cpu", cfg: Any = None
) -> tuple[Any, list[str], dict]:
    """``load_model`` whose errors fit the CLI's one-line ``modyolo <verb>: error: ...`` report."""
    from modyolo.weights_io import CheckpointError

    try:
        return load_model(weights, device=device, cfg=cfg)
    except CheckpointError as e:
        raise CheckpointError(" ".join(str(e).split())) from e


def check_imgsz(imgsz: int, stride: int) -> int:
    """``imgsz`` rounded up to a multiple of ``stride`` (the model's feature maps must tile it)."""
    size = int(math.ceil(int(imgsz) / stride) * stride)
    if size != int(imgsz):
        LOGGER.warning("--img %d is not a multiple of the max stride %d; using %d", imgsz, stride, size)
    return size


# --------------------------------------------------------------------------- letterbox


@dataclass(frozen=True)
class Letterbox:
    """Where the original image lies inside the network input.

    ``orig_shape = (h0, w0)``, ``input_shape = (h, w)``; the resized content is
    ``new_shape = (nh, nw)`` pixels, placed at ``(left, top)`` (integer pads as applied).
    """

    orig_shape: tuple[int, int]
    input_shape: tuple[int, int]
    new_shape: tuple[int, int]
    left: int
    top: int

    @overload
    def to_original(self, boxes: torch.Tensor, clip: bool = True) -> torch.Tensor: ...
    @overload
    def to_original(self, boxes: np.ndarray, clip: bool = True) -> np.ndarray: ...
    def to_original(self, boxes: torch.Tensor | np.ndarray, clip: bool = True) -> torch.Tensor | np.ndarray:
        """xyxy ``boxes: [n, 4]`` in input pixels -> original-image pixels (a copy, clipped; the same type)."""
        (h0, w0), (nh, nw) = self.orig_shape, self.new_shape
        y: Any = boxes.clone().float() if isinstance(boxes, torch.Tensor) else np.array(boxes, dtype=np.float64)
        y[:, [0, 2]] = (y[:, [0, 2]] - self.left) * (w0 / nw)
        y[:, [1, 3]] = (y[:, [1, 3]] - self.top) * (h0 / nh)
        if clip:
            if isinstance(y, torch.Tensor):
                y[:, [0, 2]] = y[:, [0, 2]].clamp(0, w0)
                y[:, [1, 3]] = y[:, [1, 3]].clamp(0, h0)
            else:
                y[:, [0, 2]] = y[:, [0, 2]].clip(0, w0)
                y[:, [1, 3]] = y[:, [1, 3]].clip(0, h0)
        return y

    def to_input(self, boxes: np.ndarray) -> np.ndarray:
        """The forward map (original -> input pixels), for tests and label overlays."""
        (h0, w0), (nh, nw) = self.orig_shape, self.new_shape
        y = np.array(boxes, dtype=np.float64)
        y[:, [0, 2]] = y[:, [0, 2]] * (nw / w0) + self.left
        y[:, [1, 3]] = y[:, [1, 3]] * (nh / h0) + self.top
        return y


def letterbox_image(
    img: np.ndarray, imgsz: int | tuple[int, int], stride: int = 32, auto: bool = True
) -> tuple[np.ndarray, Letterbox]:
    """Letterbox a BGR ``uint8 [h0, w0, 3]`` image to ``imgsz`` (int, or ``(h, w)``) as yolov5's detect does.

    ``auto``: pad only up to the next multiple of ``stride`` (a smaller, faster input; needs a
    model that accepts any shape). Returns the padded image and its exact geometry.
    """
    from modyolo.data.augment import letterbox

    h0, w0 = img.shape[:2]
    out, ratio, (dw, dh) = letterbox(img, imgsz, auto=auto, stride=stride)
    # the same rounding letterbox applies, so the geometry is what was done, not what was meant
    nw, nh = int(round(w0 * ratio[0])), int(round(h0 * ratio[1]))
    top, left = int(round(dh - 0.1)), int(round(dw - 0.1))
    return out, Letterbox((h0, w0), tuple(out.shape[:2]), (nh, nw), left, top)


def to_tensor(img: np.ndarray, device: torch.device) -> torch.Tensor:
    """BGR ``uint8 [h, w, 3]`` -> RGB float ``[1, 3, h, w]`` in 0-1 on ``device``."""
    chw = np.ascontiguousarray(img.transpose(2, 0, 1)[::-1])
    return torch.from_numpy(chw).to(device).float().div_(255).unsqueeze(0)


# --------------------------------------------------------------------------- test-time augmentation


def _scale_img(x: torch.Tensor, ratio: float, gs: int) -> torch.Tensor:
    """Resize a ``[B, 3, h, w]`` batch by ``ratio`` and pad right/bottom to a multiple of ``gs``."""
    if ratio == 1.0:
        return x
    h, w = x.shape[2:]
    s = (int(h * ratio), int(w * ratio))
    x = torch.nn.functional.interpolate(x, size=s, mode="bilinear", align_corners=False)
    ph, pw = (math.ceil(v / gs) * gs - v for v in s)
    return torch.nn.functional.pad(x, (0, pw, 0, ph), value=0.447)  # yolov5's imagenet-mean grey


def tta_forward(model: Callable, x: torch.Tensor, stride: int = 32) -> torch.Tensor:
    """yolov5's ``--augment``: predictions at scales 1, 0.83 (left-right flipped) and 0.67, merged.

    Returns ``[B, N1 + N2 + N3, 5 + nc]`` in the input's pixels (NMS then picks among them).
    Unlike yolov5, the large-object tail of the small scale is not trimmed.
    """
    w = x.shape[3]
    outs = []
    for ratio, flip in ((1.0, False), (0.83, True), (0.67, False)):
        xi = _scale_img(x.flip(3) if flip else x, ratio, stride)
        out = model(xi)
        y = (out[0] if isinstance(out, (tuple, list)) else out).float().clone()
        y[..., :4] /= ratio
        if flip:
            y[..., 0] = w - y[..., 0]
        outs.append(y)
    return torch.cat(outs, 1)


class TTAModel(torch.nn.Module):
    """Wraps a model so the validator sees one callable doing ``tta_forward``."""

    def __init__(self, model: torch.nn.Module, stride: int) -> None:
        super().__init__()
        if getattr(model, "end2end", False):
            raise ValueError(
                f"--augment: {getattr(model, 'path', 'this model')} has NMS inside its graph (exported "
                "with --nms) and returns final detections, which cannot be merged across scales; "
                "validate a model exported without --nms"
            )
        self.model, self.stride = model, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return tta_forward(self.model, x, self.stride)


# --------------------------------------------------------------------------- one image


@torch.inference_mode()
def predict_image(
    model: Callable,
    img: np.ndarray,
    *,
    imgsz: int | tuple[int, int],
    stride: int,
    device: torch.device,
    conf: float = 0.25,
    iou: float = 0.45,
    classes: list[int] | None = None,
    agnostic: bool = False,
    max_det: int = 300,
    auto: bool = True,
    augment: bool = False,
) -> tuple[torch.Tensor, dict]:
    """Detect on one BGR image; returns (``det: [n, 6]`` xyxy original pixels, conf, cls) and
    the time split in ms ``{"preprocess", "inference", "nms"}``."""
    import time

    t0 = time.perf_counter()
    padded, lb = letterbox_image(img, imgsz, stride, auto)
    x = to_tensor(padded, device)
    t1 = time.perf_counter()
    if getattr(model, "end2end", False):  # NMS inside an exported graph (export --nms): no Python NMS
        det = _end_to_end(model, x, conf, iou, classes, agnostic, max_det, augment)
        t2 = time.perf_counter()
    else:
        if augment:
            pred = tta_forward(model, x, stride)
        else:
            out = model(x)
            pred = out[0] if isinstance(out, (tuple, list)) else out
        t2 = time.perf_counter()
        det = non_max_suppression(pred.float(), conf, iou, classes=classes, agnostic=agnostic, max_det=max_det)[0]
    det = det.cpu()
    if det.shape[0]:
        det[:, :4] = lb.to_original(det[:, :4])
    t3 = time.perf_counter()
    return det, {"preprocess": (t1 - t0) * 1e3, "inference": (t2 - t1) * 1e3, "nms": (t3 - t2) * 1e3}


def _end_to_end(
    model: Callable,
    x: torch.Tensor,
    conf: float,
    iou: float,
    classes: list[int] | None,
    agnostic: bool,
    max_det: int,
    augment: bool,
) -> torch.Tensor:
    """One image through a graph that ends in NMS: ``det [n, 6]`` in input pixels, best class per box."""
    if augment or (agnostic and not getattr(model, "agnostic", False)):
        raise ValueError(
            f"{getattr(model, 'path', 'this model')} has NMS inside its graph (exported with --nms), "
            "which is class-aware and runs on one scale: drop --augment / --agnostic-nms, re-export with "
            "--nms --agnostic-nms, or use a model exported without --nms"
        )
    dets, num = model(x, conf, iou, False)
    det = dets[0, : int(num[0])].float()
    if classes is not None:
        det = det[(det[:, 5:6] == torch.tensor(classes, dtype=det.dtype)).any(1)]
    return det[:max_det]
