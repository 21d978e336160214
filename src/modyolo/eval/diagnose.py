"""Why did validation score zero? Checks that turn a 0.000 into a cause.

Run when labels exist but mAP (or both P and R) is 0. Each check returns a ``Check`` (what was
looked at, whether it is fine, the numbers); ``diagnose`` runs them all, in the order of how
often each cause explains a zero, and names the first failing one as the likely cause:

1. non-finite weights or BatchNorm running statistics (a diverged run or a damaged file: every
   output is NaN, so nothing passes the confidence threshold);
2. label class ids >= the model's ``nc`` (weights trained on other data: those labels can never
   be matched);
3. no candidate above ``conf_thres`` before NMS (largest objectness reported: untrained model);
4. raw vs EMA weights (an EMA with too few updates can lag far behind the raw weights);
5. fused vs unfused outputs (a block whose Conv+BN folding is wrong);
6. otherwise detections exist but match nothing: label format or coordinates are suspect.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from modyolo.structures import MAP50, MAP50_95, PRECISION, RECALL

# below this largest objectness a model has not yet learnt objects (a fresh head starts near 0.01)
UNTRAINED_OBJECTNESS = 0.1


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    cause: str = ""  # what to tell the user when this check explains the zero


@dataclass
class Diagnosis:
    checks: list[Check] = field(default_factory=list)

    @property
    def causes(self) -> list[str]:
        return [c.cause for c in self.checks if not c.ok and c.cause]

    @property
    def cause(self) -> str:
        """The most likely cause (first failing check), or a fallback when every check passed."""
        return (
            self.causes[0]
            if self.causes
            else (
                "the model makes detections but none overlaps a label of its class: check that labels are YOLO "
                "format (class cx cy w h, normalised 0-1), that class ids mean the same classes as in training, "
                "and that the model was trained long enough (see the PR curve in the run folder)"
            )
        )

    def report(self) -> str:
        lines = ["Zero-metric diagnosis (labels exist but P/R/mAP are 0):"]
        for c in self.checks:
            lines.append(f"  [{'ok' if c.ok else 'FAIL'}] {c.name}: {c.detail}")
        lines.append(f"Likely cause: {self.cause}")
        return "\n".join(lines)


def needs_diagnosis(metrics: Mapping[str, Any]) -> bool:
    """True when labels exist and mAP50-95 is 0, or P and R are both 0."""
    if int(np.asarray(metrics.get("instances", 0)).sum()) == 0:
        return False
    zero_map = float(metrics.get(MAP50_95, 0.0)) == 0.0
    zero_pr = float(metrics.get(PRECISION, 0.0)) == 0.0 and float(metrics.get(RECALL, 0.0)) == 0.0
    return zero_map or zero_pr


# --------------------------------------------------------------------------- individual checks


def check_nonfinite(model: nn.Module) -> Check:
    """NaN/inf in BatchNorm running statistics (named per module) or in any parameter."""
    bad_bn, bad_params = [], []
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            for stat in ("running_mean", "running_var"):
                t = getattr(m, stat, None)
                if t is not None and not torch.isfinite(t).all():
                    bad_bn.append(f"{name}.{stat} ({int((~torch.isfinite(t)).sum())}/{t.numel()} non-finite)")
    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            bad_params.append(name)
    if not bad_bn and not bad_params:
        return Check("weights finite", True, "no NaN/inf in parameters or BatchNorm running statistics")
    where = "; ".join(bad_bn[:5] + [f"parameter {n}" for n in bad_params[:5]])
    more = len(bad_bn) + len(bad_params) - min(len(bad_bn), 5) - min(len(bad_params), 5)
    detail = f"non-finite values in {where}" + (f" and {more} more" if more > 0 else "")
    first = bad_bn[0].split(" (")[0] if bad_bn else bad_params[0]
    kind = "BatchNorm running statistics" if bad_bn else "weights"
    return Check(
        "weights finite",
        False,
        detail,
        f"NaN/inf in {kind} ({first}): every prediction is NaN, so nothing passes the confidence "
        "threshold. Training diverged (lower lr0, check the loss curve) or the file is damaged; "
        "use an earlier checkpoint, or the raw weights if they are finite",
    )


def check_label_classes(labels: Sequence[np.ndarray], nc: int, files: Sequence[str] | None = None) -> Check:
    """Labels (per image ``[m, 5+]`` with the class id in column 0) whose class id is >= ``nc``."""
    n_total, n_bad = 0, 0
    bad_ids: set[int] = set()
    bad_files: list[str] = []
    for i, lb in enumerate(labels):
        arr = np.asarray(lb)
        cls = arr.reshape(len(arr), -1)[:, 0] if arr.size else np.zeros(0)
        n_total += cls.size
        bad = cls[cls >= nc]
        if bad.size:
            n_bad += bad.size
            bad_ids.update(int(c) for c in bad)
            if files is not None and len(bad_files) < 3:
                bad_files.append(str(files[i]))
    if n_total == 0:
        return Check(
            "labels present",
            False,
            "the set has no labels at all",
            "there are no labels, so every metric is 0 by definition; check the labels/ folder next to images/",
        )
    if n_bad == 0:
        return Check("label class ids < model nc", True, f"{n_total} labels, all with class ids in [0, {nc})")
    share = n_bad / n_total
    detail = f"{n_bad}/{n_total} labels ({share:.0%}) have class ids {sorted(bad_ids)} >= model nc={nc}" + (
        f", e.g. in {', '.join(bad_files)}" if bad_files else ""
    )
    return Check(
        "label class ids < model nc",
        False,
        detail,
        f"{share:.0%} of the labels use class ids {sorted(bad_ids)} that this {nc}-class model cannot "
        "predict: the weights were trained on a dataset with other classes; pass the --data they "
        "were trained with (or retrain on this one)",
    )


def check_candidates(stats: Mapping[str, Any], conf_thres: float) -> Check:
    """Candidates above ``conf_thres`` before NMS and detections after it (``ValResult.stats``)."""
    before = int(stats.get("candidates_before_nms", 0))
    after = int(stats.get("detections_after_nms", 0))
    top = float(stats.get("max_objectness", 0.0))
    detail = (
        f"{before} candidates above conf {conf_thres:g} before NMS, {after} detections after; "
        f"largest objectness {top:.4g}"
    )
    if after > 0 and top >= UNTRAINED_OBJECTNESS:
        return Check("detections exist", True, detail)
    if after > 0:
        return Check(
            "confident detections exist",
            False,
            detail,
            f"the largest objectness is only {top:.3g}: the model has barely learnt to find objects "
            "(too few epochs, or a too small/large learning rate); train longer and validate again",
        )
    return Check(
        "detections exist",
        False,
        detail,
        f"no box scores above conf_thres={conf_thres:g} (largest objectness {top:.3g}): the model is "
        "untrained or far undertrained for this data; train longer, check the learning rate, or "
        "lower --conf-thres to see what it predicts",
    )


def check_raw_vs_ema(
    evaluate: Callable[[Mapping[str, torch.Tensor]], Mapping[str, Any]], ckpt: Mapping[str, Any]
) -> Check | None:
    """Evaluate the checkpoint's raw and EMA weights with ``evaluate(state_dict) -> metrics``.

    None when the checkpoint does not hold both.
    """
    ema = ckpt.get("ema")
    if not ema or ckpt.get("model") is None:
        return None
    m_ema, m_raw = evaluate(ema["model"]), evaluate(ckpt["model"])
    f = lambda m: f"mAP50 {m['mAP50']:.3f} mAP50-95 {m['mAP50-95']:.3f}"  # noqa: E731
    updates = ema.get("updates")
    detail = f"EMA ({updates} updates): {f(m_ema)}; raw: {f(m_raw)} (on a sample of the set)"
    if m_raw[MAP50] > 0 and m_ema[MAP50] == 0:
        return Check(
            "raw vs EMA weights",
            False,
            detail,
            f"the EMA weights score 0 while the raw weights score {m_raw['mAP50']:.3f} mAP50: the EMA has "
            f"too few updates ({updates}) to have caught up; train longer, or evaluate the raw weights",
        )
    return Check("raw vs EMA weights", True, detail)


def check_fused(model: nn.Module, images: torch.Tensor, atol: float = 1e-3) -> Check:
    """Outputs of ``model`` (unfused) and of a fused copy on ``images: [B, 3, H, W]`` 0-1."""
    unfused = copy.deepcopy(model).eval()
    fused = copy.deepcopy(model).eval()
    fuse = getattr(fused, "fuse", None)
    if not callable(fuse):
        return Check("fused == unfused", True, "model cannot be fused; skipped")
    fuse()
    with torch.inference_mode():
        a, b = (m(images) for m in (unfused, fused))
    a, b = (x[0] if isinstance(x, (tuple, list)) else x for x in (a, b))
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        return Check("fused == unfused", True, "not comparable: outputs are non-finite (see the weights check)")
    diff = float((a - b).abs().max())
    scale = float(a.abs().max()) or 1.0
    detail = f"max |fused - unfused| = {diff:.3g} (output scale {scale:.3g})"
    if diff <= atol * max(scale, 1.0):
        return Check("fused == unfused", True, detail)
    return Check(
        "fused == unfused",
        False,
        detail,
        "fusing Conv+BN changes the outputs: a block's fuse() is wrong; validate unfused meanwhile",
    )


# --------------------------------------------------------------------------- all of them


def diagnose(
    model: nn.Module | None,
    *,
    stats: Mapping[str, Any],
    labels: Sequence[np.ndarray],
    nc: int,
    conf_thres: float,
    files: Sequence[str] | None = None,
    sample: torch.Tensor | None = None,
    ckpt: Mapping[str, Any] | None = None,
    evaluate: Callable[[Mapping[str, torch.Tensor]], Mapping[str, Any]] | None = None,
) -> Diagnosis:
    """Run every check that the inputs allow.

    Args:
        model: the evaluated weights, *unfused* (fusing folds BN statistics away); None for an
            exported backend (model checks are then skipped).
        stats: ``ValResult.stats`` (candidates before NMS, detections after, largest objectness).
        labels: per image ``[m, 5]`` (cls, ...) as in ``DetectionDataset.labels``; files: their paths.
        nc: the model's class count.
        sample: a float ``[B, 3, H, W]`` 0-1 batch for the fused-vs-unfused comparison.
        ckpt, evaluate: the loaded checkpoint and a function scoring a state_dict, for raw vs EMA.
    """
    d = Diagnosis()
    if model is not None:
        d.checks.append(check_nonfinite(model))
    d.checks.append(check_label_classes(labels, nc, files))
    d.checks.append(check_candidates(stats, conf_thres))
    if ckpt is not None and evaluate is not None:
        c = check_raw_vs_ema(evaluate, ckpt)
        if c is not None:
            d.checks.append(c)
    if model is not None and sample is not None:
        d.checks.append(check_fused(model, sample))
    return d
