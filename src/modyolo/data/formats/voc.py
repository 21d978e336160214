"""Pascal VOC XML -> YOLO txt.

VOC layout: ``Annotations/*.xml``, ``JPEGImages/*``, optionally ``ImageSets/Main/<split>.txt``
listing image ids per split (train, val, test; ``trainval`` when there is no train). Boxes are
1-based inclusive pixel indices, so ``xmin - 1, ymin - 1, xmax, ymax`` is the box in 0-based
continuous coordinates. Objects flagged ``difficult`` are dropped unless ``keep_difficult``
(yolov5's VOC recipe drops them).
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .yolo import IMG_FORMATS, link_or_copy, write_labels

LOGGER = logging.getLogger("modyolo.data")


def parse_voc_xml(path: Path) -> tuple[str, tuple[int, int], list[tuple[str, list[float], bool]]]:
    """(filename, (w, h), [(name, [x1, y1, x2, y2] 0-based pixels, difficult), ...])."""
    root = ET.parse(path).getroot()  # expat refuses external entities; billion-laughs is capped
    size = root.find("size")
    w = int(float(size.findtext("width", "0"))) if size is not None else 0
    h = int(float(size.findtext("height", "0"))) if size is not None else 0
    objects = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        bb = obj.find("bndbox")
        if bb is None:
            raise ValueError(f"object '{name}' has no <bndbox>")
        box = [float(bb.findtext(k)) - off for k, off in (("xmin", 1), ("ymin", 1), ("xmax", 0), ("ymax", 0))]
        objects.append((name, box, obj.findtext("difficult", "0").strip() == "1"))
    return (root.findtext("filename") or path.stem).strip(), (w, h), objects


def _find_image(voc: Path, filename: str, stem: str) -> Path | None:
    for cand in (voc / "JPEGImages" / filename, *(voc / "JPEGImages" / f"{stem}.{ext}" for ext in IMG_FORMATS)):
        try:
            if cand.is_file():
                return cand
        except (OSError, ValueError):  # a <filename> too long or with a NUL byte: not a file there
            continue
    return None


def _splits(voc: Path, split: str | None = None) -> dict[str, list[str]]:
    """split -> image ids from ``ImageSets/Main``; every annotation into ``split`` when that is given.

    Without split lists and without ``split`` this refuses rather than guess (putting everything
    in train and reusing it as val would validate on training images).
    """
    sets = voc / "ImageSets" / "Main"
    if split:
        return {split: sorted(p.stem for p in (voc / "Annotations").glob("*.xml"))}
    out = {}
    for split, files in (("train", ("train.txt", "trainval.txt")), ("val", ("val.txt",)), ("test", ("test.txt",))):
        for f in files:
            if (sets / f).is_file():
                out[split] = [ln.split()[0] for ln in (sets / f).read_text().splitlines() if ln.strip()]
                break
    if not out:
        raise ValueError(
            f"{sets} has no train.txt / trainval.txt / val.txt / test.txt, so the split of each image is "
            "unknown; say where every image goes with --split (e.g. --split train, then convert a "
            "separate validation folder with --split val), or add those lists"
        )
    return out


def voc_to_yolo(
    voc_dir: str | Path,
    out_dir: str | Path,
    names: Sequence[str] | None = None,
    keep_difficult: bool = False,
    copy_images: bool = True,
    split: str | None = None,
) -> list[str]:
    """Convert a VOC folder to ``out_dir/{images,labels}/<split>/``; return the class names.

    ``names``: the class list (index = YOLO class id); default: every name in the XML files,
    sorted. Objects of other classes, unreadable XML and missing images are reported per file
    and skipped. ``split``: put every annotated image in this split instead of following
    ``ImageSets/Main`` (required when the folder has no split lists).
    """
    voc, out = Path(voc_dir), Path(out_dir)
    ann_dir = voc / "Annotations"
    if not ann_dir.is_dir():
        raise FileNotFoundError(f"{ann_dir} not found; voc_dir must hold Annotations/ and JPEGImages/")
    splits = _splits(voc, split)  # before any work: refuses when the split is unknown
    parsed: dict[str, tuple] = {}
    for xml in sorted(ann_dir.glob("*.xml")):
        try:
            parsed[xml.stem] = parse_voc_xml(xml)
        except (ET.ParseError, ValueError, TypeError) as e:
            LOGGER.warning("%s: unreadable VOC annotation (%s); skipped", xml, e)
    if names is None:
        names = sorted({o[0] for _, _, objs in parsed.values() for o in objs})
    cls_of = {n: i for i, n in enumerate(names)}
    for split_name, ids in splits.items():
        for stem in ids:
            if stem not in parsed:
                LOGGER.warning(
                    "%s: no readable annotation for '%s' listed in split %s; skipped", ann_dir, stem, split_name
                )
                continue
            filename, (w, h), objs = parsed[stem]
            img = _find_image(voc, filename, stem)
            if img is None:
                LOGGER.warning(
                    "%s: image %s not found in %s; skipped", ann_dir / f"{stem}.xml", filename, voc / "JPEGImages"
                )
                continue
            if w <= 0 or h <= 0:  # some exports omit <size>: read it from the image
                from PIL import Image

                with Image.open(img) as im:
                    w, h = im.size
            rows = []
            for name, (x1, y1, x2, y2), difficult in objs:
                if difficult and not keep_difficult:
                    continue
                if name not in cls_of:
                    LOGGER.warning(
                        "%s: class '%s' is not in the class list; object skipped", ann_dir / f"{stem}.xml", name
                    )
                    continue
                x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
                if x2 <= x1 or y2 <= y1:
                    LOGGER.warning("%s: empty box for '%s'; object skipped", ann_dir / f"{stem}.xml", name)
                    continue
                rows.append([cls_of[name], (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h])
            write_labels(out / "labels" / split_name / f"{img.stem}.txt", np.asarray(rows, np.float64).reshape(-1, 5))
            if copy_images:
                link_or_copy(img, out / "images" / split_name / img.name)
    return list(names)
