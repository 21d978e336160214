"""DetectionModel: the layer graph built from a YAML, with strides, fusing and a summary."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from modyolo.nn.graph import Layer, build_layers, load_model_yaml
from modyolo.nn.head import Detect
from modyolo.nn.heads import is_head, needs_nms
from modyolo.nn.inspect import LayerReport, count_flops, dry_run, format_info
from modyolo.nn.row import ModelConfigError

LOGGER = logging.getLogger("modyolo.nn.model")
STRIDE_PROBE = 256  # image size of the dry run that finds strides (yolov5 uses the same)
#: ``call(index, module, inputs) -> output``: runs one row of :meth:`DetectionModel.run_rows`.
RowCall = Callable[[int, nn.Module, Any], Any]


class DetectionModel(nn.Module):
    """A detector declared by a yolov5-format model YAML.

    ``model.model`` is an ``nn.Sequential`` of the rows, so state_dict keys read
    ``model.<row>.<param>`` exactly as yolov5's do.
    """

    def __init__(
        self,
        cfg: str | Path | dict = "yolov5s.yaml",
        ch: int = 3,
        nc: int | None = None,
        anchors: list | int | None = None,
        pretrained: dict[int, str] | None = None,
    ) -> None:
        super().__init__()
        self.yaml, self.source = load_model_yaml(cfg)
        if nc is not None and nc != self.yaml.get("nc"):
            self.yaml["nc"] = nc  # the data decides the class count, as in yolov5
        if anchors is not None:
            self.yaml["anchors"] = anchors
        self.yaml["ch"] = ch
        layers, self.save = build_layers(self.yaml, self.source, ch, extra={"pretrained": pretrained or {}})
        self.layers_meta: list[Layer] = layers
        self.model = nn.Sequential(*(layer.module for layer in layers))
        self.routes = [_route(layer.sources, isinstance(layer.from_, list), layer.index) for layer in layers]
        self._save = set(self.save)
        self.nc = int(self.yaml["nc"])
        self.names = [str(i) for i in range(self.nc)]
        self.fused = False

        self._load_unclaimed_pretrained(pretrained or {})
        self.report: list[LayerReport] = dry_run(self, STRIDE_PROBE, ch)
        head = self.head
        if head is not None:
            strides = self._head_strides()
            head.set_strides(torch.tensor(strides, dtype=torch.float32))
            head.initialize_biases()
        self.stride = head.stride.clone() if head is not None else torch.tensor([32.0])

    def _load_unclaimed_pretrained(self, pretrained: dict[int, str]) -> None:
        """Rows that load their own weights (TorchVision / Timm) record a transfer report; any
        other row named in ``pretrained`` gets the native-layout transfer, never silence."""
        from modyolo.nn.pretrained import load_backbone_weights

        for index, path in pretrained.items():
            if not 0 <= index < len(self.model):
                raise ModelConfigError(
                    f"pretrained weights given for layer {index}, but {self.source} has layers 0..{len(self.model) - 1}"
                )
            if getattr(self.model[index], "transfer_report", None) is None:
                # a native row (e.g. a ResNet stage): map the file onto the whole native backbone
                load_backbone_weights(self, path)  # logs its transfer report (INFO)

    # -- forward ------------------------------------------------------------------------------
    def forward(
        self,
        x: torch.Tensor,
        conf_thres: float | None = None,
        iou_thres: float | None = None,
        multi_label: bool = False,
    ):
        """The head's output. With ``conf_thres``, on a model whose head needs no NMS (:attr:`end2end`):
        ``(dets [B, K, 6] x1, y1, x2, y2, score, class sorted by score, num [B])``, the rows
        ``dets[b, :num[b]]`` scoring above ``conf_thres`` (the protocol validation and detection use
        for graphs that output final detections); ``iou_thres`` / ``multi_label`` mean nothing there."""
        x = self.run_rows(x)
        if conf_thres is not None and self.end2end:
            dets = x[0] if isinstance(x, tuple) else x
            return dets, (dets[..., 4] > conf_thres).sum(1)
        return x

    def run_rows(self, x: torch.Tensor, call: RowCall | None = None) -> Any:
        """The one walk of the layer graph: each row gets the outputs its ``from`` names.

        x: ``Tensor[B, ch, H, W]``. Returns the last row's output (the head's contract).
        call: runs one row instead of ``module(inputs)``: ``call(index, module, inputs)`` must
        return the row's output. The build-time dry run (:func:`modyolo.nn.inspect.dry_run`)
        and the per-layer profile (``modyolo.tools.profile``) observe the forward this way, so
        routing is written once. ``inputs`` is a tensor, or a list when the row's ``from`` is a list.
        """
        outputs: list[Any] = []
        y: Any = x
        for i, (module, route) in enumerate(zip(self.model, self.routes)):
            if route is not None:
                y = outputs[route] if isinstance(route, int) else [y if j == -2 else outputs[j] for j in route]
            y = module(y) if call is None else call(i, module, y)
            outputs.append(y if i in self._save else None)
        return y

    @property
    def end2end(self) -> bool:
        """True in eval mode when the head outputs final detections (an NMS-free head): no NMS follows."""
        return not self.training and not needs_nms(self.head) and self.head is not None

    # -- structure ------------------------------------------------------------------------------
    @property
    def head(self) -> Detect | None:
        """The last row when it is a detection head (anchor-based Detect, DetectAF, ...), else None."""
        last = self.model[-1]
        # other head families follow Detect's protocol duck-typed (see modyolo.nn.heads)
        return cast("Detect | None", last) if isinstance(last, Detect) or is_head(last) else None

    def _head_strides(self) -> list[float]:
        head_row = self.report[-1]
        return [cast(float, self.report[j].stride) for j in head_row.sources]  # floats: the dry run checked

    def fuse(self) -> DetectionModel:
        """Fold BatchNorm into the preceding convolution for inference (in place)."""
        from modyolo.nn.fuse import fuse_model

        fuse_model(self)
        self.fused = True
        return self

    def info(self, img_size: int | tuple[int, int] = 640, verbose: bool = True) -> dict[str, Any]:
        """Per-layer table (when verbose) and a summary: layers, params, gradients, GFLOPs."""
        n_params = sum(p.numel() for p in self.parameters())
        n_grads = sum(p.numel() for p in self.parameters() if p.requires_grad)
        try:
            gflops = count_flops(self, img_size) / 1e9
        except Exception as e:  # noqa: BLE001 - a block the FLOP counter cannot trace: say so
            gflops = float("nan")
            LOGGER.warning("GFLOPs unavailable: %s: %s", type(e).__name__, e)
        summary = {
            "name": Path(self.source).stem,
            "layers": len(list(self.modules())),
            "parameters": n_params,
            "gradients": n_grads,
            "gflops": gflops,
            "img_size": img_size,
        }
        if verbose:
            print(format_info(self.report, summary))
        return summary

    def to(self, *args, **kwargs):
        """``nn.Module.to``, except that a ``memory_format`` applies to the tensors it is defined for.

        PyTorch's own ``to(memory_format=torch.channels_last)`` raises for any 5-D parameter
        ("required rank 4 tensor"), and ``Dynamic_conv2d`` keeps its K kernels as one
        ``[K, c2, c1/g, k, k]`` bank (the blog-post layout, so its state_dicts load). Here
        ``channels_last`` reorders the 4-D tensors, ``channels_last_3d`` the 5-D ones, and any
        other rank is left as it is; values never change, only strides.
        """
        device, dtype, non_blocking, memory_format = torch._C._nn._parse_to(*args, **kwargs)
        if memory_format is None:
            return super().to(*args, **kwargs)
        if device is not None or dtype is not None:
            super().to(device=device, dtype=dtype, non_blocking=non_blocking)
        return self.to_memory_format(memory_format)

    def to_memory_format(self, memory_format: torch.memory_format) -> DetectionModel:
        """Reorder parameters and buffers to ``memory_format`` where their rank allows it (in place)."""
        rank = {torch.channels_last: 4, torch.channels_last_3d: 5}.get(memory_format)

        def convert(t: torch.Tensor) -> torch.Tensor:
            if rank is not None and t.dim() != rank:
                return t
            return t.contiguous(memory_format=memory_format)

        return self._apply(convert)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        if self.head is not None:
            self.head.reset_grids()
        return result


def _route(sources: list[int], listed: bool, i: int) -> int | list[int] | None:
    """How row ``i`` reads its inputs, from the absolute ``sources`` the builder resolved:
    None = the previous output; an int = that saved output; a list (``from`` was a list) of
    saved outputs, where -2 stands for the previous output (which is not saved)."""
    if not listed:
        return None if sources[0] == i - 1 else sources[0]
    return [-2 if j == i - 1 else j for j in sources]


@contextlib.contextmanager
def evaluating(model: nn.Module):
    """Temporarily put a model in eval mode (restoring the previous mode)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


__all__ = ["DetectionModel", "ModelConfigError", "evaluating"]
