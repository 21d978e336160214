"""Synthetic ground truth and detections for the eval tests (generated, nothing on disk)."""

from __future__ import annotations

import torch


def _box(g: torch.Generator, w: int, h: int, lo: float, hi: float) -> list[float]:
    bw = lo + float(torch.rand(1, generator=g)) * (hi - lo)
    bh = lo + float(torch.rand(1, generator=g)) * (hi - lo)
    x1 = float(torch.rand(1, generator=g)) * max(w - bw, 1)
    y1 = float(torch.rand(1, generator=g)) * max(h - bh, 1)
    return [x1, y1, x1 + bw, y1 + bh]


def _jitter(g: torch.Generator, box: list[float], scale: float) -> list[float]:
    x1, y1, x2, y2 = box
    bw, bh = x2 - x1, y2 - y1
    d = torch.randn(4, generator=g).tolist()
    return [x1 + d[0] * scale * bw, y1 + d[1] * scale * bh, x2 + d[2] * scale * bw, y2 + d[3] * scale * bh]


def make_eval_set(seed: int = 0, n_images: int = 80, nc: int = 6, crowds: bool = True, tail: bool = False) -> dict:
    """Images with labels ``[m, 5]`` (cls, xyxy px) and detections ``[n, 6]`` (xyxy, conf, cls).

    Hard cases on purpose: crowded clusters of overlapping same-class labels, tiny boxes (2-8 px),
    images with labels but no detections, images with detections but no labels, duplicate and
    wrong-class detections, localisation noise from exact to poor, and background false alarms.
    At most 100 detections per image so pycocotools' maxDets=100 drops nothing.

    ``tail`` fills each image up to 100 detections with low-confidence (0.001-0.05) background
    boxes, as NMS at yolov5's validation conf 0.001 produces; ``crowds=False`` leaves the crowd
    clusters out.
    """
    g = torch.Generator().manual_seed(seed)
    images, labels, dets = [], [], []
    for i in range(n_images):
        w, h = 96 + 8 * (i % 5), 64 + 8 * (i % 7)  # non-square, varied
        kind = i % 8
        lab, det = [], []
        if kind != 6:  # kind 6: no labels at all
            for _ in range(int(torch.randint(1, 7, (1,), generator=g))):
                tiny = float(torch.rand(1, generator=g)) < 0.2
                lab.append(
                    [int(torch.randint(0, nc, (1,), generator=g))] + _box(g, w, h, 2, 8)
                    if tiny
                    else [int(torch.randint(0, nc, (1,), generator=g))] + _box(g, w, h, 10, 50)
                )
            if crowds and kind in (1, 4):  # a crowd: same class, heavily overlapping boxes
                base = _box(g, w, h, 20, 40)
                c = int(torch.randint(0, nc, (1,), generator=g))
                for _ in range(4):
                    lab.append([c] + _jitter(g, base, 0.12))
        if kind != 7:  # kind 7: labels but no detections
            for c, *box in lab:
                if float(torch.rand(1, generator=g)) < 0.85:  # missed 15%
                    noise = [0.0, 0.02, 0.05, 0.1, 0.2][int(torch.randint(0, 5, (1,), generator=g))]
                    det.append(_jitter(g, box, noise) + [float(torch.rand(1, generator=g)) * 0.7 + 0.3, c])
                if float(torch.rand(1, generator=g)) < 0.3:  # duplicate
                    det.append(_jitter(g, box, 0.08) + [float(torch.rand(1, generator=g)) * 0.6, c])
                if float(torch.rand(1, generator=g)) < 0.15:  # right place, wrong class
                    det.append(_jitter(g, box, 0.05) + [float(torch.rand(1, generator=g)) * 0.6, (c + 1) % nc])
            for _ in range(int(torch.randint(0, 6, (1,), generator=g))):  # background false alarms
                det.append(
                    _box(g, w, h, 4, 40)
                    + [float(torch.rand(1, generator=g)) * 0.5, int(torch.randint(0, nc, (1,), generator=g))]
                )
        while tail and len(det) < 100:
            det.append(
                _box(g, w, h, 3, 40)
                + [0.001 + float(torch.rand(1, generator=g)) * 0.049, int(torch.randint(0, nc, (1,), generator=g))]
            )
        lab_t = torch.tensor(lab, dtype=torch.float32).reshape(-1, 5)
        lab_t[:, [1, 3]] = lab_t[:, [1, 3]].clamp(0, w)
        lab_t[:, [2, 4]] = lab_t[:, [2, 4]].clamp(0, h)
        det_t = torch.tensor(det, dtype=torch.float32).reshape(-1, 6)
        det_t[:, [0, 2]] = det_t[:, [0, 2]].clamp(0, w)
        det_t[:, [1, 3]] = det_t[:, [1, 3]].clamp(0, h)
        det_t = det_t[det_t[:, 4].argsort(descending=True)][:100]  # NMS output order
        images.append({"id": i + 1, "file_name": f"{i:04d}.jpg", "width": w, "height": h})
        labels.append(lab_t)
        dets.append(det_t)
    return {"images": images, "labels": labels, "detections": dets, "names": [f"c{k}" for k in range(nc)]}
