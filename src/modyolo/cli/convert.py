"""``modyolo convert``: VOC XML -> YOLO, COCO JSON -> YOLO, YOLO -> COCO JSON.

Examples::

    modyolo convert voc2yolo --src VOCdevkit/VOC2012 --out datasets/voc [--names a,b] [--keep-difficult]
    modyolo convert coco2yolo --json instances_val2017.json --images val2017 --out datasets/coco --split val
    modyolo convert yolo2coco --data data.yaml --split val --out gt.json
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=("voc2yolo", "coco2yolo", "yolo2coco"), help="which conversion")
    parser.add_argument("--src", help="voc2yolo: VOC folder holding Annotations/ and JPEGImages/")
    parser.add_argument("--json", help="coco2yolo: COCO annotation JSON")
    parser.add_argument("--images", help="coco2yolo: folder the COCO file_name entries are relative to")
    parser.add_argument("--data", help="yolo2coco: data YAML (or 'shapes') or a folder of images")
    parser.add_argument(
        "--split",
        default=None,
        help="coco2yolo: split to write (default train); voc2yolo: put every image in this split "
        "(required without ImageSets/Main lists); yolo2coco: split to read (default val)",
    )
    parser.add_argument("--out", required=True, help="output folder (voc2yolo, coco2yolo) or JSON file (yolo2coco)")
    parser.add_argument("--names", default=None, help="comma-separated class list (voc2yolo; yolo2coco on a folder)")
    parser.add_argument("--keep-difficult", action="store_true", help="voc2yolo: keep objects flagged difficult")
    parser.add_argument("--no-images", action="store_true", help="write labels only, do not link/copy images")


def _need(args: argparse.Namespace, *names: str) -> None:
    missing = [f"--{n}" for n in names if not getattr(args, n)]
    if missing:
        raise ValueError(f"convert {args.kind} needs {' and '.join(missing)}")


def run(args: argparse.Namespace) -> int:
    from modyolo.data.formats.yolo import write_data_yaml

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    names = [n.strip() for n in args.names.split(",")] if args.names else None
    if args.kind == "voc2yolo":
        from modyolo.data.formats.voc import voc_to_yolo

        _need(args, "src")
        names = voc_to_yolo(args.src, args.out, names, args.keep_difficult, not args.no_images, split=args.split)
        print(f"wrote {write_data_yaml(args.out, names)} ({len(names)} classes)")
    elif args.kind == "coco2yolo":
        from modyolo.data.formats.coco import coco_to_yolo

        _need(args, "json", "images")
        names = coco_to_yolo(args.json, args.images, args.out, args.split or "train", not args.no_images)
        print(f"wrote {write_data_yaml(args.out, names)} ({len(names)} classes)")
    else:
        from modyolo.data.formats.coco import yolo_to_coco

        _need(args, "data")
        gt = yolo_to_coco(args.data, args.split or "val", names=names)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(gt), encoding="utf-8")
        print(
            f"wrote {out}: {len(gt['images'])} images, {len(gt['annotations'])} boxes, {len(gt['categories'])} classes"
        )
    return 0
