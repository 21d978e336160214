"""Every number on the command line checked at parse time, by destination name, for every verb.

``modyolo <verb>`` parses its flags with argparse and then calls :func:`check_args` (from
``modyolo.cli``) before any work starts: ``--img 0``, ``--batch-size 0``, ``--workers -1``,
``--fraction 0``, ``--epochs 0`` end with one line naming the flag and the allowed range, exit
code 2 (argparse's), before autoanchor, a run folder or a dataset scan.

Image sizes are rounded *up* to a multiple of :data:`STRIDE` (32, the largest stride of the
P5 models) here, the same way for every verb, with one line saying so; ``--img 33`` means 64 for
train, val, detect, export and profile alike. A P6 model (stride 64) may round once more, as yolov5 does.

A rule names the ``dest`` of an option; verbs that define no option of that name are untouched,
so adding a verb needs no edit here unless it introduces a new kind of number.
"""

from __future__ import annotations

import argparse
import logging
import math
from dataclasses import dataclass

LOGGER = logging.getLogger("modyolo.cli")

STRIDE = 32
MIN_IMG = 32


@dataclass(frozen=True)
class Rule:
    """Allowed closed range [lo, hi] (None: unbounded); ``open_lo`` makes the lower bound exclusive."""

    lo: float | None = None
    hi: float | None = None
    open_lo: bool = False
    why: str = ""

    def ok(self, v: float) -> bool:
        if not math.isfinite(v):
            return False
        if self.lo is not None and (v <= self.lo if self.open_lo else v < self.lo):
            return False
        return self.hi is None or v <= self.hi

    def describe(self) -> str:
        lo = "" if self.lo is None else (f"> {self.lo:g}" if self.open_lo else f">= {self.lo:g}")
        hi = "" if self.hi is None else f"<= {self.hi:g}"
        text = " and ".join(s for s in (lo, hi) if s)
        return text + (f" ({self.why})" if self.why else "")


# dest -> rule. Values a verb documents as special (train --batch-size -1 = auto) are allowed.
RULES: dict[str, Rule] = {
    "imgsz": Rule(MIN_IMG, 16384, why=f"pixels, rounded up to a multiple of {STRIDE}"),
    "img": Rule(MIN_IMG, 16384, why=f"pixels, rounded up to a multiple of {STRIDE}"),  # profile, data, reparam
    "batch_size": Rule(1, 4096),
    "workers": Rule(0, 256),
    "fraction": Rule(0, 1, open_lo=True, why="share of the train set"),
    "epochs": Rule(1, 100_000),
    "patience": Rule(0, None, why="0 disables early stopping"),
    "conf_thres": Rule(0, 1),
    "iou_thres": Rule(0, 1),
    "max_det": Rule(1, 100_000),
    "label_smoothing": Rule(0, 1),
    "nbs": Rule(0, 100_000, why="0 = auto (--optimizer auto's rule)"),
    "save_period": Rule(-1, None, why="-1 or 0 disables"),
    "close_mosaic": Rule(-1, None, why="-1 = auto (--optimizer auto's rule)"),
    "vid_stride": Rule(1, None),
    "line_thickness": Rule(1, 100),
    "runs": Rule(1, None),
    "warmup": Rule(0, None),
    "latency_runs": Rule(1, None),
    "latency_warmup": Rule(0, None),
    "jobs": Rule(1, 1024),
    "job_threads": Rule(0, 1024),
    "threads": Rule(0, 1024),
    "bootstrap": Rule(0, None),
    "samples": Rule(0, None),
    "max_batches": Rule(0, None, why="0 = all"),
    "trials": Rule(1, None),
    "timeout": Rule(0, None, why="0 = no limit"),
    "heartbeat": Rule(1, None),
    "max_failures": Rule(0, None),
    "n": Rule(1, 10_000),
    "nc": Rule(1, 100_000),
    "opset": Rule(7, 30),
    "evolve": Rule(0, None),
    "max_drop": Rule(0, None),
    "int8_max_drop": Rule(0, None),
    "classes": Rule(0, None, why="class ids"),
    "gpus_per_job": Rule(0, None, open_lo=True),
}


def _flag(parser: argparse.ArgumentParser, dest: str) -> str:
    """The first long option string of ``dest`` (``--img`` for ``imgsz``)."""
    for action in parser._actions:
        if action.dest == dest and action.option_strings:
            return action.option_strings[0]
    return dest


def _round_img(value: int, flag: str, verb: str) -> int:
    rounded = math.ceil(value / STRIDE) * STRIDE
    if rounded != value:
        LOGGER.warning(
            "%s %s %d rounded up to %d (a multiple of the largest stride, %d); every verb rounds the same way",
            verb,
            flag,
            value,
            rounded,
            STRIDE,
        )
    return rounded


def check_args(args: argparse.Namespace, parser: argparse.ArgumentParser, verb: str) -> None:
    """Validate every numeric option in ``args`` against :data:`RULES`; round image sizes in place.

    Exits 2 with one line on stderr naming the flag, the value and the range.
    """
    for dest, rule in RULES.items():
        if not hasattr(args, dest):
            continue
        value = getattr(args, dest)
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            if dest == "batch_size" and v == -1 and verb == "train":
                continue  # train --batch-size -1: automatic batch size, as in yolov5
            if not rule.ok(v):
                # one line (argparse's error() would print the whole usage block of a verb first)
                parser.exit(
                    2,
                    f"{parser.prog}: error: argument {_flag(parser, dest)}: {v:g} is out of range; "
                    f"allowed: {rule.describe()}\n",
                )
        if dest in ("imgsz", "img") and value is not None:
            flag = _flag(parser, dest)
            if isinstance(value, list):
                setattr(args, dest, [_round_img(int(v), flag, verb) for v in value])
            elif isinstance(value, int):
                setattr(args, dest, _round_img(value, flag, verb))
