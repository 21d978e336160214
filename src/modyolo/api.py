"""The Python API: ``model = modyolo.load("best.pt"); results = model.predict("images/")``.

A thin layer over ``inference.predictor`` (loading, letterbox, NMS), ``inference.sources`` (what a source
may be), ``inference.results`` (what comes back) and ``inference.val_run`` (validation), so the API and
the CLI verbs compute the same thing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from modyolo.inference.results import Result

if TYPE_CHECKING:
    from modyolo.engine.callbacks import Callbacks
    from modyolo.engine.config import TrainConfig
    from modyolo.engine.trainer import TrainResult

LOGGER = logging.getLogger("modyolo")


class Detector:
    """A loaded detector. ``model``: the network (a DetectionModel, or an exported backend);
    ``names``: class names by id; ``meta``: see ``predictor.load_model``."""

    def __init__(self, model: Any, names: list[str], meta: dict, device: torch.device, cfg: Any = None) -> None:
        self.model, self.names, self.meta, self.device, self._cfg = model, list(names), meta, device, cfg
        self.skipped: list[tuple[str, str]] = []  # (path, reason) of inputs the last predict could not read

    def __repr__(self) -> str:
        return f"Detector({self.meta.get('path')!r}, nc={len(self.names)}, stride={self.meta.get('stride')})"

    def predict(
        self,
        source: str | Path | np.ndarray | Sequence[str | Path] | Sequence[np.ndarray],
        conf: float = 0.25,
        iou: float = 0.45,
        imgsz: int = 640,
        classes: Sequence[int] | None = None,
        max_det: int = 300,
        agnostic: bool = False,
        augment: bool = False,
        keep_images: bool = True,
    ) -> list[Result]:
        """Detect on ``source``: an image/video path, folder, glob, ``.txt`` list, a list of paths, or
        BGR ``uint8 [h, w, 3]`` arrays.

        Returns one ``Result`` per readable image or video frame, boxes xyxy in original-image
        pixels. Unreadable inputs are logged, listed in ``self.skipped`` and left out.
        ``keep_images=False`` drops the pixels from the results (long videos), disabling ``plot``.
        """
        from modyolo.inference.predictor import check_imgsz, predict_image
        from modyolo.inference.sources import iter_source

        dynamic = bool(self.meta.get("dynamic", True))
        size = check_imgsz(imgsz, self.meta["stride"]) if dynamic else tuple(self.meta["imgsz"])
        self.skipped = []
        results = []
        for frame in iter_source(source):
            if frame.image is None:
                LOGGER.warning("%s: skipped, %s", frame.describe(), frame.error)
                self.skipped.append((frame.path, frame.error))
                continue
            det, speed = predict_image(
                self.model,
                frame.image,
                imgsz=size,
                stride=self.meta["stride"],
                device=self.device,
                conf=conf,
                iou=iou,
                classes=list(classes) if classes is not None else None,
                agnostic=agnostic,
                max_det=max_det,
                auto=dynamic,
                augment=augment,
            )
            path = frame.path if frame.kind != "video" else f"{frame.path}#{frame.frame}"
            results.append(
                Result.from_detections(
                    det, path, frame.image if keep_images else None, frame.image.shape[:2], self.names, speed
                )
            )
        return results

    __call__ = predict

    def val(
        self,
        data: str | Path = "shapes",
        imgsz: int = 640,
        batch_size: int = 32,
        conf: float = 0.001,
        iou: float = 0.6,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Validate on ``data``'s val split; returns P, R, mAP50, mAP50-95, fitness, speed, save_dir.

        Other keywords are ``modyolo val``'s flags with underscores (``save_json=True``,
        ``task="test"``, ``plots=False``, ``project=...``).
        """
        from modyolo.inference.val_run import validate_model

        kwargs.setdefault("device", self.device)
        kwargs.setdefault("cfg", self._cfg)
        outcome = validate_model(
            self.model,
            self.names,
            self.meta,
            data=data,
            imgsz=imgsz,
            batch_size=batch_size,
            conf_thres=conf,
            iou_thres=iou,
            **kwargs,
        )
        return outcome.summary()

    def info(self, imgsz: int = 640, verbose: bool = True) -> dict[str, Any]:
        """Layers, parameters and GFLOPs at ``imgsz`` (printed when verbose)."""
        if hasattr(self.model, "info"):
            return self.model.info(imgsz, verbose=verbose)
        summary = {
            "name": Path(str(self.meta.get("path"))).name,
            "format": self.meta.get("format"),
            "nc": len(self.names),
            "stride": self.meta.get("stride"),
        }
        if verbose:
            print(summary)
        return summary

    def export(self, *args: Any, **kwargs: Any) -> Any:
        """``modyolo.deploy.export.export`` on these weights (needs the deploy module)."""
        try:
            from modyolo.deploy.export import export
        except ImportError as e:
            raise NotImplementedError(
                "export is not available in this modyolo installation (modyolo.deploy.export is missing)"
            ) from e
        return export(self.meta["path"], *args, **kwargs)


def load(
    weights: str | Path, device: str | torch.device = "cpu", fuse: bool = True, cfg: str | Path | dict | None = None
) -> Detector:
    """Load a checkpoint, a model YAML (fresh weights), a bare state_dict (with ``cfg``) or an
    exported ``.onnx`` / ``.torchscript`` file as a ``Detector``."""
    from modyolo.inference.predictor import load_model, select_device

    dev = select_device(device)
    model, names, meta = load_model(weights, device=dev, fuse=fuse, cfg=cfg)
    return Detector(model, names, meta, dev, cfg)


def train(config: TrainConfig | None = None, *, callbacks: Callbacks | None = None, **options: Any) -> TrainResult:
    """Train one run: ``modyolo.train(data="shapes", cfg="yolov5n.yaml", epochs=10, imgsz=320)``.

    ``config``: a ``TrainConfig`` (``options`` then override its fields), or None (``options`` are
    the fields: ``modyolo train``'s flags, underscores for dashes; an unknown one names the nearest).
    ``callbacks``: your callbacks (they run after the trainer's own, before its reports; see
    ``engine/default_callbacks.py``). Validation uses ``eval.validator.validate``, as ``modyolo
    train`` does. Returns the run folder, last/best paths, final metrics and per-epoch history.
    """
    from modyolo.engine.config import TrainConfig
    from modyolo.engine.trainer import Trainer
    from modyolo.eval.validator import validate

    if config is None:
        config = TrainConfig.from_dict(options)
    elif options:
        config = TrainConfig.from_dict({**config.to_dict(), **options})
    return Trainer(config, callbacks, evaluator=validate).fit()


__all__ = ["Detector", "Result", "load", "train"]
