"""Shared fixtures for the val / detect / API tests: a tiny dataset and a checkpoint trained on it.

The checkpoint comes from ``modyolo.engine.trainer.train`` (1 epoch, 2 batches, 64 px, a yolov5n
at width 0.125), built once per session: the tests need real ``modyolo train`` output, not quality.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from eval2_helpers import tiny_cfg

from modyolo.data.synthetic import make_shapes_dataset


@pytest.fixture(scope="session")
def shapes(tmp_path_factory) -> Path:
    """Data YAML of 8 train / 4 val shapes images, 64-128 px a side (non-square)."""
    return make_shapes_dataset(tmp_path_factory.mktemp("shapes"), n_train=8, n_val=4, img_size=(64, 128))


@pytest.fixture(scope="session")
def checkpoint(shapes, tmp_path_factory) -> Path:
    from modyolo.engine.trainer import train

    project = tmp_path_factory.mktemp("train")
    result = train(data=str(shapes), cfg=tiny_cfg(), epochs=1, imgsz=64, batch_size=4, workers=0, max_batches=2,
                   verbose=False, noplots=True, project=str(project))
    assert result.last is not None and result.last.is_file()
    return result.last
