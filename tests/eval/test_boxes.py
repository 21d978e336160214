import numpy as np
import pytest
import torch
import torchvision

from modyolo.eval.boxes import box_iou, clip_boxes, scale_boxes, xywh2xyxy, xywhn2xyxy, xyxy2xywh, xyxy2xywhn


def test_xywh_xyxy_round_trip_torch_and_numpy():
    x = torch.tensor([[50.0, 40.0, 20.0, 10.0], [0.0, 0.0, 4.0, 6.0]])
    y = xywh2xyxy(x)
    assert torch.equal(y, torch.tensor([[40.0, 35.0, 60.0, 45.0], [-2.0, -3.0, 2.0, 3.0]]))
    assert torch.allclose(xyxy2xywh(y), x)
    xn = x.numpy()
    assert np.allclose(xyxy2xywh(xywh2xyxy(xn)), xn)
    assert torch.equal(x, torch.tensor([[50.0, 40.0, 20.0, 10.0], [0.0, 0.0, 4.0, 6.0]]))  # input untouched


def test_normalised_conversions_and_int_input():
    xyxy = xywhn2xyxy(np.array([[0.5, 0.5, 0.5, 0.25]]), w=200, h=100, padw=3, padh=7)
    assert np.allclose(xyxy, [[53.0, 44.5, 153.0, 69.5]])
    back = xyxy2xywhn(np.array([[50, 37.5, 150, 62.5]]), w=200, h=100)  # ints and floats mixed
    assert np.allclose(back, [[0.5, 0.5, 0.5, 0.25]])
    assert xywh2xyxy(torch.tensor([[4, 4, 2, 2]])).dtype == torch.float32


def test_box_iou_matches_torchvision():
    g = torch.Generator().manual_seed(0)
    a = xywh2xyxy(torch.rand(7, 4, generator=g) * torch.tensor([100, 100, 40, 40]) + 1)
    b = xywh2xyxy(torch.rand(5, 4, generator=g) * torch.tensor([100, 100, 40, 40]) + 1)
    assert torch.allclose(box_iou(a, b), torchvision.ops.box_iou(a, b), atol=1e-6)
    assert box_iou(a, b[:0]).shape == (7, 0)


def test_clip_boxes():
    b = torch.tensor([[-5.0, -1.0, 120.0, 30.0]])
    assert torch.equal(clip_boxes(b, (20, 100)), torch.tensor([[0.0, 0.0, 100.0, 20.0]]))
    assert np.array_equal(clip_boxes(b.numpy(), (20, 100)), np.array([[0.0, 0.0, 100.0, 20.0]], dtype=np.float32))


@pytest.mark.parametrize("h0,w0", [(480, 640), (640, 360), (100, 333)])
def test_scale_boxes_inverts_letterbox_on_non_square_images(h0, w0):
    size = 320
    gain = min(size / h0, size / w0)
    padw, padh = (size - w0 * gain) / 2, (size - h0 * gain) / 2
    orig = torch.tensor([[10.0, 20.0, w0 / 2, h0 / 2], [0.0, 0.0, w0, h0]])
    in_net = orig * gain + torch.tensor([padw, padh, padw, padh])
    assert torch.allclose(scale_boxes((size, size), in_net, (h0, w0)), orig, atol=1e-3)
    # with the loader's recorded (ratio, pad) the inverse is used verbatim
    rp = ((gain, gain), (padw, padh))
    assert torch.allclose(scale_boxes((size, size), in_net, (h0, w0), ratio_pad=rp), orig, atol=1e-3)


def test_bad_shape_says_what_to_do():
    with pytest.raises(ValueError, match=r"\[\.\.\., 4\]"):
        xywh2xyxy(torch.zeros(3, 6))
