"""Autoanchor: check the anchors fit the training boxes; if not, compute better ones.

The loss matches a box to an anchor when every side ratio is within ``anchor_t`` (see
:mod:`modyolo.engine.assign`). The *best possible recall* (BPR) is the fraction of training
boxes that at least one anchor can match; below 0.98 some objects can never be learned, so new
anchors are computed: k-means on the (whitened) box sizes, then a genetic refinement that
mutates the anchors and keeps a mutation when it raises the anchor fitness (mean of each box's
best ratio, counting only matchable boxes). The new anchors replace the old ones only when they
raise the BPR, are written into the model's ``head.anchors`` (grid units, smallest anchors on
the smallest stride) and so travel with every checkpoint, as that buffer is in the state_dict.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

import numpy as np
import torch

from modyolo.nn.head import Detect
from modyolo.nn.head import check_anchor_order as check_anchor_order  # re-exported (one check, in nn)
from modyolo.nn.heads import uses_anchors

if TYPE_CHECKING:
    from modyolo.nn.model import DetectionModel

LOGGER = logging.getLogger(__name__)

BPR_OK = 0.98
MIN_SIDE_PX = 2.0  # boxes with both sides under 2 px carry no shape information


def label_wh(shapes: np.ndarray, labels: Sequence[np.ndarray], imgsz: int) -> np.ndarray:
    """Box sizes in pixels at training size.

    shapes: np.ndarray[n_images, 2] original (w, h) of each image.
    labels: per image np.ndarray[n, 5] = (cls, cx, cy, w, h) normalised 0-1.
    Returns np.ndarray[N, 2] (w, h) after letterboxing the longer side to ``imgsz``.
    """
    shapes = np.asarray(shapes, dtype=np.float64)
    scaled = imgsz * shapes / shapes.max(1, keepdims=True)
    parts = [np.asarray(lb, dtype=np.float64).reshape(-1, 5)[:, 3:5] * s for s, lb in zip(scaled, labels)]
    return np.concatenate(parts, 0) if parts else np.zeros((0, 2))


def _ratio_quality(wh: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Tensor[N, K]: for each box and anchor, the worst side ratio min(r, 1/r) (1 = perfect fit)."""
    r = wh[:, None] / anchors[None]
    return torch.min(r, 1 / r).min(2).values


def anchor_metrics(
    wh: np.ndarray | torch.Tensor, anchors_px: np.ndarray | torch.Tensor, thr: float
) -> tuple[float, float]:
    """(best possible recall, anchors above threshold per box) of pixel anchors Tensor[K, 2]."""
    wh_t = torch.as_tensor(np.asarray(wh), dtype=torch.float32)
    x = _ratio_quality(wh_t, torch.as_tensor(np.asarray(anchors_px), dtype=torch.float32))
    bpr = (x.max(1).values > 1 / thr).float().mean().item()
    aat = (x > 1 / thr).float().sum(1).mean().item()
    return bpr, aat


def _fitness(wh: torch.Tensor, anchors: np.ndarray, thr: float) -> float:
    best = _ratio_quality(wh, torch.as_tensor(anchors, dtype=torch.float32)).max(1).values
    return (best * (best > 1 / thr).float()).mean().item()


def kmeans(points: np.ndarray, k: int, rng: np.random.Generator, restarts: int = 10, iters: int = 100) -> np.ndarray:
    """Lloyd's k-means with k-means++ seeding; the best of ``restarts`` runs. points: [N, D] -> [k, D]."""
    best, best_cost = points[:k], np.inf  # replaced by the first restart (its cost is finite)
    for _ in range(restarts):
        centres = points[rng.integers(len(points))][None]
        for _ in range(1, k):  # k-means++: next centre drawn proportionally to squared distance
            d2 = ((points[:, None] - centres[None]) ** 2).sum(-1).min(1)
            probs = d2 / d2.sum() if d2.sum() > 0 else np.full(len(points), 1 / len(points))
            centres = np.vstack([centres, points[rng.choice(len(points), p=probs)]])
        for _ in range(iters):
            assign = ((points[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
            new = np.array([points[assign == j].mean(0) if (assign == j).any() else centres[j] for j in range(k)])
            if np.allclose(new, centres):
                break
            centres = new
        cost = ((points[:, None] - centres[None]) ** 2).sum(-1).min(1).mean()
        if cost < best_cost:
            best, best_cost = centres, cost
    return best


def evolve_anchors(wh: np.ndarray, n: int, imgsz: int, thr: float = 4.0, gen: int = 1000, seed: int = 0) -> np.ndarray:
    """``n`` anchors (np.ndarray[n, 2], pixels, sorted by area) for box sizes ``wh`` [N, 2] pixels."""
    rng = np.random.default_rng(seed)
    wh = np.asarray(wh, dtype=np.float64)
    tiny = int((wh < 3.0).any(1).sum())
    if tiny:
        LOGGER.warning("autoanchor: %d of %d labels are smaller than 3 px; consider a larger --imgsz", tiny, len(wh))
    wh = wh[(wh >= MIN_SIDE_PX).any(1)]
    if len(wh) >= n:
        std = wh.std(0)
        std[std == 0] = 1.0  # all boxes one size: whitening would divide by zero
        k = kmeans(wh / std, n, rng) * std
    else:
        LOGGER.warning("autoanchor: only %d usable labels for %d anchors; starting from random anchors", len(wh), n)
        k = np.sort(rng.random(n * 2)).reshape(n, 2) * imgsz
    wh_t = torch.as_tensor(wh, dtype=torch.float32)
    k = k[np.argsort(k.prod(1))]
    fit = _fitness(wh_t, k, thr)
    mutation_p, sigma = 0.9, 0.1
    for _ in range(gen):
        v = np.ones_like(k)
        while (v == 1).all():  # mutate until something changes
            v = ((rng.random(k.shape) < mutation_p) * rng.random() * rng.standard_normal(k.shape) * sigma + 1).clip(
                0.3, 3.0
            )
        candidate = (k * v).clip(min=MIN_SIDE_PX)
        candidate_fit = _fitness(wh_t, candidate, thr)
        if candidate_fit > fit:
            fit, k = candidate_fit, candidate
    return k[np.argsort(k.prod(1))]


def _pixel_anchors(head: Detect) -> torch.Tensor:
    """head.anchors (grid units) as Tensor[nl, na, 2] pixels."""
    return head.anchors.detach().cpu().float() * head.stride.detach().cpu().float().view(-1, 1, 1)


def check_anchors(
    dataset_wh: np.ndarray, model: DetectionModel, thr: float = 4.0, imgsz: int = 640, gen: int = 1000, seed: int = 0
) -> tuple[float, float, bool]:
    """Check ``model.head``'s anchors against box sizes ``dataset_wh`` [N, 2] (pixels at ``imgsz``).

    Boxes are jittered by a seeded 0.9-1.1 scale (the scale augmentation) before measuring.
    Returns ``(bpr_before, bpr_after, changed)``; anchors change only when the new BPR is higher.
    """
    if not uses_anchors(model.head):
        where = getattr(model, "source", type(model).__name__)
        raise ValueError(f"autoanchor: {where} has no anchor-based head (no 'anchors' buffer on its last layer)")
    head = cast(Detect, model.head)  # duck-typed: any head with anchors [nl, na, 2] and stride [nl]
    wh = np.asarray(dataset_wh, dtype=np.float64).reshape(-1, 2)
    if len(wh) == 0:
        LOGGER.warning("autoanchor: no labels; anchors left as they are")
        return 0.0, 0.0, False
    jitter = np.random.default_rng(seed).uniform(0.9, 1.1, size=(len(wh), 1))
    measured = wh * jitter
    old = _pixel_anchors(head)
    bpr, aat = anchor_metrics(measured, old.view(-1, 2), thr)
    prefix = f"autoanchor: {aat:.2f} anchors/target, best possible recall {bpr:.4f}"
    if bpr > BPR_OK:
        LOGGER.info("%s; current anchors fit the dataset", prefix)
        return bpr, bpr, False
    LOGGER.info("%s; below %.2f, computing new anchors (k-means + %d generations)", prefix, BPR_OK, gen)
    nl, na = head.anchors.shape[:2]
    new = evolve_anchors(wh, nl * na, imgsz, thr, gen, seed)
    new_bpr, new_aat = anchor_metrics(measured, new, thr)
    if new_bpr <= bpr:
        LOGGER.info(
            "autoanchor: new anchors reach recall %.4f, no better than %.4f; keeping the old ones", new_bpr, bpr
        )
        return bpr, bpr, False
    order = torch.argsort(head.stride.detach().cpu())  # smallest anchors to the smallest stride
    grouped = torch.as_tensor(new, dtype=torch.float32).view(nl, na, 2)
    stride = head.stride.detach().cpu().float()
    updated = torch.empty_like(grouped)
    for rank, level in enumerate(order.tolist()):
        updated[level] = grouped[rank] / stride[level]
    with torch.no_grad():
        head.anchors.copy_(updated.to(head.anchors))
    if check_anchor_order(head):
        LOGGER.info("autoanchor: reversing anchor order to follow the strides")
    reset = getattr(head, "reset_grids", None)
    if callable(reset):  # a head that caches anchor grids must rebuild them
        reset()
    LOGGER.info(
        "autoanchor: new anchors (pixels) %s; %.2f anchors/target, best possible recall %.4f (was %.4f)",
        np.round(new).astype(int).tolist(),
        new_aat,
        new_bpr,
        bpr,
    )
    return bpr, new_bpr, True
