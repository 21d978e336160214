"""Every registered block builds from its own YAML example at two widths, with the channels it
declares and the stride it promises. New blocks are covered by registering them."""

import pytest
import torch

from modyolo.nn.graph import build_layers  # noqa: F401  (imports every block family)
from modyolo.nn.model import DetectionModel
from modyolo.nn.registry import BLOCKS

STEM = [-1, 1, "Conv", [32, 3, 1]]
IMG = 64


def contract_cases():
    for name, block in BLOCKS.items():
        yield pytest.param(name, block, id=name)


def build_example(block, width: float) -> DetectionModel:
    example = block.yaml_example
    cfg = {
        "nc": 2,
        "depth_multiple": 1.0,
        "width_multiple": width,
        "anchors": 3,
        "backbone": [STEM, *example["rows"]],
        "head": [],
    }
    return DetectionModel(cfg)


@pytest.mark.parametrize("name,block", list(contract_cases()))
def test_every_block_has_an_example(name, block):
    assert isinstance(getattr(block, "yaml_example", None), dict), (
        f"{name} must define yaml_example = {{'rows': [...], 'stride': S}} for the contract test"
    )
    assert example_names_block(block), f"{name}'s yaml_example must end with a row using it"


def example_names_block(block) -> bool:
    last = block.yaml_example["rows"][-1][2]
    return BLOCKS.get(last) is block


@pytest.mark.parametrize("width", [0.25, 0.5])
@pytest.mark.parametrize("name,block", list(contract_cases()))
def test_block_contract(name, block, width):
    model = build_example(block, width)
    last = model.report[-1]
    module = model.model[-1]
    x = torch.rand(2, 3, IMG, IMG)
    model.train()
    out = model(x)
    if block.yaml_example.get("stride") is None:  # a head: its output is checked by its own tests
        return
    outs = out if isinstance(out, (list, tuple)) else [out]
    channels = last.channels if isinstance(last.channels, list) else [last.channels]
    strides = block.yaml_example["stride"]
    strides = strides if isinstance(strides, list) else [strides]
    assert [o.shape[1] for o in outs] == channels, f"{name}: channels differ from what from_row declared"
    assert [IMG / o.shape[2] for o in outs] == [float(s) for s in strides], f"{name}: stride"
    assert all(o.shape[0] == 2 for o in outs)
    if any(p.requires_grad for p in module.parameters()):
        sum(o.float().mean() for o in outs).backward()
        assert any(p.grad is not None for p in module.parameters())
