"""Build-time checks and the per-layer report.

A dry run pushes a ``size × size`` zero image through the rows one by one and records each
layer's channels, spatial size and stride. Mistakes that otherwise surface at epoch 50 as zero
mAP (a Concat of maps at different strides, a Detect fed at strides 4/8/16, a block whose real
output channels differ from what its row declared) fail here with the layers named.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from modyolo.nn.row import ModelConfigError

LOGGER = logging.getLogger("modyolo.nn.inspect")

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
        return (
            [int(t.shape[1]) for t in out],
            [(int(t.shape[2]), int(t.shape[3])) for t in out],
            [size / t.shape[2] for t in out],
        )
    return None, None, None


def dry_run(model: DetectionModel, size: int, ch: int) -> list[LayerReport]:
    """Run the rows on a zero image, check shapes between layers, return the report.

    The rows run through the model's own forward loop (:meth:`DetectionModel.run_rows`); this
    function only observes each row: it checks the row's inputs before it runs, names the layer
    when it fails, and records what it produced.
    """
    from modyolo.nn.heads import is_head  # local: heads import nothing from here, but keep it cheap

    source = model.source
    reports: list[LayerReport] = []
    image_info = (ch, (size, size), 1.0)

    def observe(i: int, module: nn.Module, inp: Any) -> Any:
        layer = model.layers_meta[i]
        name, sources = layer.name, layer.sources
        inputs = inp if isinstance(layer.from_, list) else [inp]
        infos = [image_info if j == -1 else (reports[j].channels, reports[j].size, reports[j].stride) for j in sources]
        where = f"layer {i} ({name}) of {source}"
        if is_head(module) or hasattr(module, "set_strides"):  # a head
            _check_detect_inputs(where, sources, infos, module)
        elif len(inputs) > 1:
            _check_same_size(where, sources, infos)
        try:
            out = module(inp)
        except ModelConfigError:
            raise
        except Exception as e:
            shapes = ", ".join(
                f"layer {j}: {tuple(t.shape) if isinstance(t, torch.Tensor) else '?'}" for j, t in zip(sources, inputs)
            )
            raise ModelConfigError(
                f"{where} failed in the build-time dry run on inputs ({shapes}): "
                f"{type(e).__name__}: {e}. Check its args {layer.args} and the channels of "
                f"the layers in 'from'"
            ) from e
        channels, hw, stride = _describe(out, size)
        if not is_head(module) and channels is not None and channels != layer.c2:
            raise ModelConfigError(
                f"{where}: declares {layer.c2} output channels but produces {channels}; "
                "its from_row must return the channels the module really outputs"
            )
        reports.append(
            LayerReport(
                i,
                layer.from_,
                sources,
                layer.number,
                sum(p.numel() for p in module.parameters()),
                name,
                layer.args,
                layer.c2 if channels is None else channels,
                hw,
                stride,
            )
        )
        return out

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model.run_rows(torch.zeros(1, ch, size, size), observe)
    finally:
        model.train(was_training)
    return reports


def _check_same_size(where: str, sources: list[int], infos: list[tuple]) -> None:
    sizes = [(j, info[1], info[2]) for j, info in zip(sources, infos)]
    for j, hw, _stride in sizes:
        if isinstance(hw, list):
            raise ModelConfigError(
                f"{where}: input layer {j} returns {len(hw)} feature maps; pick one with an Index row first"
            )
    first = sizes[0]
    for other in sizes[1:]:
        if other[1] != first[1]:
            raise ModelConfigError(
                f"{where}: inputs have different spatial sizes: layer {_name(first[0])} is "
                f"{first[1][0]}x{first[1][1]} (stride {first[2]:g}) but layer {_name(other[0])} is "
                f"{other[1][0]}x{other[1][1]} (stride {other[2]:g}). Tap a layer at the same stride, "
                "or add an Upsample / stride-2 Conv row before this one"
            )


def _check_detect_inputs(where: str, sources: list[int], infos: list[tuple], head: Any = None) -> None:
    strides = []
    for j, (_, _hw, stride) in zip(sources, infos):
        if not isinstance(stride, float):
            raise ModelConfigError(
                f"{where}: input layer {_name(j)} is not a single feature map; use an Index row to pick one"
            )
        strides.append(stride)
    # a head with auxiliary inputs (yolov7's IAuxDetect: lead P3..P5, then aux P3..P5) lists its
    # levels more than once; each run of `nl` inputs must rise
    nl = int(getattr(head, "nl", 0) or len(strides))
    runs = [strides[i : i + nl] for i in range(0, len(strides), nl)] if len(strides) % nl == 0 else [strides]
    if any(b <= a for run in runs for a, b in zip(run, run[1:])):
        listing = ", ".join(f"layer {_name(j)} at stride {s:g}" for j, s in zip(sources, strides))
        raise ModelConfigError(
            f"{where}: its inputs must be at increasing strides (e.g. P3/8, P4/16, P5/32) but "
            f"they are {listing}. Point 'from' at layers of increasing stride"
        )
    bad = [(j, s) for j, s in zip(sources, strides) if s != int(s)]
    if bad:
        raise ModelConfigError(f"{where}: layer {_name(bad[0][0])} has a fractional stride {bad[0][1]:g}")
    ratios = head.anchor_stride_ratios(strides) if hasattr(head, "anchor_stride_ratios") else None
    if ratios:
        _check_anchor_fit(where, sources, strides, ratios)


def _check_anchor_fit(where: str, sources: list[int], strides: list[float], ratios: list[float]) -> None:
    """Anchors belong to strides: yolov5's P3-P5 anchors are 2-6x their level's stride (see
    ``modyolo.nn.head.ANCHOR_STRIDE_MAX``). A head fed one stride-2 row too early (strides 4/8/16)
    gets anchors up to 11.5 cells wide; its input strides, not the anchors, are then what's wrong."""
    from modyolo.nn.head import ANCHOR_STRIDE_MAX, ANCHOR_STRIDE_MIN

    listing = ", ".join(
        f"layer {_name(j)} at stride {s:g} (anchors {r:.1f}x the stride)" for j, s, r in zip(sources, strides, ratios)
    )
    fixes = "or give anchors sized for these strides, or write `anchors: 3` to let autoanchor fit them"
    if max(ratios) > ANCHOR_STRIDE_MAX:
        k = math.ceil(math.log2(max(ratios) / ANCHOR_STRIDE_MAX))
        fit = "/".join(f"{s * 2**k:g}" for s in strides)
        raise ModelConfigError(
            f"{where}: its anchors are sized for larger strides than its inputs have: {listing}; anchors "
            f"should be at most {ANCHOR_STRIDE_MAX:g}x their level's stride. The anchors fit strides {fit}: "
            f"point 'from' at layers of those strides (is a stride-2 row set to stride 1?), {fixes}"
        )
    if min(ratios) < ANCHOR_STRIDE_MIN:
        k = math.ceil(math.log2(ANCHOR_STRIDE_MIN / min(ratios)))
        fit = "/".join(f"{s / 2**k:g}" for s in strides)
        LOGGER.warning(
            "%s: its anchors are small for its input strides: %s (under %gx the stride, they fit strides "
            "%s). If this is not meant for tiny objects, point 'from' at layers of those strides, %s",
            where,
            listing,
            ANCHOR_STRIDE_MIN,
            fit,
            fixes,
        )


def _name(j: int) -> str:
    return "input" if j == -1 else str(j)


def count_flops(model: DetectionModel, img_size: int | tuple[int, int] = 640) -> float:
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
        lines.append(
            f"{r.index:>3}{r.from_!s:>18}{r.number:>3}{r.params:10.0f}  {r.module:<24}"
            f"{args:<30}{r.shape_text:>12}{r.stride_text:>8}"
        )
    size = summary["img_size"]
    size_text = f"{size}" if isinstance(size, int) else f"{size[0]}x{size[1]}"
    lines.append(
        f"{summary['name']} summary: {summary['layers']} layers, {summary['parameters']:,} parameters, "
        f"{summary['gradients']:,} gradients, {summary['gflops']:.1f} GFLOPs@{size_text}"
    )
    return "\n".join(lines)
