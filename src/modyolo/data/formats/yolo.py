"""The YOLO txt format: where images and labels live, and how label files are read and written.

A YOLO dataset is a set of image files plus one ``.txt`` per image found by yolov5's rule: the
last ``/images/`` in the image path becomes ``/labels/`` and the suffix becomes ``.txt``. Each
row is ``cls cx cy w h`` with coordinates normalised to the image (0..1). A missing or empty
label file means the image has no objects (a "background" image).

A *source* (a ``train``/``val``/``test`` entry of a data YAML) is a folder searched recursively
for images, a ``.txt`` file listing image paths (relative paths are relative to the txt file's
folder), a single image, or a list of those.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

LOGGER = logging.getLogger("modyolo.data")

IMG_FORMATS = ("bmp", "dng", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp", "pfm")


def is_image(path: str | Path) -> bool:
    return str(path).rsplit(".", 1)[-1].lower() in IMG_FORMATS


def img2label_path(img_path: str) -> str:
    """``.../images/a/b.jpg`` -> ``.../labels/a/b.txt`` (only the last ``/images/`` is replaced)."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    head = sb.join(img_path.rsplit(sa, 1)) if sa in img_path else img_path
    return head.rsplit(".", 1)[0] + ".txt"


def img2label_paths(img_paths: Sequence[str]) -> list[str]:
    return [img2label_path(p) for p in img_paths]


def _images_in_list_file(txt: Path) -> list[str]:
    parent = txt.parent
    out = []
    for line in txt.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        p = Path(line)
        if not p.is_absolute():  # yolov5: './images/x.jpg' is relative to the list file
            p = parent / p
        out.append(str(p.resolve()))
    return out


def list_image_files(sources: str | Path | Iterable[str | Path]) -> list[str]:
    """All image files named by ``sources``, absolute, sorted, without duplicates.

    Raises FileNotFoundError naming the path searched when a source does not exist, and when
    the sources hold no image at all.
    """
    if isinstance(sources, (str, Path)):
        sources = [sources]
    sources = [Path(s) for s in sources]
    files: list[str] = []
    for src in sources:
        if src.is_dir():
            files += [str(p.resolve()) for p in src.rglob("*") if p.is_file() and is_image(p)]
        elif src.is_file() and src.suffix.lower() == ".txt":
            files += [f for f in _images_in_list_file(src) if is_image(f)]
        elif src.is_file() and is_image(src):
            files.append(str(src.resolve()))
        else:
            raise FileNotFoundError(
                f"dataset source '{src}' does not exist (expected a folder of images, a .txt list "
                f"of image paths or an image file); check the path in your data YAML"
            )
    files = sorted(set(files))
    if not files:
        searched = ", ".join(str(s) for s in sources)
        raise FileNotFoundError(
            f"no images found in {searched} (searched recursively for "
            f"{', '.join(IMG_FORMATS)}); point the data YAML at the folder that holds the images"
        )
    return files


def read_label_rows(path: str | Path) -> list[list[str]]:
    """The whitespace-split rows of a label file, blank lines skipped; [] when the file is absent."""
    p = Path(path)
    if not p.is_file():
        return []
    # utf-8-sig: a BOM (most Windows editors write one) is not part of the first class id
    return [ln.split() for ln in p.read_text(encoding="utf-8-sig").splitlines() if ln.strip()]


def write_labels(path: str | Path, labels: np.ndarray) -> None:
    """Write ``labels: [n, 5]`` (cls, cx, cy, w, h normalised) as a YOLO txt file (6 decimals)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    rows = [f"{int(c)} {x:.6f} {y:.6f} {w:.6f} {h:.6f}" for c, x, y, w, h in np.asarray(labels)]
    p.write_text("\n".join(rows) + ("\n" if rows else ""), encoding="utf-8")


def xywhn2xyxy(x: np.ndarray, w: float, h: float, padw: float = 0.0, padh: float = 0.0) -> np.ndarray:
    """``[n, 4]`` cx, cy, w, h normalised -> x1, y1, x2, y2 pixels in a ``w x h`` image, shifted by pad."""
    y = np.empty_like(x, dtype=np.float32)
    y[:, 0] = w * (x[:, 0] - x[:, 2] / 2) + padw
    y[:, 1] = h * (x[:, 1] - x[:, 3] / 2) + padh
    y[:, 2] = w * (x[:, 0] + x[:, 2] / 2) + padw
    y[:, 3] = h * (x[:, 1] + x[:, 3] / 2) + padh
    return y


def xyxy2xywhn(x: np.ndarray, w: float, h: float, clip: bool = False, eps: float = 0.0) -> np.ndarray:
    """``[n, 4]`` x1, y1, x2, y2 pixels -> cx, cy, w, h normalised to a ``w x h`` image."""
    x = np.asarray(x, dtype=np.float32)
    if clip:
        x = x.copy()
        x[:, [0, 2]] = x[:, [0, 2]].clip(0, w - eps)
        x[:, [1, 3]] = x[:, [1, 3]].clip(0, h - eps)
    y = np.empty_like(x)
    y[:, 0] = (x[:, 0] + x[:, 2]) / 2 / w
    y[:, 1] = (x[:, 1] + x[:, 3]) / 2 / h
    y[:, 2] = (x[:, 2] - x[:, 0]) / w
    y[:, 3] = (x[:, 3] - x[:, 1]) / h
    return y


def link_or_copy(src: str | Path, dst: str | Path) -> None:
    """Hard-link ``src`` to ``dst`` (no extra space), copying when linking is impossible.

    Not a symlink: paths are resolved when listed, and a symlink would resolve back to the
    source folder, where yolov5's images->labels rule finds no labels.
    """
    import shutil

    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def write_data_yaml(
    root: str | Path, names: Sequence[str], filename: str = "data.yaml", reuse_missing: bool = False
) -> Path:
    """Write a data YAML for ``root/images/<split>`` folders that exist (train, val, test).

    A missing train or val split is *not* guessed (validating on the training images would look
    like a great model): the YAML lists only the splits that exist and a warning says how to add
    the other (convert it into the same folder; the YAML is rewritten with both). ``reuse_missing``
    fills a missing split with the other one, for callers that want exactly that.
    """
    import yaml

    root = Path(root)
    cfg: dict = {"path": str(root.resolve())}
    for split in ("train", "val", "test"):
        if (root / "images" / split).is_dir():
            cfg[split] = f"images/{split}"
    for have, missing in (("train", "val"), ("val", "train")):
        if missing not in cfg and have in cfg:
            if reuse_missing:
                cfg[missing] = cfg[have]
            else:
                LOGGER.warning(
                    "%s: no '%s' split (only %s); %s has no '%s' key until you convert that split into the "
                    "same folder (e.g. --split %s) or add '%s: <folder>' yourself",
                    root,
                    missing,
                    have,
                    root / filename,
                    missing,
                    missing,
                    missing,
                )
    cfg["nc"] = len(names)
    cfg["names"] = dict(enumerate(names))
    out = root / filename
    out.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return out
