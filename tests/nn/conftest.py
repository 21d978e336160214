import copy

import pytest

from modyolo.nn.graph import load_model_yaml


@pytest.fixture
def tiny_cfg():
    """yolov5n at width 0.125, nc=3: the suite's standard small model (a fresh dict each time)."""

    def make(name: str = "yolov5n.yaml", **overrides):
        cfg, _ = load_model_yaml(name)
        cfg = copy.deepcopy(cfg)
        cfg.update({"width_multiple": 0.125, "nc": 3})
        cfg.update(overrides)
        return cfg

    return make
