import functools

import pytest
import torch

from modyolo.eval.boxes import box_iou, xywh2xyxy
from modyolo.eval.nms import NMS_METHODS, nms_prefix, non_max_suppression


def reference_nms(pred: torch.Tensor, conf_thres, iou_thres, multi_label, agnostic, max_det):
    """Straightforward greedy NMS written from the definition, one image ``[N, 5 + nc]``."""
    rows = []
    for r in pred.tolist():
        if r[4] <= conf_thres:
            continue
        scores = [s * r[4] for s in r[5:]]
        box = xywh2xyxy(torch.tensor(r[:4])).tolist()
        if multi_label:
            rows += [box + [s, float(c)] for c, s in enumerate(scores) if s > conf_thres]
        else:
            c = max(range(len(scores)), key=lambda k: scores[k])
            if scores[c] > conf_thres:
                rows.append(box + [scores[c], float(c)])
    rows.sort(key=lambda r: -r[4])
    t = torch.tensor(rows).reshape(-1, 6)
    iou = box_iou(t[:, :4], t[:, :4]).tolist()
    kept = []
    for i, r in enumerate(rows):
        if all((not agnostic and rows[k][5] != r[5]) or iou[i][k] <= iou_thres for k in kept):
            kept.append(i)
    return t[kept[:max_det]]


def random_pred(seed, b=2, n=300, nc=4, size=64.0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(b, n, 2, generator=g) * size
    wh = 4 + torch.rand(b, n, 2, generator=g) * size / 3
    scores = torch.rand(b, n, 1 + nc, generator=g)
    return torch.cat((xy, wh, scores), 2)


@functools.lru_cache
def reference_outputs(multi_label, agnostic):
    return [reference_nms(p, 0.2, 0.45, multi_label, agnostic, 40) for p in random_pred(1)]


def as_set(x):
    return {tuple(round(v, 4) for v in r) for r in x.tolist()}


@pytest.mark.parametrize("method", sorted(NMS_METHODS))
@pytest.mark.parametrize("multi_label,agnostic", [(False, False), (True, False), (True, True)])
def test_matches_reference(method, multi_label, agnostic):
    pred = random_pred(1)
    out = non_max_suppression(pred, 0.2, 0.45, multi_label=multi_label, agnostic=agnostic, max_det=40, method=method)
    for x, ref in zip(out, reference_outputs(multi_label, agnostic)):
        assert x.shape == ref.shape
        assert as_set(x) == as_set(ref)
        assert torch.all(x[:-1, 4] >= x[1:, 4])  # sorted by conf


def test_conf_is_obj_times_cls_and_multilabel_keeps_each_class():
    # one box, obj 0.5, classes 0.9 / 0.8 / 0.1 -> conf 0.45 / 0.40 / 0.05
    pred = torch.tensor([[[10.0, 10.0, 4.0, 4.0, 0.5, 0.9, 0.8, 0.1]]])
    single = non_max_suppression(pred, conf_thres=0.3)[0]
    assert single.shape == (1, 6) and single[0, 4].item() == pytest.approx(0.45) and single[0, 5] == 0
    assert torch.allclose(single[0, :4], torch.tensor([8.0, 8.0, 12.0, 12.0]))
    multi = non_max_suppression(pred, conf_thres=0.3, multi_label=True)[0]
    assert multi[:, 5].tolist() == [0.0, 1.0] and multi[:, 4].tolist() == pytest.approx([0.45, 0.40])
    assert non_max_suppression(pred, conf_thres=0.3, multi_label=True, agnostic=True)[0].shape[0] == 1
    assert non_max_suppression(pred, conf_thres=0.3, multi_label=True, classes=[1])[0][:, 5].tolist() == [1.0]


def test_max_det_max_nms_empty_and_tuple_input():
    pred = random_pred(2, b=3)
    pred[1, :, 4] = 0.0  # image 1: nothing passes
    out = non_max_suppression((pred, ["features"]), conf_thres=0.1, max_det=5)
    assert [o.shape for o in out] == [(5, 6), (0, 6), (5, 6)]
    # max_nms keeps only the most confident candidates before NMS
    capped = non_max_suppression(pred, conf_thres=0.1, max_nms=3, max_det=100)
    full = non_max_suppression(pred, conf_thres=0.1, max_det=100)
    assert capped[0].shape[0] <= 3 and capped[0][0].tolist() == full[0][0].tolist()


def test_prefix_grows_until_exact():
    g = torch.Generator().manual_seed(3)
    boxes = xywh2xyxy(
        torch.cat((torch.rand(3000, 2, generator=g) * 100, 10 + torch.rand(3000, 2, generator=g) * 30), 1)
    )
    scores = torch.rand(3000, generator=g)
    idxs = torch.randint(0, 3, (3000,), generator=g)
    for max_det in (1, 7, 60, 5000):  # tiny start prefixes force several growth steps
        got = nms_prefix(boxes, scores, idxs, 0.5, max_det, start=8)
        want = NMS_METHODS["batched"](boxes, scores, idxs, 0.5, max_det)
        assert torch.equal(got, want)


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(conf_thres=1.5), "conf_thres"),
        (dict(iou_thres=-0.1), "iou_thres"),
        (dict(max_det=0), "max_det"),
        (dict(method="fast"), "unknown method"),
    ],
)
def test_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        non_max_suppression(random_pred(0), **kw)
    with pytest.raises(ValueError, match="inference output"):
        non_max_suppression(torch.zeros(1, 10, 5))
