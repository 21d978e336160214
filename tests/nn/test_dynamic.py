"""Dynamic convolution: batched == per-sample loop, temperature schedule, batch 1, fuse, trace."""

import pytest
import torch
import torch.nn.functional as F

from modyolo.nn.blocks.dynamic import DynamicConv, DynamicConv2d, temperature_at
from modyolo.nn.hooks import TrainState, broadcast_train_state
from modyolo.nn.model import DetectionModel


def per_sample_reference(m: DynamicConv2d, x: torch.Tensor) -> torch.Tensor:
    """The definition, one sample at a time: softmax attention, then sum_k a_k W_k and sum_k a_k b_k."""
    outs = []
    for xi in x:
        xi = xi.unsqueeze(0)
        pooled = xi.mean((2, 3), keepdim=True)
        z = m.attention.fc2(F.relu(m.attention.fc1(pooled))).flatten()
        a = torch.softmax(z / m.temperature, 0)
        weight = sum(a[k] * m.weight[k] for k in range(m.K))
        bias = sum(a[k] * m.bias[k] for k in range(m.K)) if m.bias is not None else None
        outs.append(F.conv2d(xi, weight, bias, m.stride, m.padding, m.dilation, m.g))
    return torch.cat(outs)


@pytest.mark.parametrize("k,s,g", [(3, 1, 1), (3, 2, 2), (1, 1, 1)])
def test_batched_equals_per_sample_loop(k, s, g):
    torch.manual_seed(0)
    m = DynamicConv2d(8, 12, k, s, g=g)
    m.temperature.fill_(1.0)  # sharp attention, so a wrong sample/kernel pairing would show
    x = torch.randn(3, 8, 11, 9)
    torch.testing.assert_close(m(x), per_sample_reference(m, x), rtol=1e-5, atol=1e-5)


def test_samples_get_different_kernels():
    torch.manual_seed(0)
    m = DynamicConv2d(4, 4, 1)
    m.temperature.fill_(1.0)
    x = torch.randn(1, 4, 5, 5)
    pair = torch.cat([x, 3 * x.flip(1)])
    assert torch.allclose(m(pair)[:1], m(x), atol=1e-6)  # each sample only sees its own kernel


def test_temperature_schedule_through_the_train_state_hook():
    model = DetectionModel(
        {
            "nc": 2,
            "anchors": 3,
            "head": [],
            "backbone": [[-1, 1, "DynamicConv", [8, 3, 2]], [-1, 1, "Dynamic_conv2d", [8, 1, 1]]],
        }
    )
    seen = []
    for epoch in range(14):
        told = broadcast_train_state(model, TrainState(epoch=epoch, epochs=14))
        seen.append([float(m.temperature) for m in model.modules() if isinstance(m, DynamicConv2d)])
        assert told == 2
    assert [t[0] for t in seen] == [34, 31, 28, 25, 22, 19, 16, 13, 10, 7, 4, 1, 1, 1]
    assert all(a == b for a, b in seen)
    assert temperature_at(100) == 1.0
    state = model.state_dict()  # the annealed temperature travels with the weights
    fresh = DetectionModel(model.yaml)
    fresh.load_state_dict(state)
    assert float(fresh.model[1].temperature) == 1.0


def test_batch_one_inference_and_gradients_reach_every_kernel():
    torch.manual_seed(0)
    m = DynamicConv(6, 10, 3, 2)
    m.eval()
    with torch.inference_mode():
        assert m(torch.rand(1, 6, 16, 16)).shape == (1, 10, 8, 8)
    m.train()
    m(torch.rand(2, 6, 16, 16)).sum().backward()
    assert m.conv.weight.grad is not None and (m.conv.weight.grad.flatten(1).abs().sum(1) > 0).all()
    assert m.conv.attention.fc1.weight.grad.abs().sum() > 0


def test_fuse_folds_batchnorm_into_all_kernels_exactly():
    torch.manual_seed(0)
    m = DynamicConv(6, 10, 3, 1)
    m.train()
    m(torch.randn(4, 6, 8, 8) * 3 + 1)  # non-trivial running statistics
    m.eval()
    x = torch.randn(2, 6, 8, 8)
    with torch.no_grad():
        before = m(x)
        m.fuse()
        after = m(x)
    assert isinstance(m.bn, torch.nn.Identity)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)


def test_jit_trace_at_a_fixed_batch():
    torch.manual_seed(0)
    m = DynamicConv2d(4, 8, 3, 2).eval()
    x = torch.rand(2, 4, 16, 16)
    with torch.no_grad():
        traced = torch.jit.trace(m, x, check_trace=False)
        torch.testing.assert_close(traced(x * 0.5), m(x * 0.5))
