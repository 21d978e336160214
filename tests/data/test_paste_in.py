"""yolov7's paste-in (hyp ``paste_in``): pasted boxes are exactly the pasted pixels, existing
objects stay visible, probability 0 draws nothing, a fixed rng gives the same samples, and
`modyolo train --hyp hyp.scratch.p5.yaml` runs with it."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import yaml

from modyolo.cli import main as cli_main
from modyolo.data import dataset as dataset_mod
from modyolo.data.dataset import DetectionDataset
from modyolo.data.dataset_yaml import load_data_config
from modyolo.data.paste_in import crop_object, ioa, paste_in
from modyolo.engine.hyp import load_hyp
from modyolo.nn.graph import load_model_yaml

GREY = 114
STILL = {"degrees": 0.0, "translate": 0.0, "scale": 0.0, "shear": 0.0, "hsv_h": 0.0, "hsv_s": 0.0, "hsv_v": 0.0}


def colour(k: int) -> tuple[int, int, int]:
    return (k * 40 % 200 + 20, k * 70 % 200 + 30, 255 - k * 13 % 100)  # never grey, never white


def solid_crops():
    """A sampler of solid crops of various sizes and aspect ratios; the k-th has colour(k) and
    class k, so a label tells which crop it is."""
    count = [0]

    def sample(rng):
        count[0] += 1
        h, w = int(rng.integers(4, 40)), int(rng.integers(4, 40))
        return np.full((h, w, 3), colour(count[0]), np.uint8), count[0]

    return sample


@pytest.mark.parametrize("seed", range(6))
def test_pasted_boxes_are_exactly_the_pasted_pixels(seed):
    img = np.full((128, 160, 3), GREY, np.uint8)
    img[40:80, 60:100] = 255  # an object already in the sample
    labels = np.array([[1, 60, 40, 100, 80]], np.float32)
    out, lab = paste_in(img.copy(), labels, solid_crops(), np.random.default_rng(seed))
    assert lab.shape[1] == 5 and len(lab) > 1, "nothing pasted"
    np.testing.assert_array_equal(lab[:1], labels)  # the original label is kept as it was
    # repaint the boxes in order: every pasted box is a solid crop, so this must give the image back
    expect = img.copy()
    for i, (k, x1, y1, x2, y2) in enumerate(lab[1:], 1):
        x1, y1, x2, y2 = (int(v) for v in (x1, y1, x2, y2))
        assert (x1, y1, x2, y2) == tuple(lab[i, 1:]), "boxes sit on whole pixels"
        assert 0 <= x1 < x2 <= 160 and 0 <= y1 < y2 <= 128
        expect[y1:y2, x1:x2] = colour(int(k))
        # a paste covers less than 30% of any box already there (the original and earlier pastes)
        assert (ioa(lab[i, 1:], lab[:i, 1:]) < 0.3).all()
    np.testing.assert_array_equal(out, expect)


def test_no_free_place_or_no_object_pastes_nothing():
    img = np.full((64, 64, 3), GREY, np.uint8)
    # 2 x 2 px objects everywhere: any region big enough to paste into hides one of them entirely
    xy = np.stack(np.meshgrid(np.arange(0, 64, 2), np.arange(0, 64, 2)), -1).reshape(-1, 2)
    full = np.concatenate([np.zeros((len(xy), 1)), xy, xy + 2], 1).astype(np.float32)
    out, lab = paste_in(img.copy(), full, solid_crops(), np.random.default_rng(0))
    np.testing.assert_array_equal(lab, full)
    np.testing.assert_array_equal(out, img)
    out, lab = paste_in(img.copy(), np.zeros((0, 5), np.float32), lambda rng: None, np.random.default_rng(0))
    assert lab.shape == (0, 5) and (out == GREY).all()


def test_crop_object_reads_the_labelled_pixels():
    img = np.zeros((40, 80, 3), np.uint8)
    img[10:30, 20:60] = 200
    crop = crop_object(img, np.array([0, 0.5, 0.5, 0.5, 0.5], np.float32))
    assert crop.shape == (20, 40, 3) and (crop == 200).all()
    assert crop_object(img, np.array([0, 0.5, 0.5, 0.01, 0.5], np.float32)) is None  # under 2 px wide


@pytest.fixture(scope="module")
def train(shapes_yaml):
    return load_data_config(str(shapes_yaml)).train


def dataset(train, seed=0, **hyp):
    return DetectionDataset(train, img_size=96, augment=True, hyp={**STILL, **hyp}, seed=seed, progress=False)


def samples(ds, n=8):
    return [(img.numpy().copy(), lb.numpy().copy()) for img, lb, *_ in (ds[i] for i in range(n))]


def test_probability_zero_is_a_no_op(train, monkeypatch):
    ref = samples(dataset(train))  # the key absent: yolov5's files
    monkeypatch.setattr(dataset_mod, "paste_in", lambda *a, **k: pytest.fail("paste_in ran at probability 0"))
    got = samples(dataset(train, paste_in=0.0))
    for (a, la), (b, lb) in zip(ref, got):  # and the rng stream is untouched: same samples
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)


def test_dataset_pastes_objects_and_is_deterministic_under_its_rng(train, monkeypatch):
    calls = []
    real = dataset_mod.paste_in

    def counting(img, labels, sample, rng):
        img, out = real(img, labels, sample, rng)
        calls.append(len(out) - len(labels))
        return img, out

    monkeypatch.setattr(dataset_mod, "paste_in", counting)
    a = samples(dataset(train, seed=5, paste_in=1.0, mosaic=0.0))
    assert len(calls) == 8 and sum(calls) > 0, calls  # every sample, and objects were added
    b = samples(dataset(train, seed=5, paste_in=1.0, mosaic=0.0))
    c = samples(dataset(train, seed=6, paste_in=1.0, mosaic=0.0))
    for (ia, la), (ib, lb) in zip(a, b):
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(la, lb)
    assert any(not np.array_equal(ia, ic) for (ia, _), (ic, _) in zip(a, c))
    ds = dataset(train, seed=5, paste_in=1.0)
    ds.rng = np.random.default_rng(123)  # what the loader does per (seed, epoch) and per worker
    first = samples(ds, 4)
    ds.rng = np.random.default_rng(123)
    for (i1, l1), (i2, l2) in zip(first, samples(ds, 4)):
        np.testing.assert_array_equal(i1, i2)
        np.testing.assert_array_equal(l1, l2)


def test_hyp_files_turn_it_on_without_a_warning(caplog):
    hyp = load_hyp("hyp.scratch.p5.yaml")
    assert hyp.paste_in == 0.15
    assert "not implemented" not in caplog.text


def test_train_cli_with_yolov7_p5_hyp_runs_paste_in(tmp_path, shapes_yaml, monkeypatch):
    calls = []
    real = dataset_mod.paste_in

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(dataset_mod, "paste_in", counting)
    cfg, _ = load_model_yaml("yolov7-tiny.yaml")
    cfg = copy.deepcopy(cfg)
    cfg.update({"width_multiple": 0.125})
    cfg.pop("yaml_file", None)
    (tmp_path / "v7.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    hyp = load_hyp("hyp.scratch.p5.yaml").to_dict()
    hyp["paste_in"] = 1.0  # every sample, so the 1-epoch run surely exercises it
    (tmp_path / "p5.yaml").write_text(yaml.safe_dump(hyp))
    args = ["train", "--data", str(shapes_yaml), "--cfg", str(tmp_path / "v7.yaml"), "--img", "64"]
    args += ["--epochs", "1", "--batch-size", "4", "--workers", "0", "--noplots"]
    args += ["--project", str(tmp_path / "runs"), "--name", "p5", "--quiet", "--device", "cpu"]
    assert cli_main([*args[:7], "--hyp", str(tmp_path / "p5.yaml"), *args[7:]]) == 0
    assert (tmp_path / "runs" / "p5" / "weights" / "last.pt").is_file()
    assert calls, "paste_in never ran during training"
    # the shipped file as it is (paste_in 0.15) trains too
    args[args.index("p5")] = "p5_shipped"
    assert cli_main([*args, "--hyp", "hyp.scratch.p5.yaml"]) == 0


def test_resume_with_paste_in_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, shapes_yaml):
    """The dataset rng is set per (seed, epoch), and paste-in draws only from it: a run cut after
    epoch 0 and resumed ends with exactly the weights of the uninterrupted run."""
    import torch

    from modyolo.api import train
    from modyolo.engine.callbacks import Callbacks
    from modyolo.engine.checkpoint import load_checkpoint
    from modyolo.engine.config import TrainConfig
    from modyolo.engine.trainer import Trainer
    from modyolo.eval.validator import validate

    cfg, _ = load_model_yaml("yolov5n.yaml")
    cfg = {**copy.deepcopy(cfg), "width_multiple": 0.125}
    hyp = {**load_hyp("scratch-low").to_dict(), "paste_in": 1.0}
    kw = dict(data=str(shapes_yaml), cfg=cfg, hyp=hyp, epochs=2, imgsz=64, batch_size=8, workers=0)
    kw.update(project=str(tmp_path / "runs"), verbose=False, noplots=True, seed=0)
    full = train(**{**kw, "name": "full"})

    def stop_after_first_epoch(trainer, epoch, row):
        if epoch == 0:
            raise KeyboardInterrupt

    cb = Callbacks()
    cb.add("on_fit_epoch_end", stop_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        Trainer(TrainConfig.from_dict({**kw, "name": "cut"}), cb, evaluator=validate).fit()
    resumed = train(**{**kw, "name": "cut", "resume": str(tmp_path / "runs" / "cut" / "weights" / "last.pt")})
    a, b = load_checkpoint(full.last), load_checkpoint(resumed.last)
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=0, atol=0, msg=f"{key} differs after resume")
