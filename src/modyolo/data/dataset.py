"""DetectionDataset: verified YOLO-format images and labels -> augmented training samples.

A sample is ``(img: Tensor[3, H, W] uint8 RGB, labels: Tensor[n, 6] float32 rows
[0, cls, cx, cy, w, h] normalised to img, path: str, shapes)``. ``shapes`` is None for mosaic
samples, else yolov5's ``((h0, w0), ((h / h0, w / w0), (padw, padh)))`` (original size, resize
ratio, letterbox pad) so predictions can be mapped back to the original image.

Randomness comes from ``self.rng`` (a numpy Generator): seeded from ``seed`` in the main
process and re-seeded per DataLoader worker by the loader's ``worker_init_fn``, so a run is
reproducible and identical whatever the cache mode.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from . import augment as A
from .cache import build_cache
from .formats.yolo import img2label_paths, list_image_files, xywhn2xyxy, xyxy2xywhn
from .images import JPEG_SUFFIXES, read_image, resize_long_side, resized_shape
from .paste_in import crop_object, paste_in
from .verify import scan

LOGGER = logging.getLogger("modyolo.data")


class DetectionDataset(Dataset):
    """Images and labels from YOLO sources (folders, .txt lists, or lists of those).

    Attributes the trainer/evaluator use: ``im_files: list[str]``, ``label_files``,
    ``labels: list[np.ndarray[n, 5]]`` (cls, cx, cy, w, h normalised; verified),
    ``shapes: np.ndarray[N, 2]`` (w, h of the originals), ``batch_shapes`` (rect only, [B, 2]
    h, w), ``mosaic`` (settable; shared with DataLoader workers), ``report`` (VerifyReport).
    """

    def __init__(
        self,
        sources: str | Path | Iterable[str | Path],
        img_size: int = 640,
        batch_size: int = 16,
        augment: bool = False,
        hyp: Mapping[str, float] | None = None,
        rect: bool = False,
        cache: str | None = None,
        single_cls: bool = False,
        stride: int = 32,
        pad: float = 0.0,
        prefix: str = "",
        fraction: float = 1.0,
        seed: int = 0,
        names: Sequence[str] | None = None,
        nc: int | None = None,
        progress: bool = True,
    ) -> None:
        self.img_size, self.augment, self.rect, self.stride = int(img_size), augment, rect, int(stride)
        self.hyp = A.aug_params(hyp)
        self.prefix = prefix
        self.names = list(names) if names is not None else None
        nc = nc if nc is not None else (len(self.names) if self.names is not None else None)
        self.nc = nc
        im_files = list_image_files(sources)
        self.report = scan(im_files, nc, prefix=prefix, progress=progress)
        records = self.report.records
        if not 0.0 < fraction <= 1.0:
            raise ValueError(
                f"{prefix}fraction (--fraction) must be in (0, 1], got {fraction}; e.g. 0.5 trains "
                "on a seeded random half of the images"
            )
        if fraction < 1.0:  # a seeded random subset (not the first N: sorted paths often group by source)
            keep = max(1, round(len(records) * fraction))
            chosen = np.sort(np.random.default_rng(seed).choice(len(records), size=keep, replace=False))
            records = [records[i] for i in chosen]
        if not records:
            raise FileNotFoundError(
                f"{prefix}no usable images in {sources}: {self.report.summary()}; "
                f"see the per-file messages above (first: {self.report.messages[:1]})"
            )
        self.im_files = [r.im_file for r in records]
        self.label_files = img2label_paths(self.im_files)
        self.labels = [r.labels.copy() for r in records]
        self.shapes = np.array([r.shape for r in records], dtype=np.int64).reshape(-1, 2)  # (w, h)
        self.exif_rotated = [r.exif_rotated for r in records]
        if single_cls:
            for lb in self.labels:
                lb[:, 0] = 0
        n = len(self.im_files)
        self.n = n
        self.indices = np.arange(n)
        self.batch = np.floor(np.arange(n) / batch_size).astype(int)
        self.batch_shapes = None
        if rect:
            self._sort_for_rect(batch_size, pad)
        self._labelled = np.flatnonzero([len(lb) for lb in self.labels])  # paste-in's donors
        self._mosaic_flag = mp.Value("b", bool(augment and not rect), lock=False)  # shared with workers
        self.rng = np.random.default_rng(seed)
        self.cache = build_cache(
            cache,
            self.im_files,
            self.resized_shapes(),
            self._load_uncached,
            self.img_size,
            "l" if augment else "a",
            self._raw_jpeg,
            prefix,
            progress,
        )

    # -- bookkeeping ----------------------------------------------------------------------------

    def _sort_for_rect(self, batch_size: int, pad: float) -> None:
        """Sort by aspect ratio and give each batch the smallest stride-multiple shape it fits."""
        ar = self.shapes[:, 1] / self.shapes[:, 0]  # h / w
        order = ar.argsort()
        self.im_files = [self.im_files[i] for i in order]
        self.label_files = [self.label_files[i] for i in order]
        self.labels = [self.labels[i] for i in order]
        self.exif_rotated = [self.exif_rotated[i] for i in order]
        self.shapes, ar = self.shapes[order], ar[order]
        nb = int(self.batch[-1]) + 1
        shapes = np.ones((nb, 2))
        for i in range(nb):
            ari = ar[self.batch == i]
            lo, hi = ari.min(), ari.max()
            if hi < 1:
                shapes[i] = [hi, 1]
            elif lo > 1:
                shapes[i] = [1, 1 / lo]
        self.batch_shapes = np.ceil(shapes * self.img_size / self.stride + pad).astype(int) * self.stride

    @property
    def mosaic(self) -> bool:
        return bool(self._mosaic_flag.value)

    @mosaic.setter
    def mosaic(self, on: bool) -> None:
        self._mosaic_flag.value = bool(on)

    def close_mosaic(self) -> None:
        """Turn mosaic (and mixup, which needs it) off, e.g. for the last N epochs."""
        self.mosaic = False

    def resized_shapes(self) -> list[tuple[int, int]]:
        """(h, w) of every image after ``load_image``'s resize."""
        return [resized_shape(int(h), int(w), self.img_size) for w, h in self.shapes]

    def __len__(self) -> int:
        return self.n

    # -- pixels ---------------------------------------------------------------------------------

    def _load_uncached(self, i: int) -> np.ndarray:
        return resize_long_side(read_image(self.im_files[i], self.exif_rotated[i]), self.img_size, self.augment)

    def _raw_jpeg(self, i: int) -> bytes | None:
        """The file bytes of image i when an encoded cache can store them as they are: an upright
        JPEG that loading keeps at its size or enlarges (the cache enlarges after decoding, so
        its pixels equal the uncached ones). Shrunk images are re-encoded at their new size."""
        w, h = self.shapes[i]
        f = self.im_files[i]
        if self.exif_rotated[i] or not f.lower().endswith(JPEG_SUFFIXES):
            return None
        rh, rw = resized_shape(int(h), int(w), self.img_size)
        if rh < h or rw < w:
            return None
        return Path(f).read_bytes()

    def load_image(self, i: int) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
        """(BGR image resized so its long side is img_size, (h0, w0) original, (h, w) resized)."""
        img = self.cache.get(i) if self.cache is not None else self._load_uncached(i)
        w0, h0 = self.shapes[i]
        return img, (int(h0), int(w0)), img.shape[:2]

    # -- samples --------------------------------------------------------------------------------

    def __getitem__(self, index: int):
        index = int(self.indices[index])
        p, rng = self.hyp, self.rng
        if self.mosaic and rng.random() < p["mosaic"]:
            img, labels = self._load_mosaic(index)
            shapes = None
            if rng.random() < p["mixup"]:
                img2, labels2 = self._load_mosaic(int(rng.integers(self.n)))
                img, labels = A.mixup(img, labels, img2, labels2, rng)
        else:
            img, (h0, w0), (h, w) = self.load_image(index)
            shape = self.batch_shapes[self.batch[index]] if self.rect else self.img_size
            img, ratio, pad = A.letterbox(img, shape, auto=False, scaleup=self.augment)
            if not img.flags.writeable:  # still the ram cache's read-only view: augment a copy
                img = img.copy()
            shapes = ((h0, w0), ((h / h0, w / w0), pad))
            lb = self.labels[index]
            labels = np.zeros((len(lb), 5), np.float32)
            if len(lb):
                labels[:, 0] = lb[:, 0]
                labels[:, 1:] = xywhn2xyxy(lb[:, 1:], ratio[0] * w, ratio[1] * h, pad[0], pad[1])
            if self.augment:
                img, labels = A.random_perspective(img, labels, p, rng)
        if self.augment and p["copy_paste"] > 0:
            img, labels = self._copy_paste(img, labels)
        if self.augment and p["paste_in"] > 0 and rng.random() < p["paste_in"]:  # no draw when off
            img, labels = paste_in(img, labels, self._paste_in_sample, rng)
        nl = len(labels)
        out = np.zeros((nl, 6), np.float32)
        if nl:
            out[:, 1] = labels[:, 0]
            out[:, 2:] = xyxy2xywhn(labels[:, 1:5], img.shape[1], img.shape[0], clip=True, eps=1e-3)
        if self.augment:
            A.augment_hsv(img, p["hsv_h"], p["hsv_s"], p["hsv_v"], rng)
            img = A.random_flip(img, out[:, 1:], p["flipud"], p["fliplr"], rng)
        chw = np.ascontiguousarray(img.transpose(2, 0, 1)[::-1])  # HWC BGR -> CHW RGB
        return torch.from_numpy(chw), torch.from_numpy(out), self.im_files[index], shapes

    def _load_mosaic(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        others = self.rng.integers(0, self.n, 3)
        idx = np.array([index, *others])[self.rng.permutation(4)]
        images = [self.load_image(int(i))[0] for i in idx]
        return A.mosaic4(images, [self.labels[int(i)] for i in idx], self.img_size, self.hyp, self.rng)

    def _copy_paste(self, img: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        j = int(self.rng.integers(self.n))
        donor, _, (h, w) = self.load_image(j)
        lb = self.labels[j]
        donor_labels = np.zeros((len(lb), 5), np.float32)
        if len(lb):
            donor_labels[:, 0] = lb[:, 0]
            donor_labels[:, 1:] = xywhn2xyxy(lb[:, 1:], w, h)
        return A.copy_paste_boxes(img, labels, donor, donor_labels, self.hyp["copy_paste"], self.rng)

    def _paste_in_sample(self, rng: np.random.Generator) -> tuple[np.ndarray, int] | None:
        """One object for paste-in: a random box of a random labelled image, as (BGR crop, class)."""
        labelled = self._labelled
        if not len(labelled):
            return None
        j = int(labelled[rng.integers(len(labelled))])
        lb = self.labels[j]
        row = lb[int(rng.integers(len(lb)))]
        crop = crop_object(self.load_image(j)[0], row)
        return None if crop is None else (crop, int(row[0]))

    @staticmethod
    def collate_fn(batch):
        """-> (imgs: uint8 [B, 3, H, W], targets: float32 [N, 6] with column 0 = image index in
        the batch, paths: tuple[str], shapes: tuple)."""
        imgs, labels, paths, shapes = zip(*batch)
        for i, lb in enumerate(labels):
            lb[:, 0] = i
        return torch.stack(imgs, 0), torch.cat(labels, 0), paths, shapes
