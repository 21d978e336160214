"""Whole backbones from torchvision or timm as one YAML row, plus ``Index`` to pick a map.

::

    backbone:
      [[-1, 1, TorchVision, [resnet50, [2, 3, 4]]],   # 0: list of 3 maps (strides 8, 16, 32)
       [0, 1, Index, [0]],                             # 1: P3/8
       [0, 1, Index, [1]],                             # 2: P4/16
       [0, 1, Index, [2]]]                             # 3: P5/32

Row args: ``[name, out_indices=[2, 3, 4], weights=None]``. ``out_indices`` mean the same for
both rows and every model: index ``i`` is the feature map at stride ``2**(i + 1)`` relative to the
row's input (0 = stride 2, ..., 4 = stride 32), the last module at that stride, i.e. the end of
the stage. This is *not* timm's own ``out_indices``, which count the entries of a model's
``feature_info`` (for ConvNeXt those start at stride 4, so timm's 1/2/3 are strides 8/16/32, and
``[2, 3, 4]`` overflows); the Timm row translates. A row whose maps are not at strides 8/16/32
logs a warning naming the indices that give them (a P3-P5 head needs exactly those).
``weights`` is a local state_dict file (``.pt``, ``.pth``, ``.safetensors``) of the same
architecture; ``DetectionModel(cfg, pretrained={row: path})`` does the same without editing the
YAML. A file of another architecture is an error (:mod:`modyolo.nn.pretrained`). Nothing is
ever downloaded.

Channels and strides come from the model itself — timm's ``feature_info``, or for torchvision a
dry run of the model's trunk — so the user never types them. Channels-last transformers (Swin:
``[B, H, W, C]``) are permuted to ``[B, C, H, W]``. Families without a feature pyramid (ViT),
with a fixed input size (MaxViT) or with unpadded convolutions (Inception v3) are refused with
the reason and what to use instead. ``width_multiple`` does **not** apply to these rows (a
pretrained network's widths are fixed); head rows after them scale as usual. If the row's input
does not have 3 channels the first conv is rebuilt for it (its pretrained tensor is then a shape
mismatch, so such a load needs ``partial``).
"""

from __future__ import annotations

import difflib
import logging
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from modyolo.nn.registry import BLOCKS
from modyolo.nn.row import Channels, ModelConfigError, Row

LOGGER = logging.getLogger("modyolo.nn.blocks.external")
PROBE = 256  # dry-run size for torchvision strides: divisible by 32, small enough to be quick
DEFAULT_OUT = [2, 3, 4]
DETECTION_STRIDES = [8, 16, 32]
USE_INSTEAD = (
    "use a CNN with stages (TorchVision resnet50, convnext_tiny, efficientnet_b0, regnet_y_800mf, "
    "mobilenet_v3_large), the hierarchical transformer swin_t, or a Timm row of a model with "
    "features_only support"
)
# Children that hold stages rather than being one (expanded one level) and the classifier part
# (where the trunk ends) of torchvision classifiers; auxiliary classifiers are skipped.
_CONTAINERS = {"features", "trunk_output", "layers"}
_HEAD_TYPES = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Linear, nn.Flatten, nn.Dropout)
_HEAD_NAMES = {"avgpool", "fc", "classifier", "head", "heads", "dropout", "flatten"}
_AUX_NAMES = {"aux1", "aux2", "AuxLogits"}
# torchvision families (the module that defines the builder) that cannot be a detection trunk
_REFUSED = {
    "vision_transformer": "is a plain vision transformer: one map of patch tokens at stride 16, no feature "
    "pyramid at strides 8/16/32",
    "maxvit": "has attention windows fixed to its 224-px training size (every stage must divide by 7), so it "
    "cannot take detection image sizes",
    "inception": "uses unpadded convolutions: its feature maps are not input/8, /16, /32 and vanish on small images",
}


class UnsupportedBackbone(ModelConfigError):
    """A torchvision / timm model that cannot serve as this row (the message says why and what to use)."""


def _check_indices(row: Row, out_indices: Any) -> list[int]:
    if isinstance(out_indices, int) and not isinstance(out_indices, bool):
        out_indices = [out_indices]
    if (
        not isinstance(out_indices, list)
        or not out_indices
        or not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i <= 6 for i in out_indices)
    ):
        raise row.error(
            f"out_indices must be a list of stage indices 0..6 (i -> stride 2**(i+1)), "
            f"e.g. [2, 3, 4]; got {out_indices!r}"
        )
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
    """Strict load (a misfit raises, naming the row); the report is logged and kept on the module."""
    if path is None:
        return
    from modyolo.nn.pretrained import load_adapter_weights

    try:
        module.transfer_report = load_adapter_weights(module, path)
    except (OSError, ValueError) as e:
        raise row.error(f"cannot load weights {path!r}: {e}") from e


def _index_of(stride: float) -> str:
    """The out index of a stride (8 -> '2'), '-' for strides that are not a power of two >= 2."""
    s = int(stride)
    return str(s.bit_length() - 2) if s == stride and s >= 2 and s & (s - 1) == 0 else "-"


def pick_stages(name: str, strides: list[float], out_indices: list[int]) -> list[int]:
    """Positions in ``strides`` (one per candidate module / feature_info entry) of the maps that
    ``out_indices`` ask for: for index ``i`` the last position at stride ``2**(i+1)``."""
    have = sorted(set(strides))
    if len(have) == 1 and len(strides) > 1:
        raise UnsupportedBackbone(
            f"{name} has no feature pyramid: all its feature maps are at stride "
            f"{have[0]:g}; a detector needs maps at strides 8/16/32: {USE_INSTEAD}"
        )
    picked = []
    for i in out_indices:
        s = 2 ** (i + 1)
        hits = [j for j, st in enumerate(strides) if st == s]
        if not hits:
            usable = [f"{_index_of(v)} (stride {v:g})" for v in have if _index_of(v) != "-"]
            where = (
                f"its maps are at out indices {', '.join(usable)}"
                if usable
                else f"none of its maps is at a power-of-two stride ({', '.join(f'{v:.3g}' for v in have)})"
            )
            raise UnsupportedBackbone(
                f"{name} has no feature map at stride {s} (out index {i}); {where}"
                + ("" if {8, 16, 32} <= set(have) else f"; for strides 8/16/32 {USE_INSTEAD}")
            )
        picked.append(hits[-1])  # the last module at that stride = the end of the stage
    return picked


def _warn_strides(row: Row, module: nn.Module) -> None:
    strides = [int(s) for s in module.strides]
    if strides != DETECTION_STRIDES:
        LOGGER.warning(
            "%s: out_indices %s give feature maps at strides %s, not 8/16/32; a P3-P5 head "
            "(anchors P3/8-P5/32) needs out_indices [2, 3, 4] (index i = stride 2**(i+1) for "
            "TorchVision and Timm rows alike, not timm's feature_info position)",
            row.where(),
            module.out_indices,
            "/".join(map(str, strides)),
        )


def _nchw(x: torch.Tensor) -> torch.Tensor:
    """``[B, H, W, C]`` -> ``[B, C, H, W]`` (a view with channels-last strides; convs take it as is)."""
    return x.permute(0, 3, 1, 2)


@BLOCKS.register()
class TorchVision(nn.Module):
    """Any ``torchvision.models`` classifier's trunk.
    ``Tensor[B, c1, H, W]`` -> ``list[Tensor[B, C_i, H/s_i, W/s_i]]``."""

    yaml_example: ClassVar[dict] = {"rows": [[-1, 1, "TorchVision", ["resnet18", [2, 3, 4]]]], "stride": [8, 16, 32]}

    def __init__(self, c1: int, name: str, out_indices: list[int] | None = None) -> None:
        import torchvision

        super().__init__()
        self.name = name
        self.out_indices = list(out_indices or DEFAULT_OUT)
        self.net = torchvision.models.get_model(name, weights=None)  # never downloads
        self.nhwc = isinstance(self.net, torchvision.models.SwinTransformer)  # stages return [B, H, W, C]
        paths = _trunk_paths(self.net)
        if self.nhwc:  # the stages only: the final norm/permute belong to the classifier
            paths = [p for p in paths if p.startswith("features.")]
        if not paths:
            raise UnsupportedBackbone(
                f"torchvision model {name!r} has no sequential trunk modyolo can split into stages; {USE_INSTEAD}"
            )
        # names of the full classifier's tensors, before pruning: what a file of this network may hold
        self._architecture = [k for k in self.net.state_dict() if not k.endswith("num_batches_tracked")]
        if c1 != 3:
            _adapt_first_conv(self.net, c1)
        strides, channels = _probe(self.net, paths, c1, self.nhwc, name)
        self.keep: list[int] = pick_stages(name, strides, self.out_indices)
        self.paths = paths[: max(self.keep) + 1]
        self.channels = [channels[j] for j in self.keep]
        self.strides = [strides[j] for j in self.keep]
        _prune(self.net, set(self.paths))

    def architecture_keys(self) -> list[str]:
        """state_dict keys of the whole torchvision classifier (classifier and pruned stages included)."""
        return list(self._architecture)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs: dict[int, torch.Tensor] = {}
        wanted = set(self.keep)
        for j, path in enumerate(self.paths):
            x = self.net.get_submodule(path)(x)
            if j in wanted:
                outs[j] = _nchw(x) if self.nhwc else x
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
            raise row.error(
                f"unknown torchvision classifier {name!r}" + (f"; did you mean {', '.join(near)}?" if near else "")
            )
        family = torchvision.models.get_model_builder(name).__module__.rsplit(".", 1)[-1]
        if family in _REFUSED:
            raise row.error(f"torchvision {name} {_REFUSED[family]}; {USE_INSTEAD}")
        indices = _check_indices(row, out)
        try:
            module = row.construct(cls, row.c1, name, indices)
        except UnsupportedBackbone as e:
            raise row.error(str(e)) from None
        _warn_strides(row, module)
        _load_weights(row, module, _weights_path(row, weights))
        return module, list(module.channels)


@BLOCKS.register()
class Timm(nn.Module):
    """A timm model with ``features_only=True``. ``Tensor[B, c1, H, W]`` -> ``list[Tensor[B, C_i, H/s_i, W/s_i]]``.

    Needs the optional ``timm`` package. Channels and strides come from ``feature_info``; the row's
    stride indices are translated to timm's ``feature_info`` positions (read from a model built on
    the meta device, which allocates nothing).
    """

    yaml_example: ClassVar[dict] = {"rows": [[-1, 1, "Timm", ["resnet18", [2, 3, 4]]]], "stride": [8, 16, 32]}

    def __init__(self, c1: int, name: str, out_indices: list[int] | None = None) -> None:
        super().__init__()
        self.name = name
        self.c1 = c1
        self.out_indices = list(out_indices or DEFAULT_OUT)
        info = _timm_model(name, features_only=True, in_chans=c1, meta=True).feature_info
        self.timm_indices = pick_stages(name, [float(r) for r in info.reduction()], self.out_indices)
        self.net = _timm_model(name, features_only=True, out_indices=tuple(self.timm_indices), in_chans=c1)
        self.channels = list(self.net.feature_info.channels())
        self.strides = list(self.net.feature_info.reduction())
        fmt = getattr(self.net, "output_fmt", "NCHW")
        self.nhwc = getattr(fmt, "value", fmt) == "NHWC"  # timm's Swin and friends

    def architecture_keys(self) -> list[str]:
        """state_dict keys of the whole timm classifier (built on the meta device: no memory, no init)."""
        full = _timm_model(self.name, in_chans=self.c1, meta=True)
        return [k for k in full.state_dict() if not k.endswith("num_batches_tracked")]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = list(self.net(x))
        return [_nchw(o) for o in outs] if self.nhwc else outs

    @classmethod
    def from_row(cls, row: Row) -> tuple[nn.Module, Channels]:
        try:
            import timm
        except ImportError as e:
            raise row.error("needs the optional package timm: pip install timm (or use a TorchVision row)") from e
        name, out, weights = _split_args(row)
        if not isinstance(name, str) or not timm.is_model(name):
            near = difflib.get_close_matches(str(name), timm.list_models(), n=3)
            raise row.error(f"unknown timm model {name!r}" + (f"; did you mean {', '.join(near)}?" if near else ""))
        indices = _check_indices(row, out)
        try:
            module = row.construct(cls, row.c1, name, indices)
        except UnsupportedBackbone as e:
            raise row.error(str(e)) from None
        _warn_strides(row, module)
        _load_weights(row, module, _weights_path(row, weights))
        return module, list(module.channels)


def _timm_model(name: str, meta: bool = False, **kwargs: Any) -> nn.Module:
    """``timm.create_model(name, pretrained=False, **kwargs)``, on the meta device if ``meta``;
    a model timm cannot build that way is refused with timm's reason."""
    import timm

    try:
        if meta:
            with torch.device("meta"):
                return timm.create_model(name, pretrained=False, **kwargs)
        return timm.create_model(name, pretrained=False, **kwargs)
    except Exception as e:  # timm raises RuntimeError/AssertionError/ValueError for unsupported modes
        if meta:  # some models cannot initialise on the meta device: build them for real
            return _timm_model(name, meta=False, **kwargs)
        what = "with features_only=True" if kwargs.get("features_only") else ""
        raise UnsupportedBackbone(f"timm cannot build {name} {what} ({type(e).__name__}: {e}); {USE_INSTEAD}") from e


@BLOCKS.register()
class Index(nn.Module):
    """Pick feature map ``i`` of a layer that returns a list. Row: ``[from, 1, Index, [i]]``."""

    yaml_example: ClassVar[dict] = {
        "rows": [[-1, 1, "TorchVision", ["resnet18", [2, 3, 4]]], [-1, 1, "Index", [1]]],
        "stride": 16,
    }

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        return x[self.index]

    @classmethod
    def from_row(cls, row: Row) -> tuple[nn.Module, Channels]:
        if len(row.ch_in) != 1 or not isinstance(row.ch_in[0], list):
            raise row.error(
                f"'from' must name one layer that returns several feature maps "
                f"(a TorchVision or Timm row); layer {row.from_} returns one"
            )
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
        if name in _AUX_NAMES:  # GoogLeNet / Inception side classifiers: not on the trunk's path
            continue
        if name in _CONTAINERS and isinstance(child, nn.Sequential):
            paths += [f"{name}.{sub}" for sub, _ in child.named_children()]
        else:
            paths.append(name)
    return paths


def _adapt_first_conv(net: nn.Module, c1: int) -> None:
    for path, m in net.named_modules():
        if isinstance(m, nn.Conv2d):
            new = nn.Conv2d(c1, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation, bias=m.bias is not None)
            net.set_submodule(path, new)
            return


@torch.no_grad()
def _probe(net: nn.Module, paths: list[str], c1: int, nhwc: bool, name: str) -> tuple[list[float], list[int]]:
    """(stride, channels) after each trunk module, from one eval-mode pass on a zero image."""
    was = net.training
    net.eval()
    x = torch.zeros(1, c1, PROBE, PROBE)
    strides, channels = [], []
    try:
        for path in paths:
            try:
                x = net.get_submodule(path)(x)
            except Exception as e:  # a trunk that is not a chain of modules (e.g. token reshapes in forward)
                raise UnsupportedBackbone(
                    f"torchvision {name}: running its trunk module by module fails at "
                    f"{path!r} ({type(e).__name__}: {str(e).splitlines()[0]}); "
                    f"{USE_INSTEAD}"
                ) from e
            if x.dim() != 4:
                raise UnsupportedBackbone(
                    f"torchvision {name}: module {path!r} returns shape {tuple(x.shape)}, "
                    f"not a feature map [B, C, H, W]; {USE_INSTEAD}"
                )
            y = _nchw(x) if nhwc else x
            strides.append(PROBE / y.shape[-1])
            channels.append(int(y.shape[1]))
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
