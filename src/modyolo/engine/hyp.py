"""Training hyperparameters: yolov5's hyp YAML keys, typed and validated.

A hyp file is yolov5's format verbatim (``lr0: 0.01`` ...), so a user's evolved yolov5 hyp file
loads unchanged. Every key is a field of :class:`Hyp`; the defaults are yolov5 7.0's
``hyp.scratch-low.yaml``. modyolo adds a few keys of its own (SAM radius, loss type, Varifocal
parameters, label smoothing), all optional, so a yolov5 file never needs them.

- an unknown key is an error naming the file and the nearest valid key (a typo such as
  ``lr_0`` silently falling back to a default is how a week of experiments goes wrong);
- a missing key takes its default, and the defaults used are logged once;
- values are range-checked (``lr0 > 0``, probabilities in [0, 1], ...).

Names ``scratch-low``, ``scratch-med``, ``scratch-high`` and ``finetune`` (with or without a
``hyp.`` prefix / ``.yaml`` suffix) resolve to the files shipped in ``modyolo/cfg/hyps``.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from modyolo.yaml_io import read_yaml

LOGGER = logging.getLogger(__name__)

HYPS_DIR = Path(__file__).resolve().parent.parent / "cfg" / "hyps"
SHIPPED = ("scratch-low", "scratch-med", "scratch-high", "finetune")


class HypError(ValueError):
    """A hyp file or value that cannot be used; the message names the file, the key and the fix."""


@dataclass
class Hyp:
    """Every hyperparameter of a training recipe (yolov5's names; defaults = hyp.scratch-low)."""

    # optimizer and schedule
    lr0: float = 0.01  # initial learning rate (SGD 1e-2, Adam 1e-3)
    lrf: float = 0.01  # final learning rate as a fraction of lr0
    momentum: float = 0.937  # SGD momentum / Adam beta1
    weight_decay: float = 0.0005  # scaled by batch_size * accumulate / 64 at optimizer build
    warmup_epochs: float = 3.0
    warmup_momentum: float = 0.8
    warmup_bias_lr: float = 0.1
    # loss
    box: float = 0.05
    cls: float = 0.5
    cls_pw: float = 1.0
    obj: float = 1.0
    obj_pw: float = 1.0
    iou_t: float = 0.20  # yolov5 keeps it in the files but its loss never reads it; so do we
    anchor_t: float = 4.0
    anchors: float | None = None  # anchors per level for a model YAML without anchors (rare)
    fl_gamma: float = 0.0
    box_af: float = 7.5  # anchor-free head's CIoU gain (ultralytics' `box`; yolov5's `box` above is its own)
    dfl: float = 1.5  # anchor-free head's distribution focal loss gain (ultralytics' `dfl`)
    # augmentation
    hsv_h: float = 0.015
    hsv_s: float = 0.7
    hsv_v: float = 0.4
    degrees: float = 0.0
    translate: float = 0.1
    scale: float = 0.5
    shear: float = 0.0
    perspective: float = 0.0
    flipud: float = 0.0
    fliplr: float = 0.5
    mosaic: float = 1.0
    mixup: float = 0.0
    copy_paste: float = 0.0
    paste_in: float = 0.0  # yolov7's paste-in augmentation (probability; data/paste_in.py)
    loss_ota: float = 1.0  # yolov7 heads (IDetect/IAuxDetect): 1 = OTA loss (engine/loss_ota.py), 0 = yolov5's
    # modyolo additions
    loss: str = "bce"  # "bce" (yolov5) or "vfl" (Varifocal, see engine/loss.py)
    vfl_alpha: float = 0.75  # Varifocal weight of negatives: alpha * p**gamma
    vfl_gamma: float = 2.0
    label_smoothing: float = 0.0  # yolov5 takes it from --label-smoothing; a hyp key here too
    rho: float = 0.05  # SAM neighbourhood radius (used only with --sam)
    sam_adaptive: bool = False  # ASAM: scale the perturbation by |w|

    def to_dict(self) -> dict[str, Any]:
        """Plain ``{key: value}`` (``anchors`` left out when unset, as yolov5's files do)."""
        out = dataclasses.asdict(self)
        if out["anchors"] is None:
            del out["anchors"]
        return out

    def replace(self, **changes: Any) -> Hyp:
        """A validated copy with some values changed (``hyp.replace(lr0=0.001)``)."""
        return Hyp.from_dict({**self.to_dict(), **changes}, source="Hyp.replace", log_missing=False)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "<dict>", log_missing: bool = True) -> Hyp:
        """Build from a mapping; unknown keys and bad values raise :class:`HypError` naming ``source``."""
        if not isinstance(values, Mapping):
            raise HypError(f"{source}: a hyp file must be a mapping of key: value, got {type(values).__name__}")
        known = {f.name: f for f in fields(cls)}
        unknown = [k for k in values if k not in known]
        if unknown:
            msgs = []
            for key in unknown:
                near = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.5)
                msgs.append(f"{key!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
            raise HypError(f"{source}: unknown hyperparameter {', '.join(msgs)}; valid keys are: {', '.join(known)}")
        missing = [k for k in known if k not in values and k != "anchors"]
        if missing and log_missing:
            defaults = cls()
            LOGGER.info(
                "%s: keys not given, using defaults: %s",
                source,
                ", ".join(f"{k}={getattr(defaults, k)}" for k in missing),
            )
        kwargs = {k: _coerce(k, v, known[k].type, source) for k, v in values.items()}
        hyp = cls(**kwargs)
        hyp.validate(source)
        return hyp

    def validate(self, source: str = "<hyp>") -> None:
        """Range checks; raises :class:`HypError` with the key, the value and the allowed range."""

        def bad(key: str, rule: str) -> HypError:
            return HypError(f"{source}: {key}={getattr(self, key)!r} is out of range; it must be {rule}")

        for key in ("lr0",):
            if not getattr(self, key) > 0:
                raise bad(key, "> 0")
        positive_or_zero = (
            "lrf",
            "weight_decay",
            "warmup_epochs",
            "warmup_bias_lr",
            "box",
            "cls",
            "obj",
            "box_af",
            "dfl",
            "fl_gamma",
            "degrees",
            "translate",
            "shear",
            "perspective",
            "vfl_gamma",
            "rho",
        )
        for key in positive_or_zero:
            if getattr(self, key) < 0:
                raise bad(key, ">= 0")
        for key in ("cls_pw", "obj_pw"):
            if not getattr(self, key) > 0:
                raise bad(key, "> 0 (a BCE positive weight)")
        if not self.anchor_t > 1:
            raise bad("anchor_t", "> 1 (the largest allowed ratio between a box side and its anchor side)")
        unit = (
            "momentum",
            "warmup_momentum",
            "iou_t",
            "hsv_h",
            "hsv_s",
            "hsv_v",
            "translate",
            "flipud",
            "fliplr",
            "mosaic",
            "mixup",
            "copy_paste",
            "vfl_alpha",
        )
        for key in unit:
            if not 0 <= getattr(self, key) <= 1:
                raise bad(key, "in [0, 1]")
        if not 0 <= self.label_smoothing < 1:
            raise bad("label_smoothing", "in [0, 1)")
        if not 0 <= self.scale < 1:
            raise bad("scale", "in [0, 1) (the image is scaled by a gain in [1 - scale, 1 + scale])")
        if self.lrf > 1:
            LOGGER.warning("%s: lrf=%s > 1 makes the learning rate grow during training", source, self.lrf)
        if self.loss not in ("bce", "vfl"):
            raise bad("loss", "'bce' or 'vfl'")
        if self.loss_ota not in (0, 1):
            raise bad("loss_ota", "0 or 1 (1: yolov7's OTA loss for yolov7 heads)")
        if not 0 <= self.paste_in <= 1:
            raise bad("paste_in", "in [0, 1]")
        if self.anchors is not None and not self.anchors > 0:
            raise bad("anchors", "> 0 or left out")


def _coerce(key: str, value: Any, annotation: Any, source: str) -> Any:
    """YAML gives ints for floats (``box: 1``) and may give strings; accept what is unambiguous."""
    kind = str(annotation)
    if value is None:
        if "None" in kind:
            return None
        raise HypError(f"{source}: {key} has no value; give a number or delete the line")
    if kind == "str":
        if not isinstance(value, str):
            raise HypError(f"{source}: {key}={value!r} must be a string")
        return value.lower()
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise HypError(f"{source}: {key}={value!r} must be true or false")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise HypError(f"{source}: {key}={value!r} must be a number")
    value = float(value)
    if not math.isfinite(value):
        raise HypError(f"{source}: {key}={value!r} must be a finite number")
    return value


def resolve_hyp_path(name_or_path: str | Path) -> Path:
    """A shipped name (``scratch-low``, ``hyp.finetune.yaml``) or a file path -> an existing path."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    stem = path.name.removesuffix(".yaml").removeprefix("hyp.")
    shipped = HYPS_DIR / f"{stem}.yaml"
    if path.parent == Path(".") and shipped.is_file():
        return shipped
    near = difflib.get_close_matches(stem, SHIPPED, n=1, cutoff=0.5)
    hint = f"did you mean {near[0]!r}? " if near else ""
    raise HypError(f"hyp file {str(name_or_path)!r} not found; {hint}give a path or one of: {', '.join(SHIPPED)}")


def load_hyp(source: str | Path | Mapping[str, Any] | Hyp | None = None, **overrides: Any) -> Hyp:
    """A validated :class:`Hyp` from a shipped name, a YAML path, a mapping or ``None`` / ``''`` (defaults).

    ``overrides`` (e.g. ``label_smoothing=0.1`` from a CLI flag) are applied on top and validated.
    """
    if source is None or (isinstance(source, str) and not source):
        hyp = Hyp()
    elif isinstance(source, Hyp):
        hyp = source
    elif isinstance(source, Mapping):
        hyp = Hyp.from_dict(source)
    else:
        path = resolve_hyp_path(source)
        try:
            values = read_yaml(path)
        except ValueError as e:
            raise HypError(f"{path}: not valid YAML ({e}); fix the line shown") from e
        hyp = Hyp.from_dict(values or {}, source=str(path))
    return hyp.replace(**overrides) if overrides else hyp


def stated_keys(source: str | Path | Mapping[str, Any] | Hyp | None) -> frozenset[str]:
    """The keys a hyp source sets itself: none for ``None`` / ``''`` (no ``--hyp`` given), every key
    for a :class:`Hyp`, the mapping's or the file's keys otherwise. ``--optimizer auto`` changes
    only keys that are not stated (see :mod:`modyolo.engine.recipe_auto`)."""
    if source is None or (isinstance(source, str) and not source):
        return frozenset()
    if isinstance(source, Hyp):
        return frozenset(source.to_dict())
    if isinstance(source, Mapping):
        return frozenset(str(k) for k in source)
    path = resolve_hyp_path(source)
    try:
        values = read_yaml(path)
    except ValueError as e:
        raise HypError(f"{path}: not valid YAML ({e}); fix the line shown") from e
    return frozenset(str(k) for k in values) if isinstance(values, Mapping) else frozenset()


def save_hyp(hyp: Hyp, path: str | Path) -> Path:
    """Write ``hyp`` as a yolov5-style YAML (key order as in yolov5's files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(hyp.to_dict(), sort_keys=False), encoding="utf-8")
    return path
