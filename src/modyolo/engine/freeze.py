"""Freezing layers, keeping frozen BatchNorm statistics fixed, and staged freeze schedules.

A layer is an entry of ``model.model`` (the YAML row index). Freezing sets ``requires_grad=False``
on its parameters — but yolov5 and ultralytics stop there, and ``model.train()`` then puts the
frozen layers' BatchNorms back into training mode, so their running statistics keep drifting
toward the new data while their affine weights stay fixed. :func:`hold_frozen_bn` puts those
BatchNorms back into eval mode; the trainer calls it after every ``model.train()``.

Specs, as the CLI takes them:

- ``--freeze 10`` -> layers 0..9 (yolov5: a single number is a count);
- ``--freeze 0 1 2`` or ``"0,1,2"`` or ``"0-2"`` -> those indices;
- ``--freeze-schedule "10:0-9"`` -> layers 0-9 frozen for epochs 0-9, then nothing frozen;
  stages chain with ``;``: ``"5:0-9;10:0-4"`` freezes 0-9 for epochs 0-4, 0-4 for epochs 5-9,
  then nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


@dataclass(frozen=True)
class FreezeStage:
    """Layers ``layers`` are frozen while ``epoch < until_epoch``."""

    until_epoch: int
    layers: tuple[int, ...]


def _layers(model: nn.Module) -> nn.Module:
    layers = getattr(model, "model", None)
    if not isinstance(layers, (nn.Sequential, nn.ModuleList)):
        raise TypeError(
            f"{type(model).__name__} has no layer list .model (nn.Sequential / nn.ModuleList); "
            "freezing by layer index needs a DetectionModel (unwrap DDP with .module first)"
        )
    return layers


def _parse_indices(text: str, where: str) -> list[int]:
    out: list[int] = []
    for part in text.replace(" ", ",").split(","):
        if not part:
            continue
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if hi < lo:
                    raise ValueError(f"range {part!r} runs backwards")
                out.extend(range(lo, hi + 1))
            else:
                out.append(int(part))
        except ValueError as e:
            raise ValueError(f"{where}: cannot read layer indices {text!r} ({e}); write e.g. '0-9' or '0,1,2'") from e
    return out


def parse_freeze(spec: int | str | Sequence[int | str] | None) -> list[int]:
    """Layer indices to freeze from a ``--freeze`` value (see module docstring); sorted, unique.

    A single number ``n`` means the first ``n`` layers (yolov5's meaning); ``0`` or ``None`` means none.
    """
    if spec is None:
        return []
    if isinstance(spec, int):
        return list(range(spec))
    if isinstance(spec, str):
        text = spec.strip()
        if text.isdigit():
            return list(range(int(text)))
        return sorted(set(_parse_indices(text, "--freeze")))
    items = list(spec)
    if len(items) == 1:
        return parse_freeze(items[0])
    return sorted(set(i for item in items for i in _parse_indices(str(item), "--freeze")))


def parse_freeze_schedule(spec: str) -> list[FreezeStage]:
    """``"10:0-9"`` / ``"5:0-9;10:0-4"`` -> stages with increasing ``until_epoch``."""
    stages = []
    for chunk in filter(None, (c.strip() for c in spec.split(";"))):
        epoch_text, sep, layer_text = chunk.partition(":")
        if not sep or not epoch_text.strip().isdigit():
            raise ValueError(f"--freeze-schedule: cannot read stage {chunk!r}; write 'EPOCHS:LAYERS' such as '10:0-9'")
        stages.append(FreezeStage(int(epoch_text), tuple(sorted(set(_parse_indices(layer_text, "--freeze-schedule"))))))
    if any(b.until_epoch <= a.until_epoch for a, b in zip(stages, stages[1:])):
        raise ValueError(f"--freeze-schedule {spec!r}: stage epochs must increase")
    return stages


def frozen_at(stages: Sequence[FreezeStage], epoch: int, base: Sequence[int] = ()) -> list[int]:
    """Layers frozen during ``epoch``: the current stage's plus ``base`` (the ``--freeze`` list)."""
    current: tuple[int, ...] = ()
    for stage in stages:
        if epoch < stage.until_epoch:
            current = stage.layers
            break
    return sorted(set(current) | set(base))


def freeze_layers(model: nn.Module, layer_indices: Sequence[int]) -> list[str]:
    """Set ``requires_grad`` False for the parameters of ``model.model[i]`` for i in the list,
    True for every other layer's. Returns the frozen parameter names (``model.3.conv.weight``...).
    """
    layers = _layers(model)
    wanted = set(layer_indices)
    bad = sorted(i for i in wanted if not 0 <= i < len(layers))
    if bad:
        raise ValueError(f"cannot freeze layers {bad}: the model has layers 0-{len(layers) - 1}")
    frozen = []
    for i, layer in enumerate(layers):
        for name, p in layer.named_parameters():
            p.requires_grad_(i not in wanted)
            if i in wanted:
                frozen.append(f"model.{i}.{name}")
    return frozen


def hold_frozen_bn(model: nn.Module, layer_indices: Sequence[int]) -> int:
    """Put the BatchNorms of frozen layers into eval mode (call after ``model.train()``).

    In eval mode a BatchNorm normalises with its running statistics and leaves them untouched,
    so a frozen layer computes exactly the function it was frozen with. Returns how many.
    """
    layers = _layers(model)
    held = 0
    for i in set(layer_indices):
        for m in layers[i].modules():
            if isinstance(m, _BatchNorm):
                m.eval()
                held += 1
    return held
