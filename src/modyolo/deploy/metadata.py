"""What an exported model says about itself: class names, stride, input size, batch, origin.

The same fields go into both formats, as plain text, never pickle:

- ONNX: one ``metadata_props`` entry per field, the value JSON-encoded (``names`` ->
  ``'["person", "car"]'``), so Netron and ``onnx.load(...).metadata_props`` show it readably;
- TorchScript: one ``config.txt`` extra file holding the whole dict as JSON.

A backend reads them back and can then letterbox, run and label exactly as the ``.pt`` would.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

FORMAT = "modyolo.export"
OUTPUT_LAYOUT = "pred[B,N,5+nc]: cx,cy,w,h (input pixels), objectness, class scores (sigmoid)"
TORCHSCRIPT_FILE = "config.txt"


class MetadataError(ValueError):
    """A file whose metadata is missing or unreadable; the message says how to re-export it."""


@dataclass
class ExportMetadata:
    """Facts a backend needs to use an exported detector like its ``.pt``.

    imgsz: ``(h, w)`` the model was exported at (the only size a non-dynamic model accepts).
    batch: the fixed batch size, or ``None`` when the batch axis is dynamic.
    stride: the largest level stride; dynamic input sizes must be multiples of it.
    """

    names: list[str]
    stride: int
    imgsz: tuple[int, int]
    batch: int | None
    dynamic: bool
    nc: int = 0
    strides: list[int] = field(default_factory=list)
    model: str = ""  # the model YAML name (or source) the weights were built from
    version: str = ""  # modyolo version that exported the file
    exporter: str = ""  # "torch.onnx (torchscript)" / "torch.onnx (dynamo)" / "torch.jit.trace"
    opset: int | None = None
    nms: bool = False  # True when the graph ends in NMS and outputs detections, not pred
    max_det: int = 0  # with nms: the rows of the detections output per image
    agnostic: bool = False  # with nms: suppression across classes (export --agnostic-nms, or one class)
    precision: str = "fp32"  # fp32 | int8 (OpenVINO post-training quantisation)
    calibration: str = ""  # int8: the calibration images and the mAP50-95 check (fp32 vs int8)
    output: str = OUTPUT_LAYOUT
    format: str = FORMAT

    def __post_init__(self) -> None:
        self.names = [str(n) for n in self.names]
        self.imgsz = (int(self.imgsz[0]), int(self.imgsz[1]))
        self.nc = self.nc or len(self.names)

    # -- encodings ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["imgsz"] = list(self.imgsz)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def to_onnx_props(self) -> dict[str, str]:
        """``{key: json value}`` for ``ModelProto.metadata_props``."""
        return {k: json.dumps(v) for k, v in self.to_dict().items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str) -> ExportMetadata:
        known = {f.name for f in fields(cls)}
        missing = [k for k in ("names", "stride", "imgsz", "batch", "dynamic") if k not in data]
        if data.get("format") != FORMAT or missing:
            raise MetadataError(
                f"{source} has no modyolo metadata (format {data.get('format')!r}, missing {missing}); "
                "it was not exported by `modyolo export`. Re-export it from the .pt with "
                "`modyolo export --weights best.pt --include onnx torchscript`"
            )
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except (TypeError, ValueError, IndexError) as e:
            raise MetadataError(f"{source}: unreadable metadata {data!r}: {e}") from e

    @classmethod
    def from_json(cls, text: str | bytes, source: str) -> ExportMetadata:
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise MetadataError(f"{source}: metadata is not JSON ({e}); re-export the model") from e
        if not isinstance(data, dict):
            raise MetadataError(f"{source}: metadata must be a JSON object, got {type(data).__name__}")
        return cls.from_dict(data, source)

    @classmethod
    def from_onnx_props(cls, props: dict[str, str], source: str) -> ExportMetadata:
        data: dict[str, Any] = {}
        for k, v in props.items():
            try:
                data[k] = json.loads(v)
            except json.JSONDecodeError:
                data[k] = v  # a prop another tool added as plain text; ignored unless ours
        return cls.from_dict(data, source)
