"""COCO JSON <-> YOLO txt.

COCO boxes are ``[x, y, w, h]`` in pixels from the top-left corner; YOLO rows are
``cls cx cy w h`` normalised. ``coco_to_yolo`` maps category ids, sorted, to classes 0..nc-1.
``yolo_to_coco`` builds the ground-truth dict pycocotools reads, from the *verified* dataset
(the same images DetectionDataset keeps).
"""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .yolo import link_or_copy, list_image_files, write_labels

LOGGER = logging.getLogger("modyolo.data")


def coco_to_yolo(
    json_path: str | Path,
    images_dir: str | Path,
    out_dir: str | Path,
    split: str = "train",
    copy_images: bool = True,
    skip_crowd: bool = True,
) -> list[str]:
    """Convert one COCO annotation file to ``out_dir/{images,labels}/<split>/``; return class names.

    Images are hard-linked (or copied) from ``images_dir/<file_name>``; a missing image or an
    annotation outside its image is reported per file and skipped. Crowd boxes are skipped by
    default (they mark regions, not objects).
    """
    json_path, images_dir, out_dir = Path(json_path), Path(images_dir), Path(out_dir)
    try:
        coco = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{json_path}: cannot read COCO JSON ({e})") from e
    names, cat_to_cls = _categories(coco, json_path)
    anns = defaultdict(list)
    for a in coco["annotations"]:
        if isinstance(a, dict) and "image_id" in a:
            anns[a["image_id"]].append(a)
        else:
            LOGGER.warning("%s: annotation %r has no image_id; skipped", json_path, a)
    n_skipped, n_images = 0, 0
    for im in coco["images"]:
        try:
            w, h, rel = float(im["width"]), float(im["height"]), Path(str(im["file_name"]))
            if not (w > 0 and h > 0):
                raise ValueError(f"size {w:g}x{h:g}")
        except (KeyError, TypeError, ValueError) as e:
            LOGGER.warning("%s: image entry %r lacks a valid width/height/file_name (%s); skipped", json_path, im, e)
            continue
        n_images += 1
        rows = []
        for a in anns.get(im.get("id"), []):
            if skip_crowd and a.get("iscrowd", 0):
                continue
            why = _bad_annotation(a, w, h, cat_to_cls)
            if why:
                LOGGER.warning("%s: annotation %s of image %s: %s; skipped", json_path, a.get("id"), rel, why)
                n_skipped += 1
                continue
            x, y, bw, bh = (float(v) for v in a["bbox"])
            rows.append([cat_to_cls[a["category_id"]], (x + bw / 2) / w, (y + bh / 2) / h, bw / w, bh / h])
        label = out_dir / "labels" / split / rel.with_suffix(".txt")
        write_labels(label, np.clip(np.asarray(rows, np.float64).reshape(-1, 5), 0, None))
        if copy_images:
            src = images_dir / rel
            if not src.is_file():
                LOGGER.warning(
                    "%s: image %s not found in %s; its labels are written but the image is missing",
                    json_path,
                    rel,
                    images_dir,
                )
                continue
            link_or_copy(src, out_dir / "images" / split / rel)
    if coco["images"] and not n_images:
        raise ValueError(
            f"{json_path}: none of its {len(coco['images'])} image entries could be converted "
            "(see the warnings above); is this a COCO detection file?"
        )
    LOGGER.info("%s: %d images converted to %s (%d annotations skipped)", json_path, n_images, out_dir, n_skipped)
    return names


def _categories(coco: object, json_path: Path) -> tuple[list[str], dict]:
    """(class names, category id -> class index); ValueError naming the file for a wrong shape."""
    if not isinstance(coco, dict):
        raise ValueError(
            f"{json_path}: expected a JSON object with images/annotations/categories, got "
            f"{type(coco).__name__}; is this a COCO detection file?"
        )
    for key in ("images", "annotations", "categories"):
        if key not in coco:
            raise ValueError(f"{json_path}: key '{key}' missing; is this a COCO detection file?")
        if not isinstance(coco[key], list):
            raise ValueError(
                f"{json_path}: '{key}' must be a list, got {type(coco[key]).__name__}; is this a COCO detection file?"
            )
    for c in coco["categories"]:
        if not isinstance(c, dict) or not isinstance(c.get("id"), int) or "name" not in c:
            raise ValueError(f"{json_path}: category {c!r} needs an integer 'id' and a 'name'")
    ids = [c["id"] for c in coco["categories"]]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{json_path}: category ids repeat ({sorted(ids)}); each category needs its own id")
    cats = sorted(coco["categories"], key=lambda c: c["id"])
    return [str(c["name"]) for c in cats], {c["id"]: i for i, c in enumerate(cats)}


def _bad_annotation(a: dict, w: float, h: float, cat_to_cls: dict) -> str:
    """Why one annotation cannot be converted ('' when it can)."""
    if a.get("category_id") not in cat_to_cls:
        return (
            f"category_id {a.get('category_id')!r} is not in 'categories' "
            f"(ids {', '.join(map(str, sorted(cat_to_cls)))})"
        )
    try:
        x, y, bw, bh = (float(v) for v in a["bbox"])
    except (KeyError, TypeError, ValueError):
        return f"bbox {a.get('bbox')!r} is not [x, y, w, h]"
    inside = x >= -1 and y >= -1 and x + bw <= w + 1 and y + bh <= h + 1
    if not all(np.isfinite([x, y, bw, bh])) or bw <= 0 or bh <= 0 or not inside:
        return f"box {a['bbox']} outside its {w:g}x{h:g} image"
    return ""


def yolo_to_coco(
    data_config_or_dir, split: str = "val", names: Sequence[str] | None = None, progress: bool = False
) -> dict:
    """COCO ground truth for a YOLO dataset split, for pycocotools' ``COCO()``.

    ``data_config_or_dir``: a DataConfig, a data YAML path or ``"shapes"``, or a folder of
    images (then class names come from ``names`` or are ``class<i>``).

    Ids (``coco_image_id_list``): yolov5's, the file stem as an int when it is numeric
    (``000000000139.jpg`` -> 139, so the ids are COCO's own), the stem otherwise; 1..N in sorted
    path order when stems repeat or mix numbers and names. Only verified images are listed (corrupt
    ones are left out, as DetectionDataset leaves them out); each image dict also carries ``"path"``
    (absolute) so predictions can be matched by path (``coco_image_ids``). ``category_id`` is
    the YOLO class index (0-based). Boxes are ``[x, y, w, h]`` pixels of the original image.
    """
    from ..dataset_yaml import DataConfig, load_data_config
    from ..verify import scan

    if isinstance(data_config_or_dir, (str, Path)) and Path(data_config_or_dir).is_dir():
        root = Path(data_config_or_dir).resolve()
        sources = [root]
        nc = len(names) if names is not None else None
    else:
        cfg = data_config_or_dir if isinstance(data_config_or_dir, DataConfig) else load_data_config(data_config_or_dir)
        sources = getattr(cfg, split, None)
        if not sources:
            raise ValueError(f"{cfg.source}: key '{split}': no such split in the data YAML")
        root, names, nc = cfg.path, cfg.names, cfg.nc
    report = scan(list_image_files(sources), nc, progress=progress)
    images, annotations = [], []
    seen_cls: set[int] = set()
    ids = coco_image_id_list([rec.im_file for rec in report.records])
    for k, rec in zip(ids, report.records):
        w, h = rec.shape
        p = Path(rec.im_file)
        rel = os.path.relpath(p, root) if p.is_relative_to(root) else p.name
        images.append({"id": k, "file_name": rel, "width": int(w), "height": int(h), "path": str(p)})
        for c, cx, cy, bw, bh in rec.labels.astype(np.float64):
            bw_px, bh_px = bw * w, bh * h
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": k,
                    "category_id": int(c),
                    "bbox": [(cx - bw / 2) * w, (cy - bh / 2) * h, bw_px, bh_px],
                    "area": bw_px * bh_px,
                    "iscrowd": 0,
                }
            )
            seen_cls.add(int(c))
    if names is None:
        names = [f"class{i}" for i in range(max(seen_cls) + 1 if seen_cls else 0)]
    categories = [{"id": i, "name": str(n)} for i, n in enumerate(names)]
    return {
        "info": {"description": f"modyolo export of {root} ({split})"},
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }


def coco_image_id_list(paths: Sequence[str | Path]) -> list[int | str]:
    """COCO image ids for image files, as yolov5 writes them: ``int(stem)`` for numeric stems, the
    stem otherwise. When two files share a stem, or numeric and other stems mix (pycocotools
    sorts the ids, and cannot sort ints with strings), the images are numbered 1..N instead."""
    ids: list[int | str] = [int(Path(p).stem) if Path(p).stem.isdigit() else Path(p).stem for p in paths]
    if len(set(ids)) == len(ids) and len({type(i) for i in ids}) <= 1:
        return ids
    LOGGER.info("COCO image ids: file stems repeat or mix numbers and names; numbering the %d images 1..N", len(ids))
    return list(range(1, len(ids) + 1))


def coco_image_ids(gt: dict) -> dict[str, int | str]:
    """Absolute image path -> COCO image id, for a dict made by ``yolo_to_coco``."""
    return {im["path"]: im["id"] for im in gt["images"]}
