"""Find the layer an export fails on, so the error names it instead of showing an exporter trace.

Exporters fail deep inside their own code ("Unsupported: ONNX export of convolution for kernel
of unknown shape", a 200-line TorchScript IR dump) and never say which YAML row was the cause.
When a whole-model export fails, we run the model once with hooks that record each layer's
input, then export every layer on its own, in order, with those inputs; the first layer that
fails is the culprit, and :class:`ExportError` names its index, YAML block name and the first
line of the exporter's reason.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from modyolo.nn.model import DetectionModel

Inputs = tuple[torch.Tensor, ...]
#: attempt(module, trace_inputs, check_inputs): raises when ``module`` cannot be exported with
#: ``trace_inputs`` or the export disagrees with PyTorch on ``check_inputs``.
Attempt = Callable[[nn.Module, Inputs, Inputs], None]


class ExportError(ValueError):
    """An export that failed; the message names the format, the layer and a fix."""


@dataclass
class LayerCall:
    """One layer's input during a forward: ``list_input`` when the layer takes a list of maps."""

    index: int
    name: str
    module: nn.Module
    inputs: Inputs
    list_input: bool


class LayerAdapter(nn.Module):
    """One layer as a module of positional tensors -> tensor or tuple (what exporters take)."""

    def __init__(self, module: nn.Module, list_input: bool) -> None:
        super().__init__()
        self.layer = module
        self.list_input = list_input

    def forward(self, *xs: torch.Tensor):
        y = self.layer(list(xs)) if self.list_input else self.layer(xs[0])
        return tuple(y) if isinstance(y, (list, tuple)) else y


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """Silence exporter noise: TracerWarnings, deprecation notices and the IR dump on failure.

    torch 2.14's legacy ONNX exporter turns its C++ log on for every export (its
    ``setup_onnx_logging`` tests the function ``_jit_is_onnx_log_enabled`` instead of calling
    it) and then prints the whole TorchScript graph to stderr when a node fails. The error we
    raise names the layer instead, so the dump is suppressed by stubbing the log call.
    """
    log = getattr(torch._C, "_jit_onnx_log", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if log is not None:
            torch._C._jit_onnx_log = lambda *args: None
        try:
            yield
        finally:
            if log is not None:
                torch._C._jit_onnx_log = log


def short_reason(e: BaseException, limit: int = 300) -> str:
    """``Type: first meaningful line`` of an exception (exporters append pages of IR)."""
    text = next((line.strip() for line in str(e).splitlines() if line.strip()), "")
    text = text.split("[Caused by")[0].strip()
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def capture_layer_inputs(model: DetectionModel, x: torch.Tensor) -> list[LayerCall]:
    """Run ``model`` on ``x`` recording a copy of every layer's input (in eval mode, no grad).

    Raises :class:`ExportError` naming the layer if the forward itself fails (e.g. an input
    size the model cannot take).
    """
    calls: list[LayerCall] = []
    hooks = []

    def make_hook(i: int):
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            a = args[0]
            is_list = isinstance(a, (list, tuple))
            tensors = tuple(t.detach().clone() for t in a) if is_list else (a.detach().clone(),)
            calls.append(LayerCall(i, layer_name(model, i), module, tensors, is_list))

        return hook

    for i, module in enumerate(model.model):
        hooks.append(module.register_forward_pre_hook(make_hook(i)))
    try:
        with torch.no_grad():
            model(x)
    except Exception as e:
        i = calls[-1].index if calls else 0
        raise ExportError(
            f"the forward pass fails at layer {i} ({layer_name(model, i)}) of {model.source} on an input of "
            f"shape {tuple(x.shape)}: {short_reason(e)}; check --img is a multiple of the stride and that "
            "the model runs in PyTorch before exporting"
        ) from e
    finally:
        for h in hooks:
            h.remove()
    return calls


def layer_name(model: DetectionModel, i: int) -> str:
    """The block name the YAML row used (``Dynamic_conv2d``), else the module's class name."""
    meta = getattr(model, "layers_meta", None)
    if meta and i < len(meta):
        return str(meta[i].name)
    return type(model.model[i]).__name__


def locate_failure(
    model: DetectionModel, trace_x: torch.Tensor, check_x: torch.Tensor, attempt: Attempt
) -> tuple[LayerCall, BaseException] | None:
    """The first layer (and its error) for which ``attempt`` fails, or None if every layer passes.

    trace_x: the export input; check_x: the input to compare on (another shape when dynamic).
    """
    traced = capture_layer_inputs(model, trace_x)
    checked = capture_layer_inputs(model, check_x) if check_x is not trace_x else traced
    for call, check in zip(traced, checked):
        adapter = LayerAdapter(call.module, call.list_input).eval()
        try:
            with quiet_exporter(), torch.no_grad():
                attempt(adapter, call.inputs, check.inputs)
        except Exception as e:  # noqa: BLE001 — any exporter failure is what we are looking for
            return call, e
    return None


def explain_failure(
    fmt: str,
    model: DetectionModel,
    trace_x: torch.Tensor,
    check_x: torch.Tensor,
    attempt: Attempt,
    whole_error: BaseException,
    dynamic: bool,
) -> ExportError:
    """An :class:`ExportError` for a failed whole-model export, naming the first failing layer."""
    found = locate_failure(model, trace_x, check_x, attempt)
    fix = (
        "export with a fixed batch size and input size (drop --dynamic)"
        if dynamic
        else "make the block's forward traceable: tensor operations only, no Python branches on tensor "
        "values, no ops without an equivalent in the target format; or replace the block"
    )
    if found is None:
        return _chained(
            ExportError(
                f"{fmt} export of {model.source} failed, though every layer exports on its own, so the "
                f"problem is in how layers connect: {short_reason(whole_error)}; {fix}"
            ),
            whole_error,
        )
    call, err = found
    block = type(call.module).__name__
    what = call.name if call.name == block else f"{call.name}, class {block}"
    shapes = ", ".join(str(tuple(t.shape)) for t in call.inputs)
    return _chained(
        ExportError(
            f"{fmt} export failed at layer {call.index} ({what}) of {model.source}, input {shapes}: "
            f"{short_reason(err)}. Fix: {fix}"
        ),
        err,
    )


def _chained(error: ExportError, cause: BaseException) -> ExportError:
    """``raise error`` then reads as ``raise error from cause`` (the layer's own exception)."""
    error.__cause__ = cause
    error.__suppress_context__ = True
    return error
