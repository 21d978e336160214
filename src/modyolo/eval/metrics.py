"""Detection metrics computed the way yolov5 reports them.

A validator loop calls, per batch, ``DetectionMetrics.update(detections, labels)`` with

* ``detections``: per image ``Tensor[n, 6]`` = (x1, y1, x2, y2, conf, cls), NMS output order
  (conf descending), pixels of the *original* image;
* ``labels``: per image ``Tensor[m, 5]`` = (cls, x1, y1, x2, y2), same pixel space;

and at the end ``compute()`` for P, R, mAP50, mAP50-95, fitness and per-class arrays.

Semantics follow yolov5 7.0 so numbers are comparable with papers and blog posts: a detection is
a true positive at IoU threshold t when it takes its highest-IoU same-class label with IoU >= t
and no higher-confidence detection took that label first (``match_predictions``); AP is the area
under the monotone precision envelope sampled at 101 recall points and integrated with the
trapezoid rule (``compute_ap``); P and R are read at the confidence that maximises the
box-filtered mean F1 over classes (``ap_per_class``). ``protocol="coco"`` swaps in pycocotools'
matching and AP sampling instead; ``coco.py`` explains and sizes the differences.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from modyolo.structures import FITNESS, MAP50, MAP50_95, PRECISION, RECALL
from modyolo.structures import fitness as fitness  # re-exported: compute() adds it

from .boxes import box_iou

IOU_THRESHOLDS = torch.linspace(0.5, 0.95, 10)
MATCH_RULES = ("yolov5", "coco")
AP_METHODS = ("interp", "coco")
# protocol -> (matching rule, AP integration)
PROTOCOLS = {"yolov5": ("yolov5", "interp"), "coco": ("coco", "coco")}


def match_predictions(
    detections: torch.Tensor, labels: torch.Tensor, iouv: torch.Tensor = IOU_THRESHOLDS, rule: str = "yolov5"
) -> torch.Tensor:
    """Which detections are true positives, at each IoU threshold.

    Args:
        detections: ``Tensor[n, 6]`` (x1, y1, x2, y2, conf, cls), in conf-descending order.
        labels: ``Tensor[m, 5]`` (cls, x1, y1, x2, y2), same pixel space as ``detections``.
        iouv: ``Tensor[T]`` IoU thresholds (default 0.50:0.05:0.95).

    Returns:
        ``Tensor[n, T]`` bool. Per threshold: each detection picks its highest-IoU same-class
        label with IoU >= t; a label chosen by several detections counts only for the first of
        them (the most confident). A detection whose best label is taken is a false positive even
        if a second label would fit: that is yolov5's rule (pycocotools instead lets it fall back
        to the next free label, see ``coco.py``). ``rule="coco"`` applies pycocotools' rule:
        detections in order each take the highest-IoU same-class label not yet taken.
    """
    if rule not in MATCH_RULES:
        raise ValueError(f"match_predictions: unknown rule {rule!r}; choose one of {MATCH_RULES}")
    n, m = detections.shape[0], labels.shape[0]
    correct = torch.zeros((n, iouv.numel()), dtype=torch.bool, device=detections.device)
    if n == 0 or m == 0:
        return correct
    if rule == "coco":
        return _match_greedy(detections, labels, iouv).to(detections.device)
    iou = box_iou(labels[:, 1:5], detections[:, :4])  # [m, n]
    same_class = labels[:, 0:1] == detections[:, 5]
    det_index = torch.arange(n, device=detections.device)
    for ti, t in enumerate(iouv.tolist()):
        ok = (iou >= t) & same_class
        has = ok.any(0)
        if not has.any():
            continue
        best_label = torch.where(ok, iou, torch.full_like(iou, -1.0)).argmax(0)
        dets, labs = det_index[has], best_label[has]
        first = torch.full((m,), n, dtype=torch.long, device=detections.device)
        first = first.scatter_reduce(0, labs, dets, reduce="amin")
        correct[first[first < n], ti] = True
    return correct


def _match_greedy(detections: torch.Tensor, labels: torch.Tensor, iouv: torch.Tensor) -> torch.Tensor:
    """pycocotools' matching, all thresholds at once; ``[n, T]`` bool (see ``match_predictions``)."""
    iou = box_iou(labels[:, 1:5], detections[:, :4]).cpu().numpy()  # [m, n]
    iou[(labels[:, 0:1] != detections[:, 5]).cpu().numpy()] = -1.0  # other classes never match
    t = iouv.cpu().numpy()[:, None]  # [T, 1]
    taken = np.zeros((t.shape[0], iou.shape[0]), dtype=bool)  # [T, m]
    correct = np.zeros((iou.shape[1], t.shape[0]), dtype=bool)
    rows = np.arange(t.shape[0])
    for d in range(iou.shape[1]):
        cand = np.where((iou[:, d] >= t) & ~taken, iou[:, d], -1.0)  # [T, m]
        best = cand.argmax(1)
        hit = cand[rows, best] >= 0
        taken[rows[hit], best[hit]] = True
        correct[d] = hit
    return torch.from_numpy(correct)


def smooth(y: np.ndarray, f: float = 0.05) -> np.ndarray:
    """Box filter of width ``round(len(y) * f * 2) // 2 + 1`` with edge padding (yolov5's)."""
    nf = round(len(y) * f * 2) // 2 + 1
    pad = np.ones(nf // 2)
    yp = np.concatenate((pad * y[0], y, pad * y[-1]), 0)
    return np.convolve(yp, np.ones(nf) / nf, mode="valid")


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    # np.trapz is gone in numpy 2.4 and np.trapezoid is missing before 2.0: write it out
    return float(((y[1:] + y[:-1]) * np.diff(x)).sum() / 2)


def compute_ap(
    recall: np.ndarray, precision: np.ndarray, method: str = "interp"
) -> tuple[float, np.ndarray, np.ndarray]:
    """AP of one class at one IoU threshold.

    Args:
        recall, precision: ``[k]`` cumulative curves over detections sorted by conf descending.

    Returns ``(ap, mpre, mrec)``: the curves with sentinels (recall 0 -> precision 1, recall 1 ->
    precision 0) and ``mpre`` made monotone non-increasing. ``method="interp"`` (yolov5)
    integrates the envelope linearly interpolated at 101 recall points with the trapezoid rule;
    the line to the (1, 0) sentinel adds area beyond the last recall reached, which is why yolov5
    scores above pycocotools when detections stop at a high precision. ``method="coco"``
    (pycocotools) averages the envelope read at 101 recall points, 0 beyond the last recall.
    """
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([1.0], precision, [0.0]))
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))
    x = np.linspace(0, 1, 101)
    if method == "interp":
        return _trapezoid(np.interp(x, mrec, mpre), x), mpre, mrec
    if method == "coco":
        idx = np.searchsorted(recall, x, side="left")
        env = np.append(mpre[1:-1], 0.0)  # envelope at the real points; 0 past the last recall
        return float(env[np.minimum(idx, len(recall))].mean()), mpre, mrec
    raise ValueError(f"compute_ap: unknown method {method!r}; choose one of {AP_METHODS}")


@dataclass
class APResult:
    """Output of ``ap_per_class``; ``k`` = number of classes present in the labels.

    ``classes: [k]`` int ids, ``instances: [k]`` label counts, ``tp/fp/p/r/f1: [k]`` at the chosen
    confidence ``conf_at_max_f1``, ``ap: [k, T]``; curves for plots: ``px: [1000]`` axis,
    ``p_curve/r_curve/f1_curve: [k, 1000]`` against confidence, ``pr_curve: [k, 1000]`` precision
    against recall at the first IoU threshold.
    """

    classes: np.ndarray
    instances: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    p: np.ndarray
    r: np.ndarray
    f1: np.ndarray
    ap: np.ndarray
    conf_at_max_f1: float
    px: np.ndarray
    p_curve: np.ndarray
    r_curve: np.ndarray
    f1_curve: np.ndarray
    pr_curve: np.ndarray


def ap_per_class(
    tp: np.ndarray,
    conf: np.ndarray,
    pred_cls: np.ndarray,
    target_cls: np.ndarray,
    method: str = "interp",
    eps: float = 1e-16,
) -> APResult:
    """Per-class AP, and P/R/F1 at the confidence maximising the smoothed mean F1.

    Args:
        tp: ``[N, T]`` bool, true positive per detection per IoU threshold (all images).
        conf: ``[N]`` detection confidences; pred_cls: ``[N]`` detection classes.
        target_cls: ``[M]`` classes of all labels; only these classes are scored, as in yolov5
            (detections of classes without labels change nothing).
        method: AP integration, see ``compute_ap``.

    Detections are ordered by conf with a *stable* sort, so ties keep image order, which is
    what pycocotools does as well.
    """
    tp = np.asarray(tp, dtype=np.float64)
    tp = tp[:, None] if tp.ndim == 1 else tp
    order = np.argsort(-conf, kind="mergesort")
    tp, conf, pred_cls = tp[order], conf[order], pred_cls[order]
    classes, nt = np.unique(target_cls, return_counts=True)
    k, niou = classes.shape[0], tp.shape[1]
    px = np.linspace(0, 1, 1000)
    ap = np.zeros((k, niou))
    p_curve, r_curve, pr_curve = np.zeros((k, 1000)), np.zeros((k, 1000)), np.zeros((k, 1000))
    for ci, c in enumerate(classes):
        i = pred_cls == c
        if not i.any():
            continue
        tpc = tp[i].cumsum(0)
        fpc = (1 - tp[i]).cumsum(0)
        recall = tpc / (nt[ci] + eps)
        precision = tpc / (tpc + fpc)
        # -conf is increasing, as np.interp needs; left= values hold above the top confidence
        r_curve[ci] = np.interp(-px, -conf[i], recall[:, 0], left=0)
        p_curve[ci] = np.interp(-px, -conf[i], precision[:, 0], left=1)
        for j in range(niou):
            ap[ci, j], mpre, mrec = compute_ap(recall[:, j], precision[:, j], method)
            if j == 0:
                pr_curve[ci] = np.interp(px, mrec, mpre)
    f1_curve = 2 * p_curve * r_curve / (p_curve + r_curve + eps)
    best = int(smooth(f1_curve.mean(0), 0.1).argmax()) if k else 0
    p, r, f1 = p_curve[:, best], r_curve[:, best], f1_curve[:, best]
    tp_at = (r * nt).round()
    fp_at = (tp_at / (p + eps) - tp_at).round()
    return APResult(
        classes.astype(int), nt, tp_at, fp_at, p, r, f1, ap, float(px[best]), px, p_curve, r_curve, f1_curve, pr_curve
    )


class ConfusionMatrix:
    """``matrix[pred, true]``, ``(nc + 1) x (nc + 1)``; index ``nc`` is background.

    Detections with conf <= ``conf`` are ignored; a label and a detection match (any class) at
    IoU > ``iou_thres``: each detection picks its highest-IoU label, and a label picked by several
    detections keeps the one with the highest IoU (yolov5's rule).
    Unmatched labels count as (background, true class) misses, unmatched detections as
    (pred class, background) false alarms. Unlike yolov5 7.0, false alarms are also counted in
    images where nothing matched (yolov5 skips them there, a known bug).
    """

    def __init__(self, nc: int, conf: float = 0.25, iou_thres: float = 0.45) -> None:
        self.nc, self.conf, self.iou_thres = nc, conf, iou_thres
        self.matrix = np.zeros((nc + 1, nc + 1))

    def process_batch(self, detections: torch.Tensor | None, labels: torch.Tensor) -> None:
        """One image: ``detections: [n, 6]`` or None, ``labels: [m, 5]`` (cls, xyxy)."""
        gt = labels[:, 0].long().cpu()
        if detections is None or detections.shape[0] == 0:
            np.add.at(self.matrix[self.nc], gt.numpy(), 1)  # the background row (a view)
            return
        detections = detections[detections[:, 4] > self.conf]
        dc = detections[:, 5].long().cpu()
        matched_det = torch.zeros(dc.shape[0], dtype=torch.bool)
        missed = torch.ones(gt.shape[0], dtype=torch.bool)
        if gt.numel() and dc.numel():
            iou = box_iou(labels[:, 1:5], detections[:, :4]).cpu()  # [m, n]
            ok = iou > self.iou_thres
            # each detection keeps its best label; each label then keeps its best such detection
            best_label = torch.where(ok, iou, torch.full_like(iou, -1.0)).argmax(0)
            cand = ok.any(0).nonzero()[:, 0]
            cand_iou = iou[best_label[cand], cand]
            for d in cand[cand_iou.argsort(descending=True, stable=True)].tolist():
                lab = int(best_label[d])
                if missed[lab]:
                    missed[lab] = False
                    matched_det[d] = True
                    self.matrix[dc[d], gt[lab]] += 1
        np.add.at(self.matrix[self.nc], gt[missed].numpy(), 1)  # missed labels: background row
        np.add.at(self.matrix[:, self.nc], dc[~matched_det].numpy(), 1)  # false detections: background column

    def tp_fp(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-class true positives (diagonal) and false positives (row sum minus diagonal), ``[nc]``."""
        tp = self.matrix.diagonal()
        fp = self.matrix.sum(1) - tp
        return tp[:-1], fp[:-1]

    def normalized(self) -> np.ndarray:
        """Columns (true classes) scaled to sum to 1, as plotted."""
        return self.matrix / (self.matrix.sum(0, keepdims=True) + 1e-9)


class DetectionMetrics:
    """Accumulates per-image matches over a validation run; see the module docstring.

    Args:
        nc: number of classes of the model (class ids are ``0..nc-1``).
        names: class names, list or ``{id: name}``; defaults to the ids as strings.
        iouv: IoU thresholds for mAP (default 0.50:0.05:0.95).
        conf, iou_thres: the confusion matrix's thresholds (yolov5: 0.25 and 0.45).
        protocol: ``"yolov5"`` (default: yolov5's matching and AP integration, numbers comparable
            with yolov5's val.py) or ``"coco"`` (pycocotools' greedy matching and 101-point
            sampling, numbers equal to ``coco_evaluate``'s on the same detections when no image
            has more than 100 detections of a class). See ``coco.py`` for why they differ.
    """

    def __init__(
        self,
        nc: int,
        names: Sequence[str] | Mapping[int, str] | None = None,
        iouv: torch.Tensor = IOU_THRESHOLDS,
        conf: float = 0.25,
        iou_thres: float = 0.45,
        protocol: str = "yolov5",
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"DetectionMetrics: unknown protocol {protocol!r}; choose one of {sorted(PROTOCOLS)}")
        self.nc = nc
        self.protocol = protocol
        self._rule, self._ap_method = PROTOCOLS[protocol]
        if names is None:
            names = {i: str(i) for i in range(nc)}
        self.names = dict(names) if isinstance(names, Mapping) else dict(enumerate(names))
        self.iouv = iouv
        self.confusion = ConfusionMatrix(nc, conf=conf, iou_thres=iou_thres)
        self.seen = 0
        self._stats: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self._result: APResult | None = None

    def update(self, detections: Sequence[torch.Tensor], labels: Sequence[torch.Tensor]) -> None:
        """Add a batch: ``detections[i]: [n_i, 6]`` (xyxy, conf, cls), ``labels[i]: [m_i, 5]`` (cls, xyxy).

        Both in the same pixel space (yolov5 uses original-image pixels). An image with labels
        and no detections adds misses; one with detections and no labels adds false positives.
        """
        if len(detections) != len(labels):
            raise ValueError(
                f"DetectionMetrics.update: {len(detections)} detection tensors but {len(labels)} "
                "label tensors; pass one of each per image"
            )
        for det, lab in zip(detections, labels):
            self.seen += 1
            lab = lab.reshape(-1, 5)
            correct = match_predictions(det, lab, self.iouv.to(det.device), self._rule)
            self._stats.append(
                (correct.cpu().numpy(), det[:, 4].cpu().numpy(), det[:, 5].cpu().numpy(), lab[:, 0].cpu().numpy())
            )
            self.confusion.process_batch(det, lab)
        self._result = None

    @property
    def records(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """Per-image match records, in ``update`` order: ``(correct [n, T] bool, conf [n], pred_cls [n],
        target_cls [m])`` per image.

        Exactly what ``compute()`` concatenates, kept per image so a caller can resample images
        (``modyolo compare``'s bootstrap intervals) and recompute the metrics with
        ``ap_per_class(..., method=self.ap_method)``. A new list; the arrays are shared, not copied.
        """
        return list(self._stats)

    @property
    def ap_method(self) -> str:
        """The AP integration ``compute()`` uses (``"interp"`` for yolov5, ``"coco"``), see ``compute_ap``."""
        return self._ap_method

    def _cat(self) -> list[np.ndarray]:
        if not self._stats:
            niou = self.iouv.numel()
            return [np.zeros((0, niou), bool), np.zeros(0), np.zeros(0), np.zeros(0)]
        return [np.concatenate(x, 0) for x in zip(*self._stats)]

    @property
    def result(self) -> APResult:
        """The ``APResult`` behind ``compute()`` (curves for plots), computed once per update."""
        if self._result is None:
            tp, conf, pred_cls, target_cls = self._cat()
            self._result = ap_per_class(tp, conf, pred_cls, target_cls, self._ap_method)
        return self._result

    def compute(self) -> dict:
        """Summary and per-class numbers.

        Returns a dict: ``precision, recall, mAP50, mAP50-95, fitness`` (floats, means over the
        classes that have labels; 0 when there are none), ``images`` (int), ``instances: [nc]``
        label counts per class id, ``classes: [k]`` ids with labels and, aligned with it,
        ``p, r, ap50, ap: [k]`` (``ap`` = mean over the IoU thresholds), ``ap_all: [k, T]``,
        ``conf_at_max_f1``, ``detections`` (total kept detections seen).
        """
        res = self.result
        _, _, pred_cls, target_cls = self._cat()
        ap50 = res.ap[:, 0] if res.ap.size else np.zeros(0)
        ap = res.ap.mean(1) if res.ap.size else np.zeros(0)
        out: dict[str, Any] = {
            PRECISION: float(res.p.mean()) if res.p.size else 0.0,
            RECALL: float(res.r.mean()) if res.r.size else 0.0,
            MAP50: float(ap50.mean()) if ap50.size else 0.0,
            MAP50_95: float(ap.mean()) if ap.size else 0.0,
            "images": self.seen,
            "instances": np.bincount(target_cls.astype(int), minlength=self.nc),
            "detections": int(pred_cls.shape[0]),
            "classes": res.classes,
            "p": res.p,
            "r": res.r,
            "ap50": ap50,
            "ap": ap,
            "ap_all": res.ap,
            "conf_at_max_f1": res.conf_at_max_f1,
        }
        out[FITNESS] = fitness(out)
        return out

    def table(self, per_class: bool = True) -> str:
        """yolov5's printed table for ``compute()``; see ``format_table``."""
        return format_table(self.compute(), self.names, per_class=per_class)


def format_table(metrics: Mapping, names: Mapping[int, str] | Sequence[str], per_class: bool = True) -> str:
    """yolov5's validation table: ``Class Images Instances P R mAP50 mAP50-95``.

    ``metrics`` is ``DetectionMetrics.compute()``'s dict. The first row is ``all``; then, when
    ``per_class``, one row per class that has labels (yolov5 prints all images in the Images
    column of every row, and so does this). When there are no labels a warning line says so,
    because every number is then 0 by construction rather than because the model failed.
    """
    names = dict(names) if isinstance(names, Mapping) else dict(enumerate(names))
    header = ("%22s" + "%11s" * 6) % ("Class", "Images", "Instances", "P", "R", "mAP50", "mAP50-95")
    row = "%22s" + "%11i" * 2 + "%11.3g" * 4
    inst = np.asarray(metrics["instances"])
    lines = [
        header,
        row
        % (
            "all",
            metrics["images"],
            inst.sum(),
            metrics[PRECISION],
            metrics[RECALL],
            metrics[MAP50],
            metrics[MAP50_95],
        ),
    ]
    if inst.sum() == 0:
        lines.append(
            "WARNING: no labels found in this set, so P, R and mAP are 0 by definition; check the dataset's label files"
        )
    if per_class:
        for i, c in enumerate(metrics["classes"]):
            lines.append(
                row
                % (
                    names.get(int(c), str(int(c))),
                    metrics["images"],
                    inst[int(c)],
                    metrics["p"][i],
                    metrics["r"][i],
                    metrics["ap50"][i],
                    metrics["ap"][i],
                )
            )
    return "\n".join(lines)
