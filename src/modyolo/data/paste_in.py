"""yolov7's paste-in augmentation (hyp key ``paste_in``) for box labels.

With probability ``paste_in`` (yolov7's hyp.scratch.p5 / p6: 0.15, hyp.scratch.tiny: 0.05) a
training sample gets object crops from other training images pasted into free places. The
procedure follows yolov7's (read to understand, written anew here):

- one candidate region per entry of :data:`SCALES` (fractions of the image side: 2 x 0.75,
  4 x 0.5, 4 x 0.25, 4 x 0.125, 6 x 0.0625), each skipped with probability :data:`SKIP_P`;
- a region's sides are drawn uniformly in ``[1, scale * side]``, it is centred at a uniform point
  of the image and clipped to it; it is used only when both sides exceed ``min_region`` and it
  covers no box already in the sample (earlier pastes included) for ``ioa_thr`` (0.3) or more of
  that box's area, so existing objects stay visible;
- a random object crop of a random labelled training image is resized (aspect kept) to fit the
  region, pasted at the region's top-left corner when both sides exceed ``min_paste``, and its
  class and box (exactly the pasted rectangle) are added to the labels.

Differences from yolov7, on purpose: yolov7 cuts objects along their segment polygons, so on a
box-only dataset its paste-in pastes nothing; here the whole box is pasted (it carries a little
of its background, as :func:`~modyolo.data.augment.copy_paste_boxes` does). yolov7's size limits
(region > 20 px, paste > 10 px) are for 640 px images; they scale with the image size here (at
least 3 / 2 px) so small training sizes paste alike. yolov7 pre-samples a pool of >= 30 objects
from 4-image mosaics; here one crop is drawn per accepted region, so an image is read only when
a paste happens.

Every random draw comes from the ``rng`` passed in (the dataset's generator, seeded per seed and
epoch), so a sample is reproducible and a resumed run sees the same pastes.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

SCALES: tuple[float, ...] = (0.75,) * 2 + (0.5,) * 4 + (0.25,) * 4 + (0.125,) * 4 + (0.0625,) * 6
SKIP_P = 0.2  # probability that a scale entry tries no region at all (yolov7's)
REF_SIZE = 640  # the image size yolov7's pixel limits are written for

# sample(rng) -> (crop: BGR uint8 [hc, wc, 3], class) or None when no crop could be drawn
Sampler = Callable[[np.random.Generator], tuple[np.ndarray, int] | None]


def ioa(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection of ``box [4]`` with each of ``boxes [n, 4]`` over that box's own area (xyxy)."""
    iw = (np.minimum(boxes[:, 2], box[2]) - np.maximum(boxes[:, 0], box[0])).clip(0)
    ih = (np.minimum(boxes[:, 3], box[3]) - np.maximum(boxes[:, 1], box[1])).clip(0)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) + 1e-16
    return iw * ih / area


def paste_in(
    img: np.ndarray,
    labels: np.ndarray,
    sample: Sampler,
    rng: np.random.Generator,
    ioa_thr: float = 0.3,
) -> tuple[np.ndarray, np.ndarray]:
    """Paste object crops from ``sample`` into free regions of ``img`` (modified in place).

    ``labels``: float32 ``[n, 5]`` rows cls, x1, y1, x2, y2 in pixels of ``img``. Returns
    ``(img, labels)`` with one row appended per paste, its box the pasted rectangle.
    """
    h, w = img.shape[:2]
    k = max(h, w) / REF_SIZE
    min_region, min_paste = max(3, round(20 * k)), max(2, round(10 * k))
    labels = labels.astype(np.float32, copy=True).reshape(-1, 5)
    for s in SCALES:
        if rng.random() < SKIP_P:
            continue
        mh = int(rng.integers(1, max(int(h * s), 1) + 1))
        mw = int(rng.integers(1, max(int(w * s), 1) + 1))
        x0 = max(0, int(rng.integers(0, w + 1)) - mw // 2)
        y0 = max(0, int(rng.integers(0, h + 1)) - mh // 2)
        x1, y1 = min(w, x0 + mw), min(h, y0 + mh)
        if x1 - x0 <= min_region or y1 - y0 <= min_region:
            continue
        region = np.array([x0, y0, x1, y1], np.float32)
        if len(labels) and (ioa(region, labels[:, 1:5]) >= ioa_thr).any():
            continue
        drawn = sample(rng)
        if drawn is None:
            continue
        crop, cls = drawn
        hs, ws = crop.shape[:2]
        r = min((y1 - y0) / hs, (x1 - x0) / ws)
        rw, rh = int(ws * r), int(hs * r)
        if rw <= min_paste or rh <= min_paste:
            continue
        if (rw, rh) != (ws, hs):
            crop = cv2.resize(crop, (rw, rh), interpolation=cv2.INTER_LINEAR)
        img[y0 : y0 + rh, x0 : x0 + rw] = crop
        row = np.array([[cls, x0, y0, x0 + rw, y0 + rh]], np.float32)
        labels = np.concatenate([labels, row], 0)
    return img, labels


def crop_object(image: np.ndarray, label: np.ndarray) -> np.ndarray | None:
    """The pixels of one object: ``label`` = cls, cx, cy, w, h normalised to ``image`` (BGR
    ``[h, w, 3]``). Returns the box's crop (rounded to whole pixels, clipped), or None when it is
    under 2 px on a side."""
    h, w = image.shape[:2]
    _, cx, cy, bw, bh = (float(v) for v in label)
    x1, x2 = (int(np.clip(round(v * w), 0, w)) for v in (cx - bw / 2, cx + bw / 2))
    y1, y2 = (int(np.clip(round(v * h), 0, h)) for v in (cy - bh / 2, cy + bh / 2))
    if x2 - x1 < 2 or y2 - y1 < 2:
        return None
    return image[y1:y2, x1:x2]
