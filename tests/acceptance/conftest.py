"""A tiny generated dataset shared by the acceptance matrix (see configs.py for the configs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modyolo.data.synthetic import make_shapes_dataset


@pytest.fixture(scope="session")
def acceptance_data(tmp_path_factory) -> Path:
    """8 train / 4 val shapes images of 64-96 px (5 classes): two optimizer steps at batch 4."""
    return make_shapes_dataset(
        tmp_path_factory.mktemp("acceptance-shapes"), n_train=8, n_val=4, seed=0, img_size=(64, 96)
    )
