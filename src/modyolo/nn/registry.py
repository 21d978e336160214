"""The registries a model YAML resolves names through (never ``eval``)."""

from __future__ import annotations

from torch import nn

from modyolo.registry import Registry

#: Layer blocks: every name usable in the ``module`` column of a YAML row.
BLOCKS = Registry("module")

#: Activations usable in a YAML's ``activation:`` key, e.g. ``nn.LeakyReLU(0.1)``.
ACTIVATIONS = Registry("activation")
for _cls in (
    nn.SiLU,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.GELU,
    nn.Mish,
    nn.ELU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Identity,
):
    ACTIVATIONS.add(_cls.__name__, _cls, aliases=(f"nn.{_cls.__name__}",))
