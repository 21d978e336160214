"""Whole backbones from torchvision or timm as one YAML row, plus ``Index`` to pick a map.

::

    backbone:
      [[-1, 1, TorchVision, [resnet50, [2, 3, 4]]],   # 0: list of 3 maps (strides 8, 16, 32)
       [0, 1, Index, [0]],                             # 1: P3/8
       [0, 1, Index, [1]],                             # 2: P4/16
       [0, 1, Index, [2]]]                             # 3: P5/32

Row args: ``[name, out_indices=[2, 3, 4], weights=None]``. ``out_indices`` follow timm's
convention: index ``i`` is the feature map at stride ``2**(i + 1)`` relative to the row's input
(0 = stride 2, ..., 4 = stride 32). ``weights`` is a local state_dict file (``.pt``, ``.pth``,
``.safetensors``) of the same architecture; ``DetectionModel(cfg, pretrained={row: path})`` does
the same without editing the YAML. Nothing is ever downloaded.

Channels and strides come from the model itself — timm's ``feature_info``, or for torchvision a
dry run of the model's trunk — so the user never types them. ``width_multiple`` does **not**
apply to these rows (a pretrained network's widths are fixed); head rows after them scale as
usual. If the row's input does not have 3 channels the first conv is rebuilt for it (its
pretrained tensor is then reported as a shape mismatch).
"""

from __future__ import annotations

import difflib
import logging
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from modyolo.nn.registry import BLOCKS
from modyolo.nn.row import Channels, Row

LOGGER = logging.getLogger("modyolo")
PROBE = 256  # dry-run size for torchvision strides: divisible by 32, small enough to be quick
DEFAULT_OUT = [2, 3, 4]
# Children that hold stages rather than being one (expanded one level) and the classifier part
# (where the trunk ends) of torchvision classifiers.
_CONTAINERS = {"features", "trunk_output", "layers"}
_HEAD_TYPES = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Linear, nn.Flatten, nn.Dropout)
_HEAD_NAMES = {"avgpool", "fc", "classifier", "head", "heads", "dropout", "flatten"}


def _check_indices(row: Row, out_indices: Any) -> list[int]:
    if isinstance(out_indices, int) and not isinstance(out_indices, bool):
        out_indices = [out_indices]
    if not isinstance(out_indices, list) or not out_indices or not all(
            isinstance(i, int) and not isinstance(i, bool) and 0 <= i <= 6 for i in out_indices):
        raise row.error(f"out_indices must be a list of stage indices 0..6 (i -> stride 2**(i+1)), "
                        f"e.g. [2, 3, 4]; got {out_indices!r}")
    return out_indices


def _split_args(row: Row) -> tuple[Any, Any, Any]:
    """``[name, out_indices=[2, 3, 4], weights=None]`` -> (name, out_indices, weights)."""
    if not 1 <= len(row.args) <= 3:
        raise row.error(f"args must be [name, out_indices=[2, 3, 4], weights=None]; got {row.args}")
    args = list(row.args)
    return args[0], args[1] if len(args) > 1 else DEFAULT_OUT, args[2] if len(args) > 2 else None


def _weights_path(row: Row, weights: Any) -> str | None:
    path = weights if weights is not None else row.extra.get("pretrained", {}).get(row.index)
    if path is not None and not isinstance(path, str):
        raise row.error(f"weights must be a path to a local state_dict file, got {path!r}")
    return path


def _load_weights(row: Row, module: nn.Module, path: str | None) -> None:
    if path is None:
        return
    from modyolo.nn.pretrained import load_into_module

    try:
        module.transfer_report = load_into_module(module.net, path)
    except (OSError, ValueError) as e:
        raise row.error(f"cannot load weights {path!r}: {e}") from e
    LOGGER.info("%s: %s", row.where(), module.transfer_report.summary())


@BLOCKS.register()
class TorchVision(nn.Module):
    """Any ``torchvision.models`` classifier's trunk. ``Tensor[B, c1, H, W]`` -> ``list[Tensor]``."""

    yaml_example: ClassVar[dict] = {"rows": [[-1, 1, "TorchVision", ["resnet18", [2, 3, 4]]]],
                                    "stride": [8, 16, 32]}

    def __init__(self, c1: int, name: str, out_indices: list[int] | None = None) -> None:
        import torchvision

        super().__init__()
        self.name = name
        self.out_indices = list(out_indices or DEFAULT_OUT)
        self.net = torchvision.models.get_model(name, weights=None)  # never downloads
        paths = _trunk_paths(self.net)
        if not paths:
            raise ValueError(f"torchvision model {name!r} has no sequential trunk modyolo can split into stages")
        if c1 != 3:
            _adapt_first_conv(self.net, c1)
        strides, channels = _probe(self.net, paths, c1)
        self.keep: list[int] = []
        for i in self.out_indices:
            s = 2 ** (i + 1)
            hits = [j for j, st in enumerate(strides) if st == s]
            if not hits:
                have = sorted({st for st in strides})
                raise ValueError(f"{name} has no feature map at stride {s} (out index {i}); "
                                 f"its trunk reaches strides {have}, i.e. indices "
                                 f"{[int(v).bit_length() - 2 for v in have if v >= 2]}")
            self.keep.append(hits[-1])  # the last module at that stride = the end of the stage
        self.paths = paths[:max(self.keep) + 1]
        self.channels = [channels[j] for j in self.keep]
        self.strides = [strides[j] for j in self.keep]
        _prune(self.net, set(self.paths))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs: dict[int, torch.Tensor] = {}
        wanted = set(self.keep)
        for j, path in enumerate(self.paths):
            x = self.net.get_submodule(path)(x)
            if j in wanted:
                outs[j] = x
        return [outs[j] for j in self.keep]

    def fuse(self) -> None:
        """Fold BatchNorm into the conv before it where torchvision's layout makes the pair explicit:
        a Conv2d directly followed by a BatchNorm2d in a Sequential (``Conv2dNormActivation``,
        ResNet's ``downsample``) and the ``convK``/``bnK`` attribute pairs of ResNet blocks."""
        for parent in list(self.net.modules()):
            slots = parent._modules
            names = list(slots)
            pairs = list(zip(names, names[1:])) if isinstance(parent, nn.Sequential) else []
            pairs += [(n, "bn" + n[4:]) for n in names if n.startswith("conv") and "bn" + n[4:] in slots]
            for a, b in pairs:
                if isinstance(slots[a], nn.Conv2d) and isinstance(slots[b], nn.BatchNorm2d):
                    slots[a], slots[b] = fuse_conv_bn_eval(slots[a].eval(), slots[b].eval()), nn.Identity()

    @classmethod
    def from_row(cls, row: Row) -> tuple[nn.Module, Channels]:
        import torchvision

        name, out, weights = _split_args(row)
        known = torchvision.models.list_models(module=torchvision.models)
        if name not in known:
            near = difflib.get_close_matches(str(name), known, n=3)
            raise row.error(f"unknown torchvision classifier {name!r}"
                            + (f"; did you mean {', '.join(near)}?" if near else ""))
        module = row.construct(cls, row.c1, name, _check_indices(row, out))
        _load_weights(row, module, _weights_path(row, weights))
        return module, list(module.channels)


@BLOCKS.register()
class Timm(nn.Module):
    """A timm model with ``features_only=True``. ``Tensor[B, c1, H, W]`` -> ``list[Tensor]``.

    Needs the optional ``timm`` package. Channels and strides come from ``feature_info``.
    """

    yaml_example: ClassVar[dict] = {"rows": [[-1, 1, "Timm", ["resnet18", [2, 3, 4]]]],
                                    "stride": [8, 16, 32]}

    def __init__(self, c1: int, name: str, out_indices: list[int] | None = None) -> None:
        import timm

        super().__init__()
        self.name = name
        self.out_indices = list(out_indices or DEFAULT_OUT)
        self.net = timm.create_model(name, pretrained=False, features_only=True,
                                     out_indices=tuple(self.out_indices), in_chans=c1)
        self.channels = list(self.net.feature_info.channels())
        self.strides = list(self.net.feature_info.reduction())

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.net(x))

    @classmethod
    def from_row(cls, row: Row) -> tuple[nn.Module, Channels]:
        try:
            import timm
        except ImportError as e:
            raise row.error("needs the optional package timm: pip install timm "
                            "(or use a TorchVision row)") from e
        name, out, weights = _split_args(row)
        if not isinstance(name, str) or not timm.is_model(name):
            near = difflib.get_close_matches(str(name), timm.list_models(), n=3)
            raise row.error(f"unknown timm model {name!r}" + (f"; did you mean {', '.join(near)}?" if near else ""))
        module = row.construct(cls, row.c1, name, _check_indices(row, out))
        _load_weights(row, module, _weights_path(row, weights))
        return module, list(module.channels)


@BLOCKS.register()
class Index(nn.Module):
    """Pick feature map ``i`` of a layer that returns a list. Row: ``[from, 1, Index, [i]]``."""

    yaml_example: ClassVar[dict] = {"rows": [[-1, 1, "TorchVision", ["resnet18", [2, 3, 4]]],
                                             [-1, 1, "Index", [1]]], "stride": 16}

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        return x[self.index]

    @classmethod
    def from_row(cls, row: Row) -> tuple[nn.Module, Channels]:
        if len(row.ch_in) != 1 or not isinstance(row.ch_in[0], list):
            raise row.error(f"'from' must name one layer that returns several feature maps "
                            f"(a TorchVision or Timm row); layer {row.from_} returns one")
        if len(row.args) != 1 or not isinstance(row.args[0], int) or isinstance(row.args[0], bool):
            raise row.error(f"args must be [i], the position of the map to pick; got {row.args}")
        maps, i = row.ch_in[0], row.args[0]
        if not -len(maps) <= i < len(maps):
            raise row.error(f"index {i} is out of range: layer {row.from_} returns {len(maps)} maps {maps}")
        return cls(i), maps[i]


# -- torchvision trunk discovery --------------------------------------------------------------
def _trunk_paths(net: nn.Module) -> list[str]:
    """Dotted paths of the modules a torchvision classifier applies in order before pooling.

    Stage containers (``features``, ``trunk_output``, ``layers``) are expanded one level so that
    stage boundaries (where the stride doubles) fall between entries.
    """
    paths = []
    for name, child in net.named_children():
        if name in _HEAD_NAMES or isinstance(child, _HEAD_TYPES):
            break
        if name in _CONTAINERS and isinstance(child, nn.Sequential):
            paths += [f"{name}.{sub}" for sub, _ in child.named_children()]
        else:
            paths.append(name)
    return paths


def _adapt_first_conv(net: nn.Module, c1: int) -> None:
    for path, m in net.named_modules():
        if isinstance(m, nn.Conv2d):
            new = nn.Conv2d(c1, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation,
                            bias=m.bias is not None)
            net.set_submodule(path, new)
            return


@torch.no_grad()
def _probe(net: nn.Module, paths: list[str], c1: int) -> tuple[list[float], list[int]]:
    """(stride, channels) after each trunk module, from one eval-mode pass on a zero image."""
    was = net.training
    net.eval()
    x = torch.zeros(1, c1, PROBE, PROBE)
    strides, channels = [], []
    try:
        for path in paths:
            x = net.get_submodule(path)(x)
            if x.dim() != 4:
                raise ValueError(f"module {path!r} returns shape {tuple(x.shape)}, not a feature map "
                                 "[B, C, H, W]; use a Timm row for this architecture")
            strides.append(PROBE / x.shape[-1])
            channels.append(int(x.shape[1]))
    finally:
        net.train(was)
    return strides, channels


def _prune(net: nn.Module, keep: set[str]) -> None:
    """Replace the parts never run (classifier, stages after the last output) with Identity,
    so they hold no parameters that would get no gradient."""
    for name, child in list(net.named_children()):
        if name in keep:
            continue
        if name in _CONTAINERS and isinstance(child, nn.Sequential) and any(p.startswith(name + ".") for p in keep):
            for sub, _ in list(child.named_children()):
                if f"{name}.{sub}" not in keep:
                    child.set_submodule(sub, nn.Identity())
            continue
        net.set_submodule(name, nn.Identity())
