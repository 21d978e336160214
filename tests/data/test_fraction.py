"""``--fraction``: a seeded random subset of the training images (it used to take the first N)."""

from pathlib import Path

import pytest

from modyolo.data.dataset import DetectionDataset
from modyolo.data.dataset_yaml import load_data_config


def _train(shapes_yaml: Path, **kw) -> list[str]:
    cfg = load_data_config(str(shapes_yaml))
    return DetectionDataset(cfg.train, img_size=64, progress=False, **kw).im_files


def test_fraction_is_a_seeded_random_subset(shapes_yaml):
    everything = _train(shapes_yaml)
    half = _train(shapes_yaml, fraction=0.5, seed=0)
    assert len(everything) == 16 and len(half) == 8
    assert set(half) < set(everything) and half == sorted(half, key=everything.index)  # order kept
    assert half == _train(shapes_yaml, fraction=0.5, seed=0)  # same seed, same subset
    subsets = {tuple(_train(shapes_yaml, fraction=0.5, seed=s)) for s in range(6)}
    assert len(subsets) > 1  # the seed decides (taking the first N gave one subset for every seed)


def test_fraction_out_of_range_names_the_flag(shapes_yaml):
    with pytest.raises(ValueError, match=r"--fraction\) must be in \(0, 1\]"):
        _train(shapes_yaml, fraction=0.0)


def test_train_cli_uses_seed_for_the_subset(shapes_yaml, tmp_path):
    import argparse

    from modyolo.cli.train import add_arguments, config_from_args
    from modyolo.engine.trainer import Trainer

    def subset(seed: int) -> list[str]:
        p = argparse.ArgumentParser()
        add_arguments(p)
        args = p.parse_args(
            [
                "--data",
                str(shapes_yaml),
                "--cfg",
                "yolov5n.yaml",
                "--img",
                "64",
                "--epochs",
                "1",
                "--batch-size",
                "4",
                "--workers",
                "0",
                "--fraction",
                "0.5",
                "--seed",
                str(seed),
                "--project",
                str(tmp_path),
                "--name",
                f"s{seed}",
                "--noplots",
                "--noautoanchor",
            ]
        )
        return Trainer(config_from_args(args)).dataset.im_files

    assert subset(1) == _train(shapes_yaml, fraction=0.5, seed=1)
    assert subset(2) == _train(shapes_yaml, fraction=0.5, seed=2)
