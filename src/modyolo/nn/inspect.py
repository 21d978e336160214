"""Build-time checks and the per-layer report.

A dry run pushes a ``size × size`` zero image through the rows one by one and records each
layer's channels, spatial size and stride. Mistakes that otherwise surface at epoch 50 as zero
mAP (a Concat of maps at different strides, a Detect fed at strides 4/8/16, a block whose real
output channels differ from what its row declared) fail here with the layers named.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from modyolo.nn.row import ModelConfigError

if TYPE_CHECKING:
    from modyolo.nn.model import DetectionModel


@dataclass
class LayerReport:
    index: int
    from_: int | list[int]
    sources: list[int]  # absolute indices; -1 = the input image
    number: int
    params: int
    module: str
    args: list[Any]
    channels: int | list[int]
    size: tuple[int, int] | list[tuple[int, int]] | None  # (h, w) of the dry-run output
    stride: float | list[float] | None

    @property
    def shape_text(self) -> str:
        if self.size is None:
            return "-"
        if isinstance(self.size, list):
            return ", ".join(f"{h}x{w}" for h, w in self.size)
        return f"{self.size[0]}x{self.size[1]}"

    @property
    def stride_text(self) -> str:
        if self.stride is None:
            return "-"
        if isinstance(self.stride, list):
            return ",".join(f"{s:g}" for s in self.stride)
        return f"{self.stride:g}"


def _describe(out: Any, size: int) -> tuple[Any, Any, Any]:
    """(channels, (h, w), stride) of a layer output: a tensor or a list of tensors."""
    if isinstance(out, torch.Tensor) and out.dim() == 4:
        return int(out.shape[1]), (int(out.shape[2]), int(out.shape[3])), size / out.shape[2]
    if isinstance(out, (list, tuple)) and out and all(isinstance(t, torch.Tensor) and t.dim() == 4 for t in out):
        return ([int(t.shape[1]) for t in out], [(int(t.shape[2]), int(t.shape[3])) for t in out],
                [size / t.shape[2] for t in out])
    return None, None, None


def dry_run(model: "DetectionModel", size: int, ch: int) -> list[LayerReport]:
    """Run the rows on a zero image, check shapes between layers, return the report."""
    from modyolo.nn.head import Detect  # local: head imports nothing from here, but keep it cheap

    source = model.source
    reports: list[LayerReport] = []
    outputs: list[Any] = []
    was_training = model.training
    model.eval()
    x: Any = torch.zeros(1, ch, size, size)
    image_info = (ch, (size, size), 1.0)
    try:
        with torch.no_grad():
            for layer, module in zip(model.layers_meta, model.model):
                i, name = layer.index, layer.name
                items = layer.from_ if isinstance(layer.from_, list) else [layer.from_]
                sources = [-1 if (i == 0 and f == -1) else (f + i if f < 0 else f) for f in items]
                infos = [image_info if j == -1 else (reports[j].channels, reports[j].size, reports[j].stride)
                         for j in sources]
                inputs = [x if j == -1 else outputs[j] for j in sources]
                where = f"layer {i} ({name}) of {source}"
                if isinstance(module, Detect):
                    _check_detect_inputs(where, sources, infos)
                elif len(inputs) > 1:
                    _check_same_size(where, sources, infos)
                try:
                    out = module(inputs if isinstance(layer.from_, list) else inputs[0])
                except ModelConfigError:
                    raise
                except Exception as e:
                    shapes = ", ".join(f"layer {j}: {tuple(t.shape) if isinstance(t, torch.Tensor) else '?'}"
                                       for j, t in zip(sources, inputs))
                    raise ModelConfigError(
                        f"{where} failed in the build-time dry run on inputs ({shapes}): "
                        f"{type(e).__name__}: {e}. Check its args {layer.args} and the channels of "
                        f"the layers in 'from'"
                    ) from e
                channels, hw, stride = _describe(out, size)
                if not isinstance(module, Detect) and channels is not None and channels != layer.c2:
                    raise ModelConfigError(
                        f"{where}: declares {layer.c2} output channels but produces {channels}; "
                        "its from_row must return the channels the module really outputs"
                    )
                outputs.append(out)
                reports.append(LayerReport(i, layer.from_, sources, layer.number,
                                           sum(p.numel() for p in module.parameters()), name, layer.args,
                                           layer.c2 if channels is None else channels, hw, stride))
    finally:
        model.train(was_training)
    return reports


def _check_same_size(where: str, sources: list[int], infos: list[tuple]) -> None:
    sizes = [(j, info[1], info[2]) for j, info in zip(sources, infos)]
    for j, hw, stride in sizes:
        if isinstance(hw, list):
            raise ModelConfigError(f"{where}: input layer {j} returns {len(hw)} feature maps; "
                                   "pick one with an Index row first")
    first = sizes[0]
    for other in sizes[1:]:
        if other[1] != first[1]:
            raise ModelConfigError(
                f"{where}: inputs have different spatial sizes: layer {_name(first[0])} is "
                f"{first[1][0]}x{first[1][1]} (stride {first[2]:g}) but layer {_name(other[0])} is "
                f"{other[1][0]}x{other[1][1]} (stride {other[2]:g}). Tap a layer at the same stride, "
                "or add an Upsample / stride-2 Conv row before this one"
            )


def _check_detect_inputs(where: str, sources: list[int], infos: list[tuple]) -> None:
    strides = []
    for j, (_, hw, stride) in zip(sources, infos):
        if not isinstance(stride, float):
            raise ModelConfigError(f"{where}: input layer {_name(j)} is not a single feature map; "
                                   "use an Index row to pick one")
        strides.append(stride)
    if any(b <= a for a, b in zip(strides, strides[1:])):
        listing = ", ".join(f"layer {_name(j)} at stride {s:g}" for j, s in zip(sources, strides))
        raise ModelConfigError(
            f"{where}: its inputs must be at increasing strides (e.g. P3/8, P4/16, P5/32) but "
            f"they are {listing}. Point 'from' at layers of increasing stride"
        )
    bad = [(j, s) for j, s in zip(sources, strides) if s != int(s)]
    if bad:
        raise ModelConfigError(f"{where}: layer {_name(bad[0][0])} has a fractional stride {bad[0][1]:g}")


def _name(j: int) -> str:
    return "input" if j == -1 else str(j)


def count_flops(model: nn.Module, img_size: int | tuple[int, int] = 640) -> float:
    """FLOPs (2 per multiply-add, as yolov5 reports) of one forward at ``img_size``."""
    from torch.utils.flop_counter import FlopCounterMode

    h, w = (img_size, img_size) if isinstance(img_size, int) else img_size
    param = next(model.parameters())
    x = torch.zeros(1, model.yaml.get("ch", 3), h, w, device=param.device, dtype=param.dtype)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return float(counter.get_total_flops())


def format_info(reports: list[LayerReport], summary: dict[str, Any]) -> str:
    """yolov5-style table (+ output size and stride from the dry run) and the summary line."""
    head = f"{'':>3}{'from':>18}{'n':>3}{'params':>10}  {'module':<24}{'arguments':<30}{'out':>12}{'stride':>8}"
    lines = [head]
    for r in reports:
        args = str(r.args)
        args = args if len(args) <= 29 else args[:26] + "..."
        lines.append(f"{r.index:>3}{str(r.from_):>18}{r.number:>3}{r.params:10.0f}  {r.module:<24}"
                     f"{args:<30}{r.shape_text:>12}{r.stride_text:>8}")
    size = summary["img_size"]
    size_text = f"{size}" if isinstance(size, int) else f"{size[0]}x{size[1]}"
    lines.append(
        f"{summary['name']} summary: {summary['layers']} layers, {summary['parameters']:,} parameters, "
        f"{summary['gradients']:,} gradients, {summary['gflops']:.1f} GFLOPs@{size_text}"
    )
    return "\n".join(lines)
