"""modyolo: YOLOv5-style detectors declared in YAML, with swappable backbones.

Public API (imported on first use, so ``import modyolo`` stays light)::

    model = modyolo.load("runs/train/exp/weights/best.pt")
    results = model.predict("images/")          # list[Result]
    modyolo.train(data="shapes", cfg="yolov5n.yaml", epochs=10, imgsz=320)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> (module, attribute)
_LAZY = {
    "load": ("modyolo.api", "load"),
    "Detector": ("modyolo.api", "Detector"),
    "Result": ("modyolo.inference.results", "Result"),
    "train": ("modyolo.api", "train"),
    "DetectionModel": ("modyolo.nn.model", "DetectionModel"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'modyolo' has no attribute {name!r}")
    module, attr = _LAZY[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
