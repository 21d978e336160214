"""The hyperparameter search space: yolov5's evolve bounds, overridable by a small YAML.

By default every hyp key yolov5 evolves is searched between yolov5 7.0's bounds (the ``meta``
table of its ``train.py``: mutation gain, lower, upper). A space file changes that::

    # modyolo tune --space my_space.yaml
    params:                    # bounds / scale for some keys; others keep the defaults
      lr0: {low: 1.0e-4, high: 0.05, log: true}
      momentum: [0.85, 0.98]   # [low, high] is short for {low: .., high: ..}
    fixed:                     # held at this value in every trial (not searched)
      mosaic: 1.0
    exclude: [copy_paste, mixup, perspective]   # not searched: they keep the base hyp's value
    only: []                   # when given, search only these keys (after params/fixed/exclude)

``lr0`` is searched on a log scale by default (its bounds span four decades; uniform sampling
would put 90% of the trials above 0.01). Everything else is linear, as in yolov5.

The loss gains searched are the ones the model's head is trained with (:func:`head_family` asks the
head): yolov5's Detect gets yolov5's keys; yolov7's IDetect / IAuxDetect add ``paste_in`` (as
yolov7's evolve table does); the anchor-free heads (DetectAF, the NMS-free head) search ``box_af``,
``cls`` and ``dfl`` and none of ``box``, ``obj``, ``obj_pw``, ``cls_pw``, ``anchor_t``, ``fl_gamma``,
``iou_t``, which their loss never reads (a space file naming those is trimmed the same way).
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from modyolo.engine.hyp import Hyp, HypError
from modyolo.yaml_io import read_yaml

LOGGER = logging.getLogger("modyolo.tools.tune")

# key: (mutation gain, lower, upper) — yolov5 7.0 train.py ``meta``. Gain 0 means yolov5's
# mutation loop never changes the key; the evolve sampler keeps that rule.
EVOLVE_META: dict[str, tuple[float, float, float]] = {
    "lr0": (1, 1e-5, 1e-1),
    "lrf": (1, 0.01, 1.0),
    "momentum": (0.3, 0.6, 0.98),
    "weight_decay": (1, 0.0, 0.001),
    "warmup_epochs": (1, 0.0, 5.0),
    "warmup_momentum": (1, 0.0, 0.95),
    "warmup_bias_lr": (1, 0.0, 0.2),
    "box": (1, 0.02, 0.2),
    "cls": (1, 0.2, 4.0),
    "cls_pw": (1, 0.5, 2.0),
    "obj": (1, 0.2, 4.0),
    "obj_pw": (1, 0.5, 2.0),
    "iou_t": (0, 0.1, 0.7),
    "anchor_t": (1, 2.0, 8.0),
    "fl_gamma": (0, 0.0, 2.0),
    "hsv_h": (1, 0.0, 0.1),
    "hsv_s": (1, 0.0, 0.9),
    "hsv_v": (1, 0.0, 0.9),
    "degrees": (1, 0.0, 45.0),
    "translate": (1, 0.0, 0.9),
    "scale": (1, 0.0, 0.9),
    "shear": (1, 0.0, 10.0),
    "perspective": (0, 0.0, 0.001),
    "flipud": (1, 0.0, 1.0),
    "fliplr": (0, 0.0, 1.0),
    "mosaic": (1, 0.0, 1.0),
    "mixup": (1, 0.0, 1.0),
    "copy_paste": (1, 0.0, 1.0),
}
LOG_BY_DEFAULT = frozenset({"lr0"})

# The loss-gain keys each loss family reads. The model's head says which family trains it
# (nn.heads.loss_kind, and ``uses_ota`` for the yolov7 heads); a key its loss never reads is not
# searched (trials spent on it would only measure noise).
LOSS_KEYS: dict[str, tuple[str, ...]] = {
    "anchor_based": ("box", "obj", "cls", "cls_pw", "obj_pw", "iou_t", "anchor_t", "fl_gamma"),  # yolov5
    "yolov7": ("box", "obj", "cls", "cls_pw", "obj_pw", "iou_t", "anchor_t", "fl_gamma"),  # OTA: same gains
    "anchor_free": ("box_af", "cls", "dfl"),  # BCE + CIoU + DFL; no objectness, no anchors
}
ALL_LOSS_KEYS = frozenset(k for keys in LOSS_KEYS.values() for k in keys)
# Keys searched for some families only, with their (gain, lower, upper): the anchor-free gains
# between the bounds ultralytics' tuner uses for its `box` and `dfl`; yolov7's evolve meta adds
# paste_in to yolov5's.
FAMILY_META: dict[str, dict[str, tuple[float, float, float]]] = {
    "anchor_based": {},
    "yolov7": {"paste_in": (1, 0.0, 1.0)},
    "anchor_free": {"box_af": (1, 1.0, 20.0), "dfl": (1, 0.4, 6.0)},
}
_SECTIONS = ("params", "fixed", "exclude", "only")


@dataclass(frozen=True)
class ParamSpec:
    """One searched key: ``low <= value <= high``, sampled on a log scale when ``log``."""

    name: str
    low: float
    high: float
    log: bool = False
    gain: float = 1.0  # yolov5 mutation gain (evolve sampler only)


@dataclass(frozen=True)
class SearchSpace:
    """What a trial samples (``params``) and what it pins (``fixed``), on top of a base hyp."""

    params: dict[str, ParamSpec]
    fixed: dict[str, Any]

    def distributions(self) -> dict[str, Any]:
        """``{key: optuna FloatDistribution}``, for enqueueing the base hyp as a trial."""
        import optuna

        return {k: optuna.distributions.FloatDistribution(p.low, p.high, log=p.log) for k, p in self.params.items()}

    def base_params(self, base: Hyp) -> dict[str, float]:
        """The base hyp's values clipped into the bounds: the search's first trial (as in yolov5)."""
        out = {}
        for k, p in self.params.items():
            out[k] = min(max(float(getattr(base, k)), p.low), p.high)
        return out

    def suggest(self, trial: Any, base: Hyp) -> Hyp:
        """Sample every searched key from ``trial`` (an optuna Trial) and build the trial's hyp.

        Raises :class:`HypError` (naming the trial) when the combination is invalid.
        """
        values = {k: trial.suggest_float(k, p.low, p.high, log=p.log) for k, p in self.params.items()}
        return self.hyp_from(base, values, source=f"trial {trial.number}")

    def hyp_from(self, base: Hyp, values: Mapping[str, float], source: str = "search space") -> Hyp:
        """``base`` with ``fixed`` and the sampled ``values`` applied, validated."""
        return Hyp.from_dict({**base.to_dict(), **self.fixed, **values}, source=source, log_missing=False)

    def fingerprint(self) -> dict[str, Any]:
        """A plain dict that identifies the space (stored on the study to detect a changed command)."""
        return {
            "params": {k: [p.low, p.high, p.log] for k, p in sorted(self.params.items())},
            "fixed": dict(sorted(self.fixed.items())),
        }


def default_space(family: str = "anchor_based") -> SearchSpace:
    """Every key of :data:`EVOLVE_META` between yolov5's bounds, fitted to a loss family (see
    :func:`head_family`): loss gains its loss does not read are left out, its own keys added."""
    if family not in LOSS_KEYS:
        raise ValueError(f"unknown loss family {family!r}; one of {', '.join(LOSS_KEYS)}")
    meta = {k: v for k, v in EVOLVE_META.items() if k not in ALL_LOSS_KEYS or k in LOSS_KEYS[family]}
    meta.update(FAMILY_META[family])
    params = {k: ParamSpec(k, lo, hi, log=k in LOG_BY_DEFAULT, gain=g) for k, (g, lo, hi) in meta.items()}
    return SearchSpace(params, {})


def head_family(model_cfg: Any) -> str:
    """The loss family of the head a model YAML (path, shipped name or dict) builds, asked of the
    head itself: ``"anchor_free"`` (its ``loss_kind``: DetectAF, the NMS-free head), ``"yolov7"``
    (IDetect / IAuxDetect, trained by the OTA loss) or ``"anchor_based"`` (yolov5's Detect)."""
    import copy

    from modyolo.nn.graph import build_layers, load_model_yaml
    from modyolo.nn.heads import is_head, loss_kind

    cfg, source = load_model_yaml(copy.deepcopy(model_cfg) if isinstance(model_cfg, dict) else model_cfg)
    head = build_layers(cfg, source)[0][-1].module
    if not is_head(head):
        return "anchor_based"
    if loss_kind(head) == "anchor_free":
        return "anchor_free"
    return "yolov7" if getattr(head, "uses_ota", False) else "anchor_based"


def load_space(path: str | Path | None, family: str = "anchor_based") -> SearchSpace:
    """The default space of the loss ``family``, changed by the YAML at ``path`` (see the module
    docstring for its format). Loss gains that the family's loss does not read are dropped even
    when the file gives them bounds (one shipped file serves every head)."""
    space = default_space(family)
    if path is None or str(path) == "":
        return space
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"search space file {path} not found; give a YAML path "
            f"(example: {Path(__file__).parent.parent / 'cfg' / 'tune' / 'space.yaml'})"
        )
    try:
        raw = read_yaml(path) or {}
    except ValueError as e:
        raise ValueError(f"{path}: not valid YAML ({e}); fix the line shown") from e
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a space file is a mapping with sections {', '.join(_SECTIONS)}")
    for section in raw:
        if section not in _SECTIONS:
            raise ValueError(
                f"{path}: unknown section {section!r}{_near(section, _SECTIONS)}; sections are {', '.join(_SECTIONS)}"
            )
    return apply_overrides(space, raw, str(path), family)


def apply_overrides(
    space: SearchSpace, raw: Mapping[str, Any], source: str = "space", family: str = "anchor_based"
) -> SearchSpace:
    """Apply the ``params`` / ``fixed`` / ``exclude`` / ``only`` sections of a space mapping; loss
    gains the ``family``'s loss does not read are dropped from the search (logged)."""
    hyp_keys = [k for k in Hyp().to_dict()]
    params = dict(space.params)
    fixed = dict(space.fixed)
    for key, spec in (raw.get("params") or {}).items():
        _check_key(key, hyp_keys, source, "params")
        if not isinstance(getattr(Hyp(), key), float):
            raise ValueError(f"{source}: params.{key} is not a numeric hyperparameter; pin it under 'fixed'")
        params[key] = _param(key, spec, params.get(key), source)
    for key, value in (raw.get("fixed") or {}).items():
        _check_key(key, hyp_keys, source, "fixed")
        fixed[key] = value
        params.pop(key, None)
    for key in raw.get("exclude") or []:
        _check_key(key, hyp_keys, source, "exclude")
        params.pop(key, None)
    unread = sorted(k for k in params if k in ALL_LOSS_KEYS and k not in LOSS_KEYS[family])
    for key in unread:
        del params[key]
    if unread:
        LOGGER.info("%s: not searched, the %s head's loss does not read them: %s", source, family, ", ".join(unread))
    only = raw.get("only") or []
    for key in only:
        _check_key(key, hyp_keys, source, "only")
        if key in ALL_LOSS_KEYS and key not in LOSS_KEYS[family]:
            raise ValueError(
                f"{source}: 'only' names {key!r}, which the model's {family} head's loss does not read; "
                f"its loss gains are {', '.join(LOSS_KEYS[family])}"
            )
        if key not in params:
            raise ValueError(
                f"{source}: 'only' names {key!r}, which is not searched (fixed, excluded or "
                f"without bounds); give it bounds under 'params'"
            )
    if only:
        params = {k: params[k] for k in only}
    try:  # the fixed values must make a valid hyp on their own
        Hyp.from_dict({**Hyp().to_dict(), **fixed}, source=f"{source} (fixed)", log_missing=False)
    except HypError as e:
        raise ValueError(str(e)) from e
    return SearchSpace(params, fixed)


def _param(key: str, spec: Any, old: ParamSpec | None, source: str) -> ParamSpec:
    where = f"{source}: params.{key}"
    gain = old.gain if old else 1.0
    if isinstance(spec, (list, tuple)) and len(spec) == 2:
        spec = {"low": spec[0], "high": spec[1]}
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: give [low, high] or {{low: .., high: .., log: true|false}}, got {spec!r}")
    unknown = set(spec) - {"low", "high", "log", "gain"}
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}; fields are low, high, log, gain")
    if old is None and not {"low", "high"} <= set(spec):
        raise ValueError(f"{where}: {key} has no default bounds; give both low and high")
    merged = replace(old, **spec) if old else ParamSpec(key, **{"gain": gain, **spec})
    try:
        low, high, gain = float(merged.low), float(merged.high), float(merged.gain)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: low, high and gain must be numbers, got {spec!r}") from e
    if not low < high:
        raise ValueError(f"{where}: low={low} must be below high={high} (use 'fixed' to pin a value)")
    if merged.log and low <= 0:
        raise ValueError(f"{where}: a log-scale range needs low > 0, got {low}; raise low or set log: false")
    return ParamSpec(key, low, high, bool(merged.log), gain)


def _check_key(key: Any, keys: list[str], source: str, section: str) -> None:
    if key not in keys:
        raise ValueError(f"{source}: {section} names unknown hyperparameter {key!r}{_near(str(key), keys)}")


def _near(word: str, options: Any) -> str:
    near = difflib.get_close_matches(word, list(options), n=1, cutoff=0.5)
    return f"; did you mean {near[0]!r}?" if near else ""
