"""Validation plots: PR / F1 / P / R curves, confusion matrix, labelled validation images.

Curves and the matrix are drawn with matplotlib through an explicit Agg canvas
(``matplotlib.figure.Figure`` + ``FigureCanvasAgg``), so nothing touches pyplot's global backend
or needs a display, and importing this module does nothing. Images are drawn with cv2 and
``cv2.putText`` (Hershey font built into OpenCV: no font file, no download).
File names follow yolov5's run folders: ``PR_curve.png``, ``F1_curve.png``, ``P_curve.png``,
``R_curve.png``, ``confusion_matrix.png``, ``val_batch{i}.jpg``.
"""

from __future__ import annotations

import colorsys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from .metrics import APResult, ConfusionMatrix, DetectionMetrics

Names = Mapping[int, str] | Sequence[str]


def _names(names: Names | None, ids: Sequence[int] | np.ndarray) -> dict[int, str]:
    if names is None:
        return {int(i): str(int(i)) for i in ids}
    return dict(names) if isinstance(names, Mapping) else dict(enumerate(names))


def class_color(cls: int) -> tuple[int, int, int]:
    """A stable, well-separated BGR colour per class id (golden-ratio hue steps)."""
    h = (cls * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.85, 0.95)
    return int(b * 255), int(g * 255), int(r * 255)


def _figure(size: tuple[float, float] = (9, 6)):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, tight_layout=True)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=200)
    return path


def _legend(ax) -> None:
    if ax.get_legend_handles_labels()[0]:  # an empty run has no lines to list
        ax.legend(bbox_to_anchor=(1.04, 1), loc="upper left")


def plot_pr_curve(result: APResult, save_path: Path | str, names: Names | None = None) -> Path:
    """Precision against recall at IoU 0.5, one thin line per class (when < 21), mean in bold."""
    names = _names(names, result.classes)
    fig = _figure()
    ax = fig.add_subplot()
    ap50 = result.ap[:, 0] if result.ap.size else np.zeros(0)
    if 0 < len(result.classes) < 21:
        for i, c in enumerate(result.classes):
            ax.plot(result.px, result.pr_curve[i], linewidth=1, label=f"{names.get(int(c), c)} {ap50[i]:.3f}")
    else:
        for i in range(len(result.classes)):
            ax.plot(result.px, result.pr_curve[i], linewidth=1, color="grey")
    if len(result.classes):
        ax.plot(
            result.px,
            result.pr_curve.mean(0),
            linewidth=3,
            color="blue",
            label=f"all classes {ap50.mean():.3f} mAP@0.5",
        )
    ax.set(xlabel="Recall", ylabel="Precision", xlim=(0, 1), ylim=(0, 1), title="Precision-Recall Curve")
    _legend(ax)
    return _save(fig, save_path)


def plot_metric_curve(result: APResult, save_path: Path | str, kind: str = "F1", names: Names | None = None) -> Path:
    """``kind`` in {"F1", "P", "R"} against confidence; bold line = smoothed class mean, whose
    maximum (for F1: the confidence P and R are reported at) is given in the legend."""
    from .metrics import smooth

    curves = {"F1": result.f1_curve, "P": result.p_curve, "R": result.r_curve}
    if kind not in curves:
        raise ValueError(f"plot_metric_curve: kind must be one of {sorted(curves)}, got {kind!r}")
    y = curves[kind]
    names = _names(names, result.classes)
    fig = _figure()
    ax = fig.add_subplot()
    for i, c in enumerate(result.classes):
        label = str(names.get(int(c), c)) if len(result.classes) < 21 else None
        ax.plot(result.px, y[i], linewidth=1, label=label, color=None if label else "grey")
    if len(result.classes):
        mean = smooth(y.mean(0), 0.05)
        i = int(mean.argmax())
        ax.plot(result.px, mean, linewidth=3, color="blue", label=f"all classes {mean[i]:.2f} at {result.px[i]:.3f}")
    full = {"F1": "F1", "P": "Precision", "R": "Recall"}[kind]
    ax.set(xlabel="Confidence", ylabel=full, xlim=(0, 1), ylim=(0, 1), title=f"{full}-Confidence Curve")
    _legend(ax)
    return _save(fig, save_path)


def plot_confusion_matrix(
    cm: ConfusionMatrix | np.ndarray, save_path: Path | str, names: Names | None = None, normalize: bool = True
) -> Path:
    """Heat map of ``matrix[pred, true]`` with the background row/column last.

    Normalised per true class (columns sum to 1), values below 0.005 left blank, cell values
    printed when there are fewer than 30 classes.
    """
    matrix = np.asarray(cm.matrix if hasattr(cm, "matrix") else cm, dtype=np.float64)
    nc = matrix.shape[0] - 1
    shown = matrix / (matrix.sum(0, keepdims=True) + 1e-9) if normalize else matrix.copy()
    if normalize:
        shown[shown < 0.005] = np.nan
    names = _names(names, range(nc))
    ticks = [str(names.get(i, i)) for i in range(nc)] + ["background"]
    fig = _figure((12, 9))
    ax = fig.add_subplot()
    im = ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
    fig.colorbar(im, ax=ax)
    if nc < 30:
        for (r, c), v in np.ndenumerate(shown):
            if not np.isnan(v):
                ax.text(
                    c,
                    r,
                    f"{v:.2f}" if normalize else f"{v:.0f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if v > 0.5 * np.nanmax(shown) else "black",
                )
        ax.set_xticks(range(nc + 1), ticks, rotation=90)
        ax.set_yticks(range(nc + 1), ticks)
    ax.set(xlabel="True", ylabel="Predicted", title="Confusion Matrix" + (" (normalised)" if normalize else ""))
    return _save(fig, save_path)


def draw_detections(
    image: np.ndarray,
    boxes: torch.Tensor | np.ndarray,
    classes: Sequence[int] | np.ndarray | torch.Tensor,
    scores: Sequence[float] | np.ndarray | torch.Tensor | None = None,
    names: Names | None = None,
    line_thickness: int | None = None,
    hide_labels: bool = False,
    hide_conf: bool = False,
) -> np.ndarray:
    """Draw boxes with "name conf" tags on a copy of ``image``.

    Args:
        image: ``uint8 [H, W, 3]`` BGR (cv2's layout).
        boxes: ``[n, 4]`` xyxy pixels of ``image``. classes: ``[n]`` ids. scores: ``[n]`` or None.
        line_thickness: pixels; default scales with the image (yolov5's rule of thumb).

    Returns the annotated ``uint8 [H, W, 3]`` BGR copy.
    """
    import cv2

    out = np.ascontiguousarray(image).copy()
    boxes = np.asarray(boxes.cpu() if isinstance(boxes, torch.Tensor) else boxes, dtype=np.float64).reshape(-1, 4)
    classes = np.asarray(classes.cpu() if isinstance(classes, torch.Tensor) else classes).astype(int).reshape(-1)
    if scores is not None:
        scores = np.asarray(scores.cpu() if isinstance(scores, torch.Tensor) else scores, dtype=np.float64).reshape(-1)
    names = _names(names, classes)
    lw = line_thickness or max(round(sum(out.shape[:2]) / 2 * 0.003), 1)
    font_scale = lw / 3
    text_th = max(lw - 1, 1)
    for i, (box, c) in enumerate(zip(boxes, classes)):
        color = class_color(int(c))
        p1, p2 = (int(box[0]), int(box[1])), (int(box[2]), int(box[3]))
        cv2.rectangle(out, p1, p2, color, thickness=lw, lineType=cv2.LINE_AA)
        if hide_labels:
            continue
        label = str(names.get(int(c), int(c)))
        if scores is not None and not hide_conf:
            label = f"{label} {scores[i]:.2f}"
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, text_th)
        above = p1[1] - th - 3 >= 0  # put the tag inside the box when it would leave the image
        q2 = (p1[0] + tw, p1[1] - th - 3 if above else p1[1] + th + 3)
        cv2.rectangle(out, p1, q2, color, -1, cv2.LINE_AA)
        org = (p1[0], p1[1] - 2 if above else p1[1] + th + 2)
        cv2.putText(out, label, org, cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255), text_th, cv2.LINE_AA)
    return out


def plot_val_images(
    images: Sequence[np.ndarray],
    labels: Sequence[torch.Tensor],
    detections: Sequence[torch.Tensor],
    save_path: Path | str,
    names: Names | None = None,
    conf_thres: float = 0.25,
    max_images: int = 8,
    cell: int = 320,
) -> Path:
    """A grid with one row per image: ground truth on the left, predictions on the right.

    Args:
        images: ``uint8 [H, W, 3]`` BGR, any sizes. labels: per image ``[m, 5]`` (cls, xyxy px).
        detections: per image ``[n, 6]`` (xyxy px, conf, cls); those with conf < ``conf_thres``
            are not drawn (at conf 0.001 the picture would be solid boxes).
        cell: each panel is resized to fit a ``cell x cell`` square (letterboxed, grey).
    """
    import cv2

    rows = []
    for img, lab, det in list(zip(images, labels, detections))[:max_images]:
        lab = lab.reshape(-1, 5).cpu().float()
        det = det[det[:, 4] >= conf_thres].cpu().float()
        # resize first and draw on the panel, so tags stay legible whatever the image size
        small, r = _fit(img, cell)
        left = draw_detections(small, lab[:, 1:5] * r, lab[:, 0], names=names)
        right = draw_detections(small, det[:, :4] * r, det[:, 5], det[:, 4], names=names)
        rows.append(np.concatenate([left, np.full((cell, 2, 3), 255, np.uint8), right], 1))
    if not rows:
        rows = [np.full((cell, 2 * cell + 2, 3), 114, np.uint8)]
    header = np.full((20, rows[0].shape[1], 3), 255, np.uint8)
    for x, text in ((4, "labels"), (cell + 6, f"predictions (conf >= {conf_thres:g})")):
        cv2.putText(header, text, (x, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    grid = np.concatenate([header, *rows], 0)
    path = Path(save_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), grid):
        raise OSError(
            f"plot_val_images: cv2 could not write {path}; check the folder is writable and the suffix is .jpg/.png"
        )
    return path


def _fit(img: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """``img`` scaled to fit a ``size x size`` grey canvas (top-left), and the scale used."""
    import cv2

    h, w = img.shape[:2]
    r = size / max(h, w)
    interp = cv2.INTER_AREA if r < 1 else cv2.INTER_LINEAR
    small = cv2.resize(img, (max(round(w * r), 1), max(round(h * r), 1)), interpolation=interp)
    canvas = np.full((size, size, 3), 114, np.uint8)
    canvas[: small.shape[0], : small.shape[1]] = small
    return canvas, r


def plot_metrics(metrics: DetectionMetrics, save_dir: Path | str) -> list[Path]:
    """All curve plots and the normalised confusion matrix of a finished run, into ``save_dir``."""
    save_dir = Path(save_dir)
    res = metrics.result
    paths = [plot_pr_curve(res, save_dir / "PR_curve.png", metrics.names)]
    for kind in ("F1", "P", "R"):
        paths.append(plot_metric_curve(res, save_dir / f"{kind}_curve.png", kind, metrics.names))
    paths.append(plot_confusion_matrix(metrics.confusion, save_dir / "confusion_matrix.png", metrics.names))
    return paths
