"""Per-image detection results: what ``Detector.predict`` returns and ``modyolo detect`` writes."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from modyolo.eval.boxes import xyxy2xywhn


@dataclass
class Result:
    """Detections on one image, in that image's pixels.

    ``boxes: float32 [n, 4]`` xyxy original-image pixels; ``scores: float32 [n]`` (objectness x
    class score); ``class_ids: int64 [n]``; ``names``: class names by id; ``orig_shape = (h, w)``;
    ``image``: the BGR ``uint8`` original (kept for ``plot``/crops; None when not kept);
    ``speed``: ms per stage (preprocess, inference, nms).
    """

    path: str
    orig_shape: tuple[int, int]
    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    names: list[str]
    image: np.ndarray | None = field(default=None, repr=False)
    speed: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_detections(
        cls,
        det: torch.Tensor,
        path: str,
        image: np.ndarray | None,
        orig_shape: tuple[int, int],
        names: list[str],
        speed: dict[str, float] | None = None,
    ) -> Result:
        """From NMS output ``det: [n, 6]`` (xyxy original pixels, conf, cls)."""
        d = det.detach().cpu().float().numpy().reshape(-1, 6)
        return cls(
            path,
            (int(orig_shape[0]), int(orig_shape[1])),
            d[:, :4].copy(),
            d[:, 4].copy(),
            d[:, 5].astype(np.int64),
            list(names),
            image,
            dict(speed or {}),
        )

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def name_of(self, cls: int) -> str:
        return self.names[cls] if 0 <= cls < len(self.names) else str(cls)

    def summary(self) -> str:
        """``'2 circles, 1 square'`` style counts (yolov5's log line), ``'(no detections)'`` if none."""
        if not len(self):
            return "(no detections)"
        counts = Counter(int(c) for c in self.class_ids)
        return ", ".join(f"{n} {self.name_of(c)}" for c, n in sorted(counts.items()))

    def plot(
        self,
        line_thickness: int | None = None,
        hide_labels: bool = False,
        hide_conf: bool = False,
        image: np.ndarray | None = None,
    ) -> np.ndarray:
        """The image annotated with boxes and ``name conf`` tags: BGR ``uint8 [h, w, 3]`` copy."""
        from modyolo.eval.plots import draw_detections

        base = image if image is not None else self.image
        if base is None:
            raise ValueError(f"Result.plot: no image kept for {self.path}; pass image= (the BGR original)")
        return draw_detections(
            base,
            self.boxes,
            self.class_ids,
            self.scores,
            names=self.names,
            line_thickness=line_thickness,
            hide_labels=hide_labels,
            hide_conf=hide_conf,
        )

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "orig_shape": list(self.orig_shape),
            "detections": [
                {
                    "box": [round(float(v), 3) for v in b],
                    "score": round(float(s), 5),
                    "class_id": int(c),
                    "name": self.name_of(int(c)),
                }
                for b, s, c in zip(self.boxes, self.scores, self.class_ids)
            ],
        }

    def to_json(self, indent: int | None = None) -> str:
        """``{"path", "orig_shape": [h, w], "detections": [{"box": xyxy px, "score", "class_id", "name"}]}``."""
        return json.dumps(self.to_dict(), indent=indent)

    def txt_lines(self, save_conf: bool = False) -> list[str]:
        """YOLO label rows ``cls cx cy w h [conf]`` normalised to the original image."""
        h, w = self.orig_shape
        xywhn = xyxy2xywhn(self.boxes.astype(np.float64), w, h) if len(self) else np.zeros((0, 4))
        rows = []
        for (cx, cy, bw, bh), s, c in zip(xywhn, self.scores, self.class_ids):
            row = f"{int(c)} {cx:.6g} {cy:.6g} {bw:.6g} {bh:.6g}"
            rows.append(row + (f" {s:.6g}" if save_conf else ""))
        return rows

    def save_txt(self, path: str | Path, save_conf: bool = False) -> Path:
        """Write ``txt_lines`` to ``path`` (an image without detections gets an empty file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(line + "\n" for line in self.txt_lines(save_conf)))
        return path

    def save_crops(self, folder: str | Path, stem: str) -> list[Path]:
        """Each detection cut from the original into ``folder/<class name>/<stem>[_k].jpg``."""
        import cv2

        if self.image is None:
            raise ValueError(f"Result.save_crops: no image kept for {self.path}")
        out: list[Path] = []
        used: Counter[str] = Counter()
        h, w = self.orig_shape
        for box, c in zip(self.boxes, self.class_ids):
            x1, y1 = max(int(box[0]), 0), max(int(box[1]), 0)
            x2, y2 = min(int(np.ceil(box[2])), w), min(int(np.ceil(box[3])), h)
            if x2 <= x1 or y2 <= y1:
                continue
            name = self.name_of(int(c))
            k = used[name]
            used[name] += 1
            dest = Path(folder) / name / (f"{stem}.jpg" if k == 0 else f"{stem}_{k}.jpg")
            dest.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(dest), self.image[y1:y2, x1:x2])
            out.append(dest)
        return out
