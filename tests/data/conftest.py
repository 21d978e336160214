"""Fixtures: a tiny shapes dataset and a dataset with planted faults, all under tmp_path."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from modyolo.data.synthetic import make_shapes_dataset


@pytest.fixture(scope="session")
def shapes_yaml(tmp_path_factory) -> Path:
    """16 train / 4 val images of 64-128 px."""
    return make_shapes_dataset(tmp_path_factory.mktemp("shapes"), n_train=16, n_val=4, seed=3, img_size=(64, 128))


def _img(path: Path, w: int = 96, h: int = 64, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


def _lbl(path: Path, text: str | None) -> None:
    if text is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture()
def faulty_dir(tmp_path) -> Path:
    """images/train + labels/train with one case per check; nc = 3. Returns the images folder."""
    im, lb = tmp_path / "images" / "train", tmp_path / "labels" / "train"
    good = "0 0.5 0.5 0.2 0.3\n1 0.25 0.25 0.1 0.1\n"
    cases = {
        "good1": good,
        "good2": "2 0.4 0.6 0.3 0.3\n",
        "background_empty": "",
        "background_missing": None,
        "bad_columns": "0 0.5 0.5 0.2\n",
        "bad_text": "0 0.5 abc 0.2 0.2\n",
        "bad_class": "3 0.5 0.5 0.2 0.2\n",
        "bad_coords": "0 1.5 0.5 0.2 0.2\n",
        "fix_overshoot": "0 0.95 0.5 0.2 0.2\n",
        "fix_duplicate": good + "0 0.5 0.5 0.2 0.3\n",
        "fix_zero_area": good + "1 0.5 0.5 0.0 0.2\n",
    }
    for k, (stem, text) in enumerate(cases.items()):
        _img(im / f"{stem}.jpg", seed=k)
        _lbl(lb / f"{stem}.txt", text)
    # a truncated JPEG and an empty file, both with valid labels
    _img(im / "truncated.jpg", 128, 128, seed=99)
    data = (im / "truncated.jpg").read_bytes()
    (im / "truncated.jpg").write_bytes(data[: len(data) // 2])
    _lbl(lb / "truncated.txt", good)
    (im / "zero.jpg").write_bytes(b"")
    _lbl(lb / "zero.txt", good)
    return im
