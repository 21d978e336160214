"""Ultralytics-format compound scaling: a ``scales:`` table and the scale letter that picks a row.

An ultralytics model YAML (``yolov8.yaml``, ``yolo11.yaml``, ``v5/yolov5.yaml``) declares one
architecture and a table ``scales: {n: [depth, width, max_channels], s: [...], ...}``. The scale
is named by the file name (``yolo11n.yaml`` means scale ``n`` of ``yolo11.yaml``, which need not
exist as a file) or by a ``scale:`` key in the YAML. ``max_channels`` caps a row's output
channels *before* the width multiple is applied (``min(c2, max_channels) * width``), which is how
ultralytics keeps the l/x models' deepest layers at 512.

A yolov5-format file (no ``scales:``) is untouched: its ``depth_multiple`` / ``width_multiple``
apply, and a scale-like letter in its name (``yolov5n.yaml``) means nothing.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from modyolo.nn.row import ModelConfigError

LOGGER = logging.getLogger("modyolo.nn.scales")

# stem = <base ending in a digit><scale letter><rest>: yolo11n, yolov8s-p2, yolov5nu (-> yolov5u)
_SCALED_STEM = re.compile(r"^(?P<base>.*\d)(?P<scale>[nslmx])(?P<rest>.*)$")


def guess_scale(name: str | Path) -> str | None:
    """The scale letter a file name carries (``yolo11n.yaml`` -> ``n``), or None."""
    m = _SCALED_STEM.match(Path(str(name)).stem)
    return m.group("scale") if m else None


def unscaled_name(name: str | Path) -> str | None:
    """``.../yolo11n.yaml`` -> ``.../yolo11.yaml``, ``yolov5nu`` -> ``yolov5u`` (same folder);
    None without a scale letter."""
    p = Path(str(name))
    m = _SCALED_STEM.match(p.stem)
    if not m:
        return None
    return str(p.with_name(f"{m.group('base')}{m.group('rest')}{p.suffix or '.yaml'}"))


def apply_scales(cfg: dict, source: str) -> float:
    """Resolve ``scales:`` + ``scale`` into ``depth_multiple`` / ``width_multiple``; return max_channels.

    Multiples already in ``cfg`` win over the scale's (explicit overrides); ultralytics' files
    never carry both.

    Writes the chosen letter back into ``cfg['scale']`` so a checkpoint's YAML dict rebuilds the
    same model. Returns ``inf`` for yolov5-format files (no cap).
    """
    scales, scale = cfg.get("scales"), cfg.get("scale")
    if scales is None:
        if scale not in (None, ""):
            raise ModelConfigError(
                f"{source}: has 'scale: {scale}' but no 'scales:' table to look it up in; remove 'scale' or add "
                "scales: {n: [depth, width, max_channels], ...}"
            )
        return float("inf")
    if not isinstance(scales, dict) or not scales:
        raise ModelConfigError(f"{source}: 'scales' must map a letter to [depth, width, max_channels], got {scales!r}")
    for letter, row in scales.items():
        if (
            not isinstance(row, list)
            or len(row) != 3
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in row)
        ):
            raise ModelConfigError(
                f"{source}: scales.{letter} must be [depth, width, max_channels] positive numbers, got {row!r}"
            )
    if scale in (None, ""):
        scale = next(iter(scales))
        LOGGER.warning(
            "%s: no scale given (neither in the file name, e.g. %s, nor as 'scale:'); using the first one, '%s'",
            source,
            _example(source, scale),
            scale,
        )
    if scale not in scales:
        defined = ", ".join(map(str, scales))
        raise ModelConfigError(
            f"{source}: scale {scale!r} is not defined under 'scales:' (it defines {defined}); use one of them, "
            f"e.g. {_example(source, next(iter(scales)))} or 'scale: {next(iter(scales))}'"
        )
    depth, width, max_channels = scales[scale]
    cfg["scale"] = scale
    # Multiples written beside `scales:` (a tool or test shrinking a model, a checkpoint's own dict)
    # override the scale's; max_channels always comes from the scale. ultralytics' files never
    # carry both, so its YAMLs build as ultralytics builds them.
    for key, value in (("depth_multiple", depth), ("width_multiple", width)):
        if key in cfg and cfg[key] != value:
            LOGGER.info(
                "%s: %s=%s given beside scales.%s (%s); the given value is used", source, key, cfg[key], scale, value
            )
        cfg.setdefault(key, value)
    return float(max_channels)


def _example(source: str, letter: str) -> str:
    stem = Path(source).stem
    m = _SCALED_STEM.match(stem)
    if m:
        return f"{m.group('base')}{letter}{m.group('rest')}.yaml"
    digits = re.match(r"^(.*\d)(.*)$", stem)  # yolov5u -> yolov5nu, yolov8-resnet18 -> yolov8n-resnet18
    return f"{digits.group(1)}{letter}{digits.group(2)}.yaml" if digits else f"{stem}{letter}.yaml"
