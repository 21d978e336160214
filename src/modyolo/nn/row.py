"""How a block reads one layer row of a model YAML.

A row is ``[from, number, module, args]``. The graph builder resolves ``module`` through the
block registry, scales ``number`` by ``depth_multiple``, substitutes ``nc`` / ``anchors`` in
``args`` and then hands the block a :class:`Row`. The block's ``from_row`` classmethod returns
``(module, c2)`` where ``c2`` is its output channels: an ``int``, or a ``list[int]`` for a layer
that returns several feature maps (a whole external backbone). The builder never needs to know
a block's argument layout, so adding a block means adding a file, not editing the builder.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from torch import nn


class ModelConfigError(ValueError):
    """A model YAML that cannot be built; the message names the file, the layer and the fix."""


def make_divisible(x: float, divisor: int = 8) -> int:
    """Smallest multiple of ``divisor`` that is >= x (yolov5's channel rounding)."""
    return int(math.ceil(x / divisor) * divisor)


Channels = int | list[int]


@dataclass
class Row:
    """One YAML layer row as its block sees it.

    ``ch_in`` holds the output channels of each layer named in ``from`` (in that order); an entry
    is a ``list[int]`` when that layer returns several feature maps.
    """

    index: int
    source: str
    from_: int | list[int]
    number: int
    module: str
    args: list[Any]
    ch_in: list[Channels]
    width_multiple: float = 1.0
    depth_multiple: float = 1.0
    nc: int = 80
    no: int = 85  # outputs per anchor of the detection head; yolov5 never width-scales it
    extra: dict[str, Any] = field(default_factory=dict)  # builder options (e.g. pretrained paths)
    max_channels: float = float("inf")  # ultralytics ``scales:`` cap, applied before width_multiple

    # -- helpers every block uses -------------------------------------------------------------
    @property
    def c1(self) -> int:
        """Channels of the single input; an error if the row has several or a list input."""
        if len(self.ch_in) != 1:
            raise self.error(f"takes one input but 'from' names {len(self.ch_in)} layers ({self.from_})")
        c = self.ch_in[0]
        if isinstance(c, list):
            raise self.error(
                f"its input (layer {self.from_}) returns {len(c)} feature maps; "
                "add an Index row to pick one, e.g. [-1, 1, Index, [2]]"
            )
        return c

    def width(self, c2: int) -> int:
        """Output channels scaled by width_multiple as yolov5 does (the head's ``no`` is kept)."""
        if not isinstance(c2, int) or isinstance(c2, bool):
            raise self.error(f"first arg (output channels) must be an integer, got {c2!r}")
        return c2 if c2 == self.no else make_divisible(min(c2, self.max_channels) * self.width_multiple, 8)

    def where(self) -> str:
        return f"layer {self.index} ({self.module}) of {self.source}"

    def error(self, message: str) -> ModelConfigError:
        return ModelConfigError(f"{self.where()}: {message}")

    def construct(self, cls: Callable[..., nn.Module], *args: Any, **kwargs: Any) -> nn.Module:
        """``cls(*args)`` with a readable error when the row's args do not fit its signature."""
        try:
            inspect.signature(cls).bind(*args, **kwargs)
        except TypeError as e:
            raise self.error(
                f"args {self.args} do not fit {getattr(cls, '__name__', cls)}{_signature(cls)}: {e}"
            ) from None
        try:
            return cls(*args, **kwargs)
        except ModelConfigError:
            raise
        except Exception as e:  # a wrong type deep inside torch: say which row caused it
            raise self.error(f"could not build it with args {self.args}: {type(e).__name__}: {e}") from e

    def repeat(self, make: Callable[[], nn.Module]) -> nn.Module:
        """``number`` copies in an ``nn.Sequential`` (yolov5's layout, so state_dict keys match)."""
        if self.number > 1:
            return nn.Sequential(*(make() for _ in range(self.number)))
        return make()


def _signature(cls: Any) -> str:
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        return "(...)"
    return str(sig)


class YamlBlock:
    """Mixin with the row reading shared by yolov5-style blocks.

    yolov5's convention: ``args = [c2, *rest]`` becomes ``cls(c1, width(c2), *rest)``; blocks
    that repeat internally (C3, BottleneckCSP) set ``absorbs_repeats`` and get the row's number
    as their third argument; other blocks are repeated ``number`` times in an ``nn.Sequential``.
    Blocks with another layout override :meth:`from_row`.
    """

    absorbs_repeats: bool = False

    @classmethod
    def from_row(cls, row: Row) -> tuple[nn.Module, Channels]:
        if not row.args:
            raise row.error(f"needs at least the output channels as its first arg, e.g. [{64}]")
        c1, c2 = row.c1, row.width(row.args[0])
        args = [c1, c2, *row.args[1:]]
        if cls.absorbs_repeats:
            args.insert(2, row.number)
            return row.construct(cls, *args), c2
        if row.number > 1 and c1 != c2:
            # The 2nd copy would receive c2 channels but expect c1: say so instead of a shape error.
            raise row.error(
                f"is repeated {row.number} times but changes channels {c1} -> {c2}; "
                "repeat only channel-preserving blocks or set number to 1"
            )
        return row.repeat(lambda: row.construct(cls, *args)), c2


# -- default activation ---------------------------------------------------------------------
# A model YAML may say `activation: nn.LeakyReLU(0.1)`. yolov5 assigns Conv.default_act globally
# (and evals the string); here the builder sets it for the duration of one build only.
_default_act: contextvars.ContextVar[Callable[[], nn.Module]] = contextvars.ContextVar(
    "modyolo_default_act", default=lambda: nn.SiLU(inplace=True)
)


def default_activation() -> nn.Module:
    """A fresh instance of the activation blocks use when their row says ``act=True``."""
    return _default_act.get()()


@contextlib.contextmanager
def using_activation(factory: Callable[[], nn.Module]) -> Iterator[None]:
    token = _default_act.set(factory)
    try:
        yield
    finally:
        _default_act.reset(token)
