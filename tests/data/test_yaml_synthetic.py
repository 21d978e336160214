from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from modyolo.data import synthetic
from modyolo.data.dataset_yaml import load_data_config


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(root.rglob("*")):
        if f.is_file() and f.suffix in (".jpg", ".txt"):
            h.update(f.relative_to(root).as_posix().encode() + f.read_bytes())
    return h.hexdigest()


def test_shapes_is_deterministic_and_varied(tmp_path):
    a = synthetic.make_shapes_dataset(tmp_path / "a", n_train=24, n_val=2, seed=5, img_size=(64, 128))
    b = synthetic.make_shapes_dataset(tmp_path / "b", n_train=24, n_val=2, seed=5, img_size=(64, 128))
    c = synthetic.make_shapes_dataset(tmp_path / "c", n_train=24, n_val=2, seed=6, img_size=(64, 128))
    assert _digest(a.parent) == _digest(b.parent) != _digest(c.parent)
    cfg = load_data_config(str(a))
    assert cfg.names == list(synthetic.CLASSES) and cfg.nc == 5
    files = sorted((a.parent / "labels" / "train").glob("*.txt"))
    labels = [np.array([r.split() for r in f.read_text().splitlines()], np.float32).reshape(-1, 5) for f in files]
    allb = np.concatenate(labels)
    assert set(allb[:, 0].astype(int)) == set(range(5))
    assert ((allb[:, 1:] >= 0) & (allb[:, 1:] <= 1)).all()
    assert allb[:, 3:].max(1).min() > 0.05 and allb[:, 3:].max() <= 0.85  # objects are large, inside


def test_background_images_exist():
    counts = [len(synthetic.draw_shapes_image(np.random.default_rng([0, 0, i]), (32, 48))[1]) for i in range(60)]
    assert 0 in counts and max(counts) > 1


def test_shapes_name_generates_once_under_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MODYOLO_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(synthetic, "DEFAULT_SPLITS", (6, 2))
    cfg = load_data_config("shapes")
    assert cfg.source == tmp_path / f"shapes-v{synthetic.SHAPES_VERSION}" / "shapes.yaml"
    assert len(list(cfg.train[0].glob("*.jpg"))) == 6
    mtime = cfg.source.stat().st_mtime_ns
    assert load_data_config("shapes.yaml").source.stat().st_mtime_ns == mtime  # not regenerated


def test_yaml_forms_and_errors(tmp_path):
    (tmp_path / "imgs").mkdir()
    y = tmp_path / "d.yaml"
    y.write_text("path: .\ntrain: [imgs, list.txt]\nval: imgs\nnames: {0: a, 1: b}\n")
    cfg = load_data_config(str(y))
    assert cfg.train == [tmp_path / "imgs", tmp_path / "list.txt"] and cfg.names == ["a", "b"] and cfg.test is None
    y.write_text("train: imgs\nval: imgs\nnc: 3\nnames: [a, b]\n")
    with pytest.raises(ValueError, match=r"d\.yaml: key 'nc'"):
        load_data_config(str(y))
    y.write_text("train: imgs\nnames: [a]\n")
    with pytest.raises(ValueError, match=r"d\.yaml: key 'val'"):
        load_data_config(str(y))
    y.write_text("train: imgs\nval: imgs\nnames: {0: a, 2: b}\n")
    with pytest.raises(ValueError, match="key 'names'.*without gaps"):
        load_data_config(str(y))
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_data_config(str(tmp_path / "nope.yaml"))
