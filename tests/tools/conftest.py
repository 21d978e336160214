"""Shared fixtures for the tools tests: a tiny generated shapes dataset and tiny model YAMLs."""

import copy
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from modyolo.data.synthetic import make_shapes_dataset
from modyolo.nn.graph import load_model_yaml


@pytest.fixture(scope="session")
def tiny_shapes(tmp_path_factory) -> str:
    """Data YAML of 8 train / 4 val shapes images, 64-96 px: enough to run every stage, not to learn."""
    return str(
        make_shapes_dataset(tmp_path_factory.mktemp("tools-shapes"), n_train=8, n_val=4, seed=0, img_size=(64, 96))
    )


def _tiny_cfg(name: str = "yolov5n.yaml", width: float = 0.125) -> dict:
    cfg, _ = load_model_yaml(name)
    cfg = copy.deepcopy(cfg)
    cfg["width_multiple"] = width
    cfg.pop("yaml_file", None)  # errors then name the tiny file, not the shipped one
    return cfg


@pytest.fixture(scope="session")
def tiny_cfg_file(tmp_path_factory) -> Callable[..., str]:
    """``tiny_cfg_file("yolov5n.yaml", width=0.125, replace=None)`` -> path of a narrowed copy of a
    shipped model YAML (a forward at 64 px takes milliseconds); ``replace=(old, new)`` edits the text
    once, e.g. to break it on purpose."""
    folder = tmp_path_factory.mktemp("tiny-cfgs")

    def make(
        name: str = "yolov5n.yaml",
        width: float = 0.125,
        replace: tuple[str, str] | None = None,
        stem: str | None = None,
    ) -> str:
        text = yaml.safe_dump(_tiny_cfg(name, width), sort_keys=False)
        if replace:
            text = text.replace(replace[0], replace[1], 1)
        path = Path(folder) / f"{stem or 'tiny-' + Path(name).stem}.yaml"
        path.write_text(text)
        return str(path)

    return make
