"""The YOLOv7 detection heads: ``IDetect`` and ``IAuxDetect`` (anchor-based, yolov5's decode).

Both are :class:`~modyolo.nn.head.Detect` subclasses, so the loss, the validator, the exporter
and ``compare`` treat them as the anchor head they are: same raw map layout
``[bs, na, ny, nx, 5 + nc]``, same decode, same ``export`` contract. What they add:

- ``IDetect``: YOLOR implicit knowledge around each output conv,
  ``m_i(x + ia_i) * im_i``. :meth:`IDetect.fuse` folds ``ia`` into the conv bias and ``im`` into
  its weight and bias, after which the head is a plain Detect (the cfg/deploy layout).
- ``IAuxDetect`` (the P6 models): ``from`` lists the lead inputs then as many auxiliary inputs;
  training returns ``2 * nl`` maps (lead then auxiliary, the OTA loss's lead/aux targets), eval
  and export return only the lead decode. Fusing drops nothing but the aux convs stop mattering.

``anchor_grid`` (anchors in pixels, ``[nl, 1, na, 1, 1, 2]``) is a buffer only so that yolov7's
state_dicts, which carry it, load with ``strict=True``; the decode uses ``anchors * stride``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch
from torch import nn

from modyolo.nn.blocks.yolov7 import ImplicitA, ImplicitM
from modyolo.nn.head import Detect
from modyolo.nn.registry import BLOCKS
from modyolo.nn.row import Channels, Row

_HEAD_EXAMPLE = [[-1, 1, "Conv", [32, 3, 2]], [-1, 1, "Conv", [32, 3, 2]], [-1, 1, "Conv", [32, 3, 2]]]


@BLOCKS.register()
class IDetect(Detect):
    """Detect with implicit knowledge. Row args: ``[nc, anchors]`` as for Detect."""

    yaml_example: ClassVar[dict] = {
        "rows": [*_HEAD_EXAMPLE, [[1, 2, 3], 1, "IDetect", ["nc", "anchors"]]],
        "stride": None,
    }
    uses_ota: ClassVar[bool] = True  # engine/ trains it with yolov7's OTA loss when the hyp's loss_ota is 1

    def __init__(
        self, nc: int = 80, anchors: list[list[float]] | tuple = (), ch: tuple[int, ...] = (), inplace: bool = True
    ) -> None:
        super().__init__(nc, anchors, ch, inplace)
        self.register_buffer("anchor_grid", self.anchors.clone().view(self.nl, 1, self.na, 1, 1, 2))
        self.ia: nn.ModuleList | None = nn.ModuleList(ImplicitA(c) for c in ch)
        self.im: nn.ModuleList | None = nn.ModuleList(ImplicitM(self.no * self.na) for _ in ch)

    def level(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Input map ``[bs, C_i, ny, nx]`` -> raw map ``[bs, na, ny, nx, no]`` of lead level i."""
        if self.ia is not None:
            x = self.im[i](self.m[i](self.ia[i](x)))
        else:  # implicit layers folded into m[i]
            x = self.m[i](x)
        bs, _, ny, nx = x.shape
        return x.view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()

    def forward(self, x: list[torch.Tensor]):
        maps = [self.level(i, x[i]) for i in range(self.nl)]
        if self.training:
            return maps
        pred = torch.cat([self.decode(p, i) for i, p in enumerate(maps)], 1)
        return pred if self.export else (pred, maps)

    def reset_grids(self) -> None:
        """Forget cached grids and keep ``anchor_grid`` equal to ``anchors * stride``: set_strides,
        autoanchor and the DDP anchor broadcast change ``anchors`` and then call this, so the
        yolov7 key a state_dict carries (and yolov7's own code decodes with) never goes stale."""
        super().reset_grids()
        with torch.no_grad():
            self.anchor_grid.copy_((self.anchors * self.stride.view(-1, 1, 1)).view_as(self.anchor_grid))

    @torch.no_grad()
    def fuse(self) -> None:
        """Fold ``ia`` (x + a) into each conv's bias and ``im`` (y * m) into its weight and bias.

        ``W (x + a) + b = W x + (b + W a)``; then ``(W x + b') * m = (m W) x + m b'``.
        """
        if self.ia is None:
            return
        for conv, ia, im in zip(self.m, self.ia, self.im):
            w = conv.weight  # [no*na, C, 1, 1]
            conv.bias += (w.flatten(1) @ ia.implicit.view(-1, 1)).view(-1)
            scale = im.implicit.view(-1)
            conv.bias *= scale
            conv.weight *= scale.view(-1, 1, 1, 1)
        self.ia = None
        self.im = None


@BLOCKS.register()
class IAuxDetect(IDetect):
    """IDetect for the lead inputs plus plain 1x1 convs (``m2``) on as many auxiliary inputs.

    Row args: ``[nc, anchors]`` with ``nl`` anchor levels and ``2 * nl`` layers in ``from``
    (lead P3..P6, then aux P3..P6).
    """

    yaml_example: ClassVar[dict] = {
        "rows": [
            *_HEAD_EXAMPLE,
            [-3, 1, "Conv", [16, 1, 1]],
            [-3, 1, "Conv", [16, 1, 1]],
            [-3, 1, "Conv", [16, 1, 1]],
            [[1, 2, 3, 4, 5, 6], 1, "IAuxDetect", ["nc", "anchors"]],
        ],
        "stride": None,
    }

    def __init__(
        self,
        nc: int = 80,
        anchors: list[list[float]] | tuple = (),
        ch: tuple[int, ...] = (),
        aux_ch: tuple[int, ...] = (),
        inplace: bool = True,
    ) -> None:
        super().__init__(nc, anchors, ch, inplace)
        self.m2 = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in aux_ch)

    @classmethod
    def from_row(cls, row: Row) -> tuple[nn.Module, Channels]:
        froms = row.from_ if isinstance(row.from_, list) else [row.from_]
        n = len(row.ch_in)
        if n % 2 or n < 2:
            raise row.error(
                f"'from' must list the lead layers then as many auxiliary layers (an even count), got {n}: {row.from_}"
            )
        if len(row.args) != 2:
            raise row.error("needs args [nc, anchors], e.g. [nc, anchors]")
        for f, c in zip(froms, row.ch_in):
            if isinstance(c, list):
                raise row.error(f"input layer {f} returns several feature maps; pick one with an Index row")
        lead = dataclasses.replace(
            row, ch_in=row.ch_in[: n // 2], from_=froms[: n // 2], args=[*row.args, tuple(row.ch_in[n // 2 :])]
        )
        return super().from_row(lead)  # validates nc / anchors against the lead inputs

    def forward(self, x: list[torch.Tensor]):
        maps = [self.level(i, x[i]) for i in range(self.nl)]
        if self.training:
            return maps + [self.aux_level(i, x[self.nl + i]) for i in range(self.nl)]
        pred = torch.cat([self.decode(p, i) for i, p in enumerate(maps)], 1)
        return pred if self.export else (pred, maps)

    def aux_level(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Auxiliary input map of level i -> raw map ``[bs, na, ny, nx, no]`` (training only)."""
        x = self.m2[i](x)
        bs, _, ny, nx = x.shape
        return x.view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()

    def set_strides(self, strides: torch.Tensor) -> None:
        """The graph reports a stride per ``from`` layer; the aux inputs repeat the lead ones."""
        super().set_strides(strides[: self.nl])

    def initialize_biases(self, class_frequency: torch.Tensor | None = None) -> None:
        """yolov5's objectness/class prior on the lead convs and on the auxiliary ones."""
        super().initialize_biases(class_frequency)
        for conv, s in zip(self.m2, self.stride.tolist()):
            b = conv.bias.detach().view(self.na, -1)
            b[:, 4] += math.log(8 / (640 / s) ** 2)
            if class_frequency is None:
                b[:, 5 : 5 + self.nc] += math.log(0.6 / (self.nc - 0.99999))
            else:
                b[:, 5 : 5 + self.nc] += torch.log(class_frequency / class_frequency.sum())
