"""Refuse a model that cannot fit *before* allocating it (``depth_multiple: 100000``, ``width_multiple: 8``).

Two checks, both cheap compared to the build they guard:

- repeats: every row's ``number`` scaled by ``depth_multiple`` is plain arithmetic on the YAML;
  over ``MAX_REPEATS`` blocks in all the model is refused naming ``depth_multiple`` (building
  100000 repeats of a C3 would take minutes and gigabytes of Python objects before any message);
- parameters: when ``width_multiple`` is above anything shipped (``WIDE``), the layers are first
  built on PyTorch's ``meta`` device (shapes only, no memory) and their parameters counted.
  Training needs about 16 bytes a parameter (fp32 weights, gradients and two optimizer moments);
  a model whose estimate exceeds the memory available now is refused naming ``width_multiple``
  and the estimate. ``MODYOLO_MAX_PARAMS`` sets a fixed parameter limit instead.

A block that cannot be built on ``meta`` (an external backbone reading weights) simply skips the
estimate: the check may let a model through, never refuse a good one.
"""

from __future__ import annotations

import contextvars
import logging
import os
from collections.abc import Callable

import torch

from modyolo.nn.row import ModelConfigError

LOGGER = logging.getLogger("modyolo.nn.budget")

MAX_REPEATS = 5_000  # yolov5x has 24 repeated blocks in all; a deep ablation has a few hundred
WIDE = 1.5  # the widest shipped scale is yolov5x / yolov8x at 1.25
BYTES_PER_PARAM = 16  # fp32 weight + gradient + two Adam/SGD-momentum buffers

_ESTIMATING: contextvars.ContextVar[bool] = contextvars.ContextVar("modyolo_budget_estimating", default=False)


def check_repeats(source: str, depth_multiple: float, numbers: list[int]) -> None:
    """Raise ModelConfigError when the rows' repeats, scaled by ``depth_multiple``, exceed ``MAX_REPEATS``."""
    total = sum(max(round(n * depth_multiple), 1) if n > 1 else n for n in numbers)
    if total > MAX_REPEATS:
        raise ModelConfigError(
            f"{source}: depth_multiple={depth_multiple} scales the rows' repeats to {total:,} blocks (limit "
            f"{MAX_REPEATS:,}; yolov5x has 24). Use a depth_multiple like 0.33-1.33."
        )


def available_bytes() -> int | None:
    """Memory available now (Linux MemAvailable), or None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def estimating() -> bool:
    """True inside :func:`check_params`' meta build (so the build does not estimate itself)."""
    return _ESTIMATING.get()


def _param_limit() -> tuple[int | None, str]:
    raw = os.environ.get("MODYOLO_MAX_PARAMS", "")
    if raw:
        try:
            return int(float(raw)), f"MODYOLO_MAX_PARAMS={raw}"
        except ValueError:
            raise ModelConfigError(f"MODYOLO_MAX_PARAMS={raw!r} is not a number; unset it or give e.g. 5e8") from None
    avail = available_bytes()
    if avail is None:
        return None, ""
    return avail // BYTES_PER_PARAM, f"{avail / 2**30:.1f} GiB of memory available at {BYTES_PER_PARAM} B/parameter"


def check_params(source: str, width_multiple: float, build: Callable[[], list]) -> int | None:
    """Build the layers on ``meta`` with ``build()``; refuse when their parameters cannot fit. Returns the count."""
    if width_multiple <= WIDE or estimating():
        return None
    token = _ESTIMATING.set(True)
    try:
        with torch.device("meta"):
            layers = build()
        count = sum(p.numel() for layer in layers for p in layer.module.parameters())
    except ModelConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - a block that cannot be built on meta: no estimate
        LOGGER.debug("%s: no parameter estimate on the meta device (%s); building directly", source, e)
        return None
    finally:
        _ESTIMATING.reset(token)
    limit, why = _param_limit()
    if limit is not None and count > limit:
        raise ModelConfigError(
            f"{source}: width_multiple={width_multiple} gives an estimated {count / 1e6:,.0f}M parameters "
            f"({count * BYTES_PER_PARAM / 2**30:,.1f} GiB to train), over the limit of {limit / 1e6:,.0f}M ({why}). "
            "Use a width_multiple like 0.25-1.25."
        )
    LOGGER.debug("%s: width_multiple=%s: %d parameters estimated", source, width_multiple, count)
    return count
