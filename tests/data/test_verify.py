from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from modyolo.data.dataset import DetectionDataset
from modyolo.data.formats.yolo import list_image_files
from modyolo.data.loader import create_dataloader
from modyolo.data.verify import scan


def test_planted_faults_are_reported_per_file_and_skipped(faulty_dir, caplog):
    with caplog.at_level(logging.INFO, logger="modyolo.data"):
        rep = scan(list_image_files(faulty_dir), nc=3, progress=False)
    kept = {r.im_file.rsplit("/", 1)[1].split(".")[0] for r in rep.records}
    assert kept == {
        "good1",
        "good2",
        "background_empty",
        "background_missing",
        "fix_overshoot",
        "fix_duplicate",
        "fix_zero_area",
    }
    assert (rep.n_found, rep.n_corrupt, rep.n_backgrounds, rep.n_missing_labels, rep.n_fixed) == (13, 6, 2, 1, 3)
    assert "13 images, 2 backgrounds (1 without label file), 6 corrupt, 3 labels fixed" in caplog.text
    msgs = "\n".join(rep.messages)
    for stem, why in [
        ("bad_columns", "4 columns"),
        ("bad_text", "non-numeric"),
        ("bad_class", "outside [0, 3)"),
        ("bad_coords", "outside [0, 1]"),
        ("truncated", "truncated"),
        ("zero", "unreadable image"),
        ("fix_overshoot", "clipped"),
        ("fix_duplicate", "duplicate"),
        ("fix_zero_area", "zero-area"),
    ]:
        assert any(stem in m and why in m for m in rep.messages), (stem, why, msgs)
    by = {r.im_file.rsplit("/", 1)[1].split(".")[0]: r.labels for r in rep.records}
    assert len(by["fix_duplicate"]) == 2 and len(by["fix_zero_area"]) == 2
    x1, x2 = (
        by["fix_overshoot"][0, 1] - by["fix_overshoot"][0, 3] / 2,
        by["fix_overshoot"][0, 1] + by["fix_overshoot"][0, 3] / 2,
    )
    assert x2 == pytest.approx(1.0) and x1 == pytest.approx(0.85, abs=1e-5)


def test_label_cache_reused_and_invalidated(faulty_dir):
    files = list_image_files(faulty_dir)
    first = scan(files, nc=3, progress=False)
    assert not first.from_cache and first.cache_path.is_file()
    assert first.cache_path.read_text().startswith("{")  # JSON, never pickle
    again = scan(files, nc=3, progress=False)
    assert again.from_cache and again.summary() == first.summary()
    (faulty_dir.parent.parent / "labels" / "train" / "bad_class.txt").write_text("2 0.5 0.5 0.2 0.2\n")
    changed = scan(files, nc=3, progress=False)
    assert not changed.from_cache and changed.n_corrupt == first.n_corrupt - 1
    assert scan(files, nc=4, progress=False).from_cache is False  # nc is part of the key


def test_exif_rotation_is_applied(tmp_path):
    im = tmp_path / "images" / "a.jpg"
    im.parent.mkdir(parents=True)
    arr = np.zeros((40, 80, 3), np.uint8)
    arr[:, :40] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    Image.fromarray(arr).save(im, exif=exif)
    ds = DetectionDataset(tmp_path / "images", img_size=64, progress=False)
    assert tuple(ds.shapes[0]) == (40, 80)  # (w, h) as displayed
    img, (h0, w0), _ = ds.load_image(0)
    assert (h0, w0) == (80, 40) and img.shape[:2] == (64, 32)
    assert img[:28].mean() > 200 and img[36:].mean() < 50  # the white half is now on top


def test_training_on_faulty_dataset_uses_every_good_image(faulty_dir):
    loader, ds = create_dataloader(faulty_dir, 64, 4, 32, augment=True, workers=0, shuffle=True, nc=3, progress=False)
    assert len(ds) == 7
    seen = set()
    for imgs, targets, paths, _ in loader:
        assert imgs.dtype.is_floating_point is False and imgs.shape[1:] == (3, 64, 64)
        seen.update(paths)
    assert len(seen) == 7


def test_no_usable_images_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nothing")):
        DetectionDataset(tmp_path / "nothing", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images found in .*empty"):
        DetectionDataset(tmp_path / "empty", progress=False)
    (tmp_path / "bad" / "images").mkdir(parents=True)
    (tmp_path / "bad" / "images" / "x.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(FileNotFoundError, match="no usable images"):
        DetectionDataset(tmp_path / "bad" / "images", progress=False)
