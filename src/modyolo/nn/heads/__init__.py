"""Detection head families beyond yolov5's anchor-based ``Detect`` (which lives in ``nn/head.py``).

The head protocol every head follows (duck-typed, so the anchor-based head needs no base class):
``nc``, ``nl``, ``stride`` (a buffer, set by :meth:`set_strides` after the build's dry run),
``initialize_biases()``, ``reset_grids()``, ``export`` (return only the tensor the exporter
writes), ``uses_anchors`` (autoanchor and anchor-fitness apply), ``needs_nms`` (its inference
output goes through NMS) and ``loss_kind`` (the key engine/ maps to the loss that trains it).
"""

from __future__ import annotations

from torch import nn


def is_head(module: nn.Module) -> bool:
    """True for a detection head (anything with the head protocol's ``set_strides``)."""
    return callable(getattr(module, "set_strides", None)) and hasattr(module, "stride")


def uses_anchors(head: nn.Module | None) -> bool:
    """Anchor-based heads (yolov5's Detect) say nothing and have an ``anchors`` buffer."""
    return head is not None and bool(getattr(head, "uses_anchors", hasattr(head, "anchors")))


def needs_nms(head: nn.Module | None) -> bool:
    return head is None or bool(getattr(head, "needs_nms", True))


def loss_kind(head: nn.Module | None) -> str:
    return str(getattr(head, "loss_kind", "anchor_based"))
