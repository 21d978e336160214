"""Names and small types that cross rooms, defined once.

The metric keys every room reads (the validator's dict, ``results.csv``, ``best.pt`` selection, tune,
compare, the API's ``val``) and :func:`fitness`, the figure ``best.pt`` and searches are chosen by.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

PRECISION, RECALL, MAP50, MAP50_95, FITNESS = "precision", "recall", "mAP50", "mAP50-95", "fitness"
#: The validation metrics, in yolov5's order (results.csv's columns, the tables' P / R / mAP50 / mAP50-95).
METRICS: tuple[str, str, str, str] = (PRECISION, RECALL, MAP50, MAP50_95)
#: The weights of :func:`fitness` (yolov5's): mAP50-95 decides, mAP50 breaks near-ties.
FITNESS_WEIGHTS: dict[str, float] = {MAP50: 0.1, MAP50_95: 0.9}
#: The three parts of the anchor-based loss, in the order the loss returns them.
LOSS_PARTS: tuple[str, str, str] = ("box_loss", "obj_loss", "cls_loss")


def fitness(metrics: Mapping[str, float] | Sequence[float] | np.ndarray) -> float:
    """``0.1 * mAP50 + 0.9 * mAP50-95``.

    metrics: ``{"mAP50": .., "mAP50-95": ..}`` (the validator's dict) or yolov5's
    ``[P, R, mAP50, mAP50-95, ...]`` row. Raises ``KeyError`` naming the keys it needs.
    """
    if isinstance(metrics, Mapping):
        try:
            return sum(w * float(metrics[k]) for k, w in FITNESS_WEIGHTS.items())
        except KeyError as e:
            raise KeyError(f"fitness needs metrics {list(FITNESS_WEIGHTS)}, got {list(metrics)}") from e
    row = np.asarray(metrics, dtype=np.float64)
    return float(FITNESS_WEIGHTS[MAP50] * row[..., 2] + FITNESS_WEIGHTS[MAP50_95] * row[..., 3])
