"""The anchor-based YOLOv5 detection head.

Output contract (yolov5's):
- training: ``list[nl]`` of raw maps ``Tensor[bs, na, ny, nx, 5 + nc]`` (no sigmoid);
- inference: ``(pred, raw_maps)`` where ``pred: Tensor[bs, N, 5 + nc]`` holds
  ``cx, cy, w, h`` in input pixels then sigmoid objectness and class scores;
- ``export = True``: just ``pred`` (one output for ONNX / TorchScript).

``anchors`` is a buffer in *grid units* (pixels / stride) once the model has found its strides,
as in yolov5, so yolov5 state_dicts (which contain it) load unchanged.
"""

from __future__ import annotations

import logging
import math
from typing import ClassVar

import torch
from torch import nn

from modyolo.nn.registry import BLOCKS
from modyolo.nn.row import Channels, Row

LOGGER = logging.getLogger("modyolo.nn.head")

# How large a level's anchors are relative to the stride of the map that predicts them: the
# geometric mean of sqrt(w * h) over the level's anchors, divided by the stride. yolov5's and
# yolov7's shipped anchors give 2.4 / 3.6 / 5.8 (P3-P5 models) and 4.8 / 7.1 / 8.6 / 9.6 (P6
# models); yolov5's P3-P5 anchors on a head fed at strides 4/8/16 give 4.8 / 7.2 / 11.5.
ANCHOR_STRIDE_MAX = 10.5  # above: anchors sized for coarser maps, the head taps layers too early (error)
ANCHOR_STRIDE_MIN = 0.5  # below: anchors under half a grid cell, maybe tiny-object anchors (warning)


def decode_xywh(
    sig_xy: torch.Tensor, sig_wh: torch.Tensor, anchor_wh: torch.Tensor, offset: torch.Tensor | float = -0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """yolov5's box parametrisation, written once: ``xy = 2 * sigmoid(t_xy) + offset``,
    ``wh = (2 * sigmoid(t_wh)) ** 2 * anchor``.

    sig_xy, sig_wh: ``[..., 2]`` sigmoids of the raw outputs. Units follow the arguments:
    ``offset = -0.5`` gives xy relative to the cell's corner (the loss, grid cells); a grid
    tensor holding ``(gx - 0.5, gy - 0.5)`` gives absolute cells (the head, which then scales
    by the stride). ``anchor_wh`` in grid units gives wh in cells, in pixels gives pixels.
    Returns ``(xy, wh)``, each ``[..., 2]``.
    """
    return sig_xy * 2 + offset, (sig_wh * 2) ** 2 * anchor_wh


def check_anchor_order(head: Detect) -> bool:
    """Flip an anchor head's levels if their anchor-size order runs against the stride order.

    Compared and flipped in pixels (``anchors`` are grid units: pixels / stride), as yolov5 does
    since flipping grid units would give each level the wrong pixel sizes. ``head.anchors``
    ``[nl, na, 2]`` and ``head.stride`` ``[nl]`` must be set. Returns True if it flipped.
    """
    stride = head.stride.detach().float().view(-1, 1, 1)
    px = head.anchors.detach().float() * stride
    area = px.prod(-1).mean(-1)
    da, ds = area[-1] - area[0], stride[-1, 0, 0] - stride[0, 0, 0]
    if da != 0 and torch.sign(da) != torch.sign(ds):
        with torch.no_grad():  # flip in pixels, then back to each level's grid units
            head.anchors.copy_((px.flip(0) / stride).to(head.anchors))
        return True
    return False


@BLOCKS.register()
class Detect(nn.Module):
    """Row args: ``[nc, anchors]`` with anchors a list of ``[w0,h0, w1,h1, ...]`` per level (pixels)
    or an int (anchors per level, to be fitted by autoanchor)."""

    export = False  # set by the exporter: return only the decoded tensor
    fitted_later = False  # anchors given as a count: autoanchor fits them, nothing to check at build
    anchors: torch.Tensor  # buffer [nl, na, 2]: pixels until set_strides, then grid units
    stride: torch.Tensor  # buffer [nl]
    m: nn.ModuleList  # one 1x1 output conv per level
    yaml_example: ClassVar[dict] = {
        "rows": [
            [-1, 1, "Conv", [32, 3, 2]],
            [-1, 1, "Conv", [32, 3, 2]],
            [-1, 1, "Conv", [32, 3, 2]],
            [[1, 2, 3], 1, "Detect", ["nc", "anchors"]],
        ],
        "stride": None,  # a head: its input strides are checked instead (2, 4, 8 here)
    }

    def __init__(
        self, nc: int = 80, anchors: list[list[float]] | tuple = (), ch: tuple[int, ...] = (), inplace: bool = True
    ) -> None:
        super().__init__()
        self.nc = nc
        self.no = nc + 5
        self.nl = len(anchors)
        self.na = len(anchors[0]) // 2
        self.inplace = inplace
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32).view(self.nl, -1, 2))
        self.register_buffer("stride", torch.ones(self.nl), persistent=False)
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch)
        self._grids: dict[tuple[int, int, int, torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def from_row(cls, row: Row) -> tuple[nn.Module, Channels]:
        if len(row.args) < 2:  # ultralytics' `Detect [nc]`: no anchors means the anchor-free head
            from modyolo.nn.heads.anchor_free import DetectAF

            return DetectAF.from_row(row)
        nc, anchors, *rest = row.args
        if not isinstance(nc, int) or isinstance(nc, bool) or nc < 1:
            raise row.error(f"nc must be a positive integer, got {nc!r}")
        n_in = len(row.ch_in)
        if isinstance(anchors, int) and not isinstance(anchors, bool):
            anchors = [list(range(anchors * 2))] * n_in  # placeholders; autoanchor fits them
        if not isinstance(anchors, list) or not all(isinstance(a, list) and a for a in anchors):
            raise row.error(f"anchors must be a list of [w, h, w, h, ...] lists or an int, got {anchors!r}")
        if len(anchors) != n_in:
            raise row.error(f"has {len(anchors)} anchor levels but 'from' names {n_in} layers ({row.from_})")
        sizes = {len(a) for a in anchors}
        if len(sizes) != 1 or sizes.pop() % 2:
            raise row.error("every anchor level needs the same, even number of values (w, h pairs)")
        for f, c in zip(row.from_ if isinstance(row.from_, list) else [row.from_], row.ch_in):
            if isinstance(c, list):
                raise row.error(f"input layer {f} returns several feature maps; pick one with an Index row")
        module = row.construct(cls, nc, anchors, tuple(row.ch_in), *rest)
        assert isinstance(module, Detect)
        module.fitted_later = isinstance(row.args[1], int)  # placeholder anchors: nothing to check yet
        return module, 0

    def forward(self, x: list[torch.Tensor]):
        x = list(x)  # never modify the caller's list (the graph's saved outputs)
        z = []
        for i in range(self.nl):
            x[i] = self.m[i](x[i])
            bs, _, ny, nx = x[i].shape
            x[i] = x[i].view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
            if not self.training:
                z.append(self.decode(x[i], i))
        if self.training:
            return x
        return torch.cat(z, 1) if self.export else (torch.cat(z, 1), x)

    def decode(self, p: torch.Tensor, i: int) -> torch.Tensor:
        """Raw level-i map ``[bs, na, ny, nx, no]`` -> ``[bs, na*ny*nx, no]`` (pixels, sigmoids)."""
        bs, _, ny, nx, _ = p.shape
        grid, anchor_grid = self._grid(nx, ny, i, p)
        xy, wh, conf = p.sigmoid().split((2, 2, self.nc + 1), 4)
        xy, wh = decode_xywh(xy, wh, anchor_grid, grid)  # xy in cells, wh in pixels
        xy = xy * self.stride[i]
        return torch.cat((xy, wh, conf), 4).view(bs, self.na * nx * ny, self.no)

    def _grid(self, nx: int, ny: int, i: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key = (i, nx, ny, like.device, like.dtype)
        if torch.jit.is_tracing() or torch.compiler.is_compiling() or key not in self._grids:
            y = torch.arange(ny, device=like.device, dtype=like.dtype)
            x = torch.arange(nx, device=like.device, dtype=like.dtype)
            yv, xv = torch.meshgrid(y, x, indexing="ij")
            shape = (1, self.na, ny, nx, 2)
            grid = torch.stack((xv, yv), 2).expand(shape) - 0.5
            anchor_grid = (self.anchors[i] * self.stride[i]).view(1, self.na, 1, 1, 2).expand(shape).to(like.dtype)
            if torch.jit.is_tracing() or torch.compiler.is_compiling():
                return grid, anchor_grid
            self._grids[key] = (grid, anchor_grid)
        return self._grids[key]

    def reset_grids(self) -> None:
        """Forget cached grids (after anchors or strides change)."""
        self._grids.clear()

    def _apply(self, fn, recurse=True):  # .to()/.half() move buffers; cached grids must follow
        self._grids = {}
        return super()._apply(fn, recurse)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing, unexpected, errors):
        """yolov7's Detect (the head of its cfg/deploy models) also stores ``anchor_grid``: the
        anchors in pixels, ``[nl, 1, na, 1, 1, 2]``. Here that is derived (``anchors * stride``), so
        a given one is checked against the anchors and taken in, and from then on this head writes
        it back (``_save_to_state_dict``): a yolov7 state_dict loads strictly and round-trips key
        for key, while yolov5's (which has no such key) stay as they are."""
        key = prefix + "anchor_grid"
        if key in state_dict and "anchor_grid" not in self._buffers:
            grid = state_dict.pop(key)
            anchors = state_dict.get(prefix + "anchors", self.anchors)
            shape = (self.nl, 1, self.na, 1, 1, 2)
            if tuple(grid.shape) != shape:
                errors.append(
                    f"size mismatch for {key}: copying a param with shape {tuple(grid.shape)}, expected {shape}"
                )
            elif not torch.allclose(
                grid.float().view(self.nl, self.na, 2),
                anchors.float().to(grid.device) * self.stride.to(grid.device).view(-1, 1, 1),
                rtol=1e-3,
                atol=1e-3,
            ):
                errors.append(f"{key} (anchors in pixels) disagrees with {prefix}anchors x the head's strides")
            else:
                self.writes_anchor_grid = True
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing, unexpected, errors)

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        if getattr(self, "writes_anchor_grid", False) and "anchor_grid" not in self._buffers:
            grid = (self.anchors * self.stride.view(-1, 1, 1)).view(self.nl, 1, self.na, 1, 1, 2)
            destination[prefix + "anchor_grid"] = grid if keep_vars else grid.detach()

    def anchor_stride_ratios(self, strides: list[float]) -> list[float] | None:
        """Per level: the anchors' size (geometric mean of sqrt(w*h), pixels) over the level's stride.

        Call before ``set_strides`` (anchors still in pixels, as the YAML gives them). None when
        the anchors are placeholders that autoanchor fits to the data (``anchors: 3``).
        """
        if getattr(self, "fitted_later", False):
            return None
        size = self.anchors.double().clamp(min=1e-6).prod(-1).sqrt().log().mean(-1).exp()  # [nl]
        return [float(a) / s for a, s in zip(size.tolist(), strides)]

    def set_strides(self, strides: torch.Tensor) -> None:
        """Record level strides, put anchors into grid units and check their order (yolov5)."""
        self.stride.copy_(strides)
        self.anchors /= strides.view(-1, 1, 1)
        if check_anchor_order(self):
            LOGGER.info(
                "Detect: anchor levels reversed so that the smallest anchors sit at the smallest stride (%s)",
                "/".join(f"{s:g}" for s in strides.tolist()),
            )
        self.reset_grids()

    def initialize_biases(self, class_frequency: torch.Tensor | None = None) -> None:
        """yolov5's prior: ~8 objects per 640² image for objectness, 0.6/nc for classes."""
        for conv, s in zip(self.m, self.stride.tolist()):
            assert isinstance(conv, nn.Conv2d) and conv.bias is not None
            b = conv.bias.detach().view(self.na, -1)
            b[:, 4] += math.log(8 / (640 / s) ** 2)
            if class_frequency is None:
                b[:, 5 : 5 + self.nc] += math.log(0.6 / (self.nc - 0.99999))
            else:
                b[:, 5 : 5 + self.nc] += torch.log(class_frequency / class_frequency.sum())
