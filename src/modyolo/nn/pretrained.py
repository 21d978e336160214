"""Backbone weights from a local state_dict file, with a transfer report.

Nothing is downloaded: the user points at a torchvision / timm / modyolo / yolov5 state_dict
saved as ``.pt``/``.pth`` (read with ``torch.load(weights_only=True)``) or ``.safetensors``.
BatchNorm's ``num_batches_tracked`` counters are neither loaded nor counted. Keys are mapped onto
the model in one of three ways, tried in this order:

1. **Adapter rows** (``TorchVision``, ``Timm``): the row wraps the library's own module, so the
   file's keys match by name (``layer1.0.conv1.weight``); '_' and '.' are treated alike as a
   fallback because timm flattens some module names in ``features_only`` models.
2. **Same names**: a modyolo / yolov5 checkpoint of a model with the same backbone rows
   (``model.3.cv1.conv.weight``) transfers by name.
3. **Native layouts**: a block family maps a foreign file onto its own rows through the
   :class:`PretrainedMapping` classmethods it defines (``pretrained_layout``, optionally
   ``pretrained_hint``), found through the block registry, so a new family brings its mapping in
   its own file. The ResNet rows take a torchvision ResNet file (``conv1``+``bn1`` -> the stem row,
   ``layer<k>`` -> the k-th stage row, by name: the blocks keep torchvision's module names), the
   MobileNetV2 rows a torchvision MobileNetV2 file (``features.0`` -> the stem, ``features.<k>`` ->
   the k-th InvertedResidual). Where names differ (the stems, MobileNetV2's blocks) tensors
   pair up in registration order, which those blocks keep identical to torchvision's; a pair
   counts only if its shape *and* tensor kind (``weight``, ``running_var``...) agree, so a
   misalignment shows up as mismatches, never as silent garbage.

**The file must fit.** A load that leaves any tensor in scope at its random initialisation
(missing, or a shape / kind mismatch) or that finds tensors with no place in the mapped network
(a deeper network's extra blocks: a resnet34 file on resnet18 rows) raises
:class:`WeightsMismatchError`, naming the file, the first offending tensors and the fix: half a
backbone transferred is a damaged backbone, not a pretrained one. Tensors outside the mapped
scope (a classifier, stages the YAML does not use, a detector's head) are only reported as unused.
``partial=True`` (``modyolo train --partial-weights``) accepts a misfit and the report then lists
what was left random. A load that transfers nothing raises even then. Every report is logged at
INFO on the ``modyolo.nn.pretrained`` logger and returned.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Protocol

import torch
from torch import nn

from modyolo.nn.registry import BLOCKS

LOGGER = logging.getLogger("modyolo.nn.pretrained")
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "ema")

#: (file key prefixes, model key prefix) pairs: which tensors of a weights file go to which row.
Groups = list[tuple[tuple[str, ...], str]]


class WeightsMismatchError(ValueError):
    """A weights file that does not fit the architecture it was given to (no partial load asked)."""


@dataclass
class TransferReport:
    """What one load did. Keys are the *target* module's state_dict keys unless stated."""

    source: str
    matched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # targets in scope the file did not fill
    mismatched: list[tuple[str, str, tuple, tuple]] = field(default_factory=list)  # (src, tgt, src shape, tgt shape)
    unused: list[str] = field(default_factory=list)  # source keys that went nowhere
    extra: list[str] = field(default_factory=list)  # unused source keys *inside* the mapped network: a misfit
    not_covered: list[str] = field(default_factory=list)  # backbone rows the file has no tensors for
    method: str = "name"
    partial: bool = False  # the user accepted a misfit; ``left_random`` says what it left

    @property
    def all_matched(self) -> bool:
        """Every target tensor in scope came from the file."""
        return bool(self.matched) and not self.missing and not self.mismatched

    @property
    def fits(self) -> bool:
        """All targets filled and no tensor of the file's mapped network left over."""
        return self.all_matched and not self.extra

    @property
    def left_random(self) -> list[str]:
        """Target tensors that keep their random initialisation (missing or mismatched)."""
        return self.missing + [tgt for _, tgt, _, _ in self.mismatched]

    def summary(self) -> str:
        total = len(self.matched) + len(self.missing) + len(self.mismatched)
        text = (
            f"{self.source}: transferred {len(self.matched)}/{total} tensors by {self.method}; "
            f"{len(self.missing)} missing, {len(self.mismatched)} shape mismatches, "
            f"{len(self.unused)} unused in the file"
        )
        if self.extra:
            text += f" ({len(self.extra)} of them with no place in the model)"
        if self.not_covered:
            text += f"; rows not in the file: {', '.join(self.not_covered)}"
        if self.partial and (self.left_random or self.extra):
            text += f"; partial load: {len(self.left_random)} tensors left at their random initialisation"
        return text

    def first_problems(self, n: int = 3) -> list[str]:
        """The first ``n`` offending tensors: ``file key (shape) -> model key (shape)``, missing, extra."""
        items = [f"{src} {tuple(a)} -> {tgt} {tuple(b)}" for src, tgt, a, b in self.mismatched[:n]]
        items += [f"{k} (not in the file)" for k in self.missing[: max(n - len(items), 0)]]
        items += [f"{k} (no place in the model)" for k in self.extra[: max(n - len(items), 0)]]
        return items

    def __str__(self) -> str:
        lines = [self.summary()]
        groups = [
            ("left random" if self.partial else "missing", self.left_random if self.partial else self.missing),
            ("no place in the model", self.extra),
            ("unused", [k for k in self.unused if k not in set(self.extra)]),
        ]
        for title, items in groups:
            if items:
                lines.append(f"  {title}: {', '.join(items[:8])}" + (" ..." if len(items) > 8 else ""))
        for src, tgt, a, b in self.mismatched[:8]:
            lines.append(f"  shape mismatch: {src} {tuple(a)} -> {tgt} {tuple(b)}")
        return "\n".join(lines)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a state_dict file; unwraps ``{'state_dict': ...}``/``{'model': ...}`` checkpoints
    and DDP's ``module.`` prefix. Raises ``ValueError`` naming the file if it holds no tensors."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} does not exist")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        data: object = load_file(str(p), device="cpu")
    else:
        try:
            data = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as e:  # pickled modules are refused by weights_only: say what to do
            raise ValueError(
                f"{p}: cannot be read as a plain state_dict ({type(e).__name__}: {e}); "
                "save it with torch.save(model.state_dict(), path)"
            ) from e
    if isinstance(data, dict):
        for key in _WRAPPER_KEYS:
            inner = data.get(key)
            if isinstance(inner, dict) and any(isinstance(v, torch.Tensor) for v in inner.values()):
                data = inner
                break
    if not isinstance(data, dict):
        raise ValueError(f"{p}: expected a state_dict (a mapping of names to tensors), got {type(data).__name__}")
    tensors = {(k[7:] if k.startswith("module.") else k): v for k, v in data.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ValueError(f"{p}: contains no tensors")
    return tensors


def _learned(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop BatchNorm's ``num_batches_tracked`` counters: scalars that always 'match' in shape,
    carry nothing learned, and would make a wrong file look partly transferred."""
    return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}


def _norm(key: str) -> str:
    return key.replace("_", ".")


def transfer_by_name(
    target: nn.Module, source: dict[str, torch.Tensor], name: str, prefix: str = "", strip: str = ""
) -> TransferReport:
    """Copy ``source[k]`` into ``target``'s ``prefix + k`` (``strip`` removed from source keys)."""
    report = TransferReport(name, method="name")
    source = _learned(source)
    tgt = {k: v for k, v in _learned(target.state_dict()).items() if k.startswith(prefix)}
    by_norm = {_norm(k): k for k in tgt}
    used: set[str] = set()
    for skey, value in source.items():
        key = prefix + (skey[len(strip) :] if strip and skey.startswith(strip) else skey)
        tkey = key if key in tgt else by_norm.get(_norm(key))
        if tkey is None or tkey in used:
            report.unused.append(skey)
            continue
        used.add(tkey)
        _copy(report, skey, tkey, value, tgt[tkey])
    report.missing = [k for k in tgt if k not in used]
    return report


def transfer_in_order(
    target: nn.Module, source: dict[str, torch.Tensor], name: str, groups: list[tuple[tuple[str, ...], str]]
) -> TransferReport:
    """For each (source prefixes, target prefix) group: by name under the new prefix where the
    target's modules carry the source's names (ResNet stages: ``layer2.0.conv1`` ->
    ``model.2.0.conv1``), else pairing tensors in registration order (the stem, MobileNetV2 blocks).
    Names keep a misfit aligned: resnet50's ``layer1.0.conv2`` meets resnet18's ``layer1.0.conv2``."""
    report = TransferReport(name, method="layout")
    source, state = _learned(source), _learned(target.state_dict())
    used_src: set[str] = set()
    for src_prefixes, tgt_prefix in groups:
        src = [k for k in source if k.startswith(src_prefixes)]
        tgt = [k for k in state if k.startswith(tgt_prefix)]
        renamed = {k: tgt_prefix + k[len(src_prefixes[0]) :] for k in src} if len(src_prefixes) == 1 else {}
        if any(t in state for t in renamed.values()):
            filled = set()
            for skey, tkey in renamed.items():
                if tkey in state:
                    used_src.add(skey)
                    filled.add(tkey)
                    _copy(report, skey, tkey, source[skey], state[tkey])
            report.missing += [k for k in tgt if k not in filled]
            continue
        for skey, tkey in zip(src, tgt):
            used_src.add(skey)
            if skey.rsplit(".", 1)[-1] != tkey.rsplit(".", 1)[-1]:
                report.mismatched.append((skey, tkey, tuple(source[skey].shape), tuple(state[tkey].shape)))
                continue
            _copy(report, skey, tkey, source[skey], state[tkey])
        report.missing += tgt[len(src) :]
    report.unused = [k for k in source if k not in used_src]
    return report


def _copy(report: TransferReport, skey: str, tkey: str, value: torch.Tensor, dest: torch.Tensor) -> None:
    if value.shape != dest.shape:
        report.mismatched.append((skey, tkey, tuple(value.shape), tuple(dest.shape)))
        return
    with torch.no_grad():
        dest.copy_(value.to(dest.dtype))  # state_dict tensors share storage with the parameters
    report.matched.append(tkey)


def _finish(report: TransferReport, nothing_hint: str, misfit_hint: str, partial: bool) -> TransferReport:
    """Raise for a load that transferred nothing, or (unless ``partial``) for a misfit; log the report."""
    if not report.matched:
        raise ValueError(f"{report.summary()}. Nothing was transferred: {nothing_hint}")
    report.partial = partial
    if not report.fits and not partial:
        total = len(report.matched) + len(report.missing) + len(report.mismatched)
        raise WeightsMismatchError(
            f"{report.source} does not fit the architecture: only {len(report.matched)}/{total} tensors fit "
            f"({len(report.mismatched)} mismatched, {len(report.missing)} missing, {len(report.extra)} in the file "
            f"with no place in the model); first: {'; '.join(report.first_problems())}. {misfit_hint}; or, to keep "
            f"the {len(report.matched)} fitting tensors and train the other {len(report.left_random)} from their "
            "random initialisation, ask for a partial load (modyolo train --partial-weights, "
            "or load_backbone_weights(..., partial=True))"
        )
    LOGGER.info("%s", report)
    return report


def load_adapter_weights(adapter: nn.Module, path: str | Path, partial: bool = False) -> TransferReport:
    """Name-based load of a whole file into a TorchVision / Timm row's wrapped network.

    The file fits if it fills every tensor of the (pruned) network and its other tensors belong to
    the full classifier (its head, the stages after the last output); a tensor beyond that (a
    resnet34 file on a resnet18 row) makes it a misfit.
    """
    source = read_state_dict(path)
    net: nn.Module = adapter.net  # type: ignore[assignment]
    report = transfer_by_name(net, source, str(path))
    known = {_norm(k) for k in adapter.architecture_keys()}  # type: ignore[operator]
    report.extra = [k for k in report.unused if _norm(k) not in known]
    name = getattr(adapter, "name", "the row's network")
    return _finish(
        report,
        "the file's keys do not name this module's tensors; is it the same architecture? "
        f"file keys start {list(source)[:3]}, the module's {list(net.state_dict())[:3]}",
        f"use a state_dict of {name} itself (saved from the library that defines it)",
        partial,
    )


def load_backbone_weights(
    model: nn.Module, path: str | Path, layer: int | None = None, partial: bool = False
) -> TransferReport:
    """Load a local state_dict file into the backbone of a ``DetectionModel``; see module docs.

    ``layer`` picks one row (e.g. the TorchVision row); ``None`` means the backbone rows, i.e. the
    first ``len(cfg['backbone'])`` layers. Raises ``ValueError`` if nothing transferred and
    :class:`WeightsMismatchError` if the file does not fit, unless ``partial``. The report is
    logged at INFO and returned.
    """
    source = read_state_dict(path)
    name = str(path)
    where = getattr(model, "source", "the model")
    rows = [layer] if layer is not None else list(range(len(model.yaml["backbone"])))
    adapters = [i for i in rows if _is_adapter(model.model[i])]
    if layer is not None or len(adapters) == 1:
        i = layer if layer is not None else adapters[0]
        mod = model.model[i]
        if _is_adapter(mod):
            return load_adapter_weights(mod, path, partial)
        report = transfer_by_name(model, source, name, prefix=f"model.{i}.", strip=f"model.{i}.")
        report.extra = [k for k in report.unused if k.startswith(f"model.{i}.")]
        return _finish(
            report,
            f"row {i}'s tensor names do not occur in the file",
            f"use a checkpoint whose row {i} has the same block and widths as row {i} of {where}",
            partial,
        )
    # a modyolo / yolov5 checkpoint: same names, restricted to the backbone rows
    state = model.state_dict()
    if any(k in state for k in source):
        backbone = (
            {k: v for k, v in source.items() if int(k.split(".")[1]) in rows}
            if all(k.startswith("model.") for k in source)
            else source
        )
        report = transfer_by_name(model, backbone, name)
        report.extra = list(report.unused)  # backbone tensors of the file with no place in these rows
        report.unused += [k for k in source if k not in backbone]
        scope = tuple(f"model.{i}." for i in rows)
        report.missing = [k for k in report.missing if k.startswith(scope)]
        return _finish(
            report,
            "no backbone tensor names occur in the file",
            f"use a checkpoint of a model with the same backbone rows as {where} "
            "(same blocks, width_multiple and depth_multiple)",
            partial,
        )
    groups = native_layout(model, source)
    if not groups:
        raise ValueError(
            f"{name}: no way to map this file onto the backbone: it is neither a modyolo/yolov5 "
            f"checkpoint of the same rows, nor a file a block family maps onto its rows ({_families_text()}), "
            f"and the backbone has {len(adapters)} TorchVision/Timm rows (pass layer= to "
            f"choose one). File keys start {list(source)[:3]}"
        )
    report = transfer_in_order(model, source, name, groups)
    mapped = tuple(p for prefixes, _ in groups for p in prefixes)
    report.extra = [k for k in report.unused if k.startswith(mapped)]
    covered = {g[1] for g in groups}
    report.not_covered = [
        f"{i} ({model.layers_meta[i].name})"
        for i in rows
        if f"model.{i}." not in covered and any(True for _ in model.model[i].parameters())
    ]
    return _finish(
        report,
        "the layout matched no tensor shapes; is it the same network, built at width_multiple 1.0?",
        _native_hint(model, source, where),
        partial,
    )


class WeightsAdapter(Protocol):
    """A row that wraps a library's own network (``TorchVision``, ``Timm``): a file of that network
    loads by name into ``net``; ``architecture_keys()`` lists the whole network's keys (the pruned
    classifier included), so the file's leftovers can be told apart from a deeper network's."""

    net: nn.Module

    def architecture_keys(self) -> list[str]: ...


class PretrainedMapping(Protocol):
    """How a block family takes a foreign weights file (a torchvision ResNet file onto native ResNet
    rows). Implemented as classmethods on the family's block classes, like ``from_row`` and ``fuse``;
    :func:`native_layout` asks every registered block that has them, so a new family brings its mapping
    in its own file and this module is not edited.

    ``pretrained_layout(backbone, source)``: ``backbone`` is the backbone rows' modules in order,
    ``source`` the file's tensors; returns ``(file prefixes, model prefix)`` groups in order (stages
    first to last; the stem, if any, via :func:`with_stem`), or ``None`` when the file is not this
    family's. Within a group, tensors transfer by name where the model's keys carry the file's names
    (``layer2.0.conv1`` -> ``model.2.0.conv1``), else pair up in registration order.

    ``pretrained_hint(backbone, source, where)`` (optional): the fix to print when the file is this
    family's but does not fit (``None`` when it has nothing specific to say).
    """

    pretrained_description: ClassVar[str]  # what files it takes, e.g. "a torchvision ResNet state_dict"

    @classmethod
    def pretrained_layout(cls, backbone: list[nn.Module], source: dict[str, torch.Tensor]) -> Groups | None: ...


def first_block(module: nn.Module) -> nn.Module:
    """The first block of a stage row (a ``Sequential`` of blocks), or the row's module itself."""
    return module[0] if isinstance(module, nn.Sequential) and len(module) else module


def with_stem(backbone: list[nn.Module], groups: Groups, first_stage: int, stem: tuple[str, ...]) -> Groups:
    """``groups`` with the file's ``stem`` prefixes mapped onto the last row that has parameters
    before row ``first_stage`` (the stem row, whatever block the YAML spells it with)."""
    before = [i for i in range(first_stage) if any(True for _ in backbone[i].parameters())]
    return ([(stem, f"model.{before[-1]}.")] if before else []) + groups


def _is_adapter(module: nn.Module) -> bool:
    return isinstance(getattr(module, "net", None), nn.Module) and callable(getattr(module, "architecture_keys", None))


def mapping_families() -> list[type]:
    """Registered block classes that implement :class:`PretrainedMapping`, one per mapping (two blocks
    sharing one classmethod, like ResNet's BasicBlock and ResNetBottleneck, count once). The families
    are registered by the time a model exists (building one imports :mod:`modyolo.nn.blocks`)."""
    seen, families = set(), []
    for _, obj in BLOCKS.items():
        layout = getattr(obj, "pretrained_layout", None)
        func = getattr(layout, "__func__", layout)
        if callable(layout) and func not in seen:
            seen.add(func)
            families.append(obj)
    return families


def _backbone(model: nn.Module) -> list[nn.Module]:
    return list(model.model)[: len(model.yaml["backbone"])]


def native_layout(model: nn.Module, source: dict[str, torch.Tensor]) -> Groups:
    """(source prefixes, target prefix) groups from the first block family whose mapping takes the file."""
    backbone = _backbone(model)
    for family in mapping_families():
        groups = family.pretrained_layout(backbone, source)
        if groups:
            return groups
    return []


def _native_hint(model: nn.Module, source: dict[str, torch.Tensor], where: str) -> str:
    """The fix for a misfit: the mapping family's own words where it has them, a generic one otherwise."""
    backbone = _backbone(model)
    for family in mapping_families():
        hint = getattr(family, "pretrained_hint", None)
        if hint is not None and family.pretrained_layout(backbone, source):
            text = hint(backbone, source, where)
            if text:
                return text
    return f"use a torchvision state_dict of the network the backbone rows of {where} mirror, at width_multiple 1.0"


def _families_text() -> str:
    return "; ".join(
        f"{getattr(f, 'pretrained_description', f.__name__)} for {f.__name__} rows" for f in mapping_families()
    )
