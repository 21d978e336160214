import torch

from modyolo.engine.assign import build_targets


def one_level_anchor(w, h):
    return torch.tensor([[[w, h]]], dtype=torch.float32)  # nl=1, na=1


def test_centre_cell_and_two_neighbours():
    # 10x10 grid; centre (3.3, 6.8) cells: in the left half in x -> left neighbour (x=2);
    # in the lower half in y -> the cell below (y=7).
    t = torch.tensor([[0, 2, 0.33, 0.68, 0.2, 0.3]])
    (lv,) = build_targets([(10, 10)], t, one_level_anchor(2.0, 3.0), anchor_t=4.0)
    cells = sorted(zip(lv.gx.tolist(), lv.gy.tolist()))
    assert cells == [(2, 6), (3, 6), (3, 7)]
    assert lv.cls.tolist() == [2, 2, 2] and lv.image.tolist() == [0, 0, 0]
    for gx, gy, box in zip(lv.gx.tolist(), lv.gy.tolist(), lv.box):
        torch.testing.assert_close(box, torch.tensor([3.3 - gx, 6.8 - gy, 2.0, 3.0]))
        assert -0.5 <= box[0] <= 1.5 and -0.5 <= box[1] <= 1.5


def test_anchor_ratio_filter_and_border():
    anchors = torch.tensor([[[1.0, 1.0], [8.0, 2.0]]])  # na=2
    # a wide 8x2-cell box matches only anchor 1 (ratio 8 to anchor 0 > 4); centre in cell 0 -> no left neighbour
    t = torch.tensor([[1, 0, 0.04, 0.56, 0.8, 0.2]])  # y=5.6: lower half -> also the cell below
    (lv,) = build_targets([(10, 10)], t, anchors, anchor_t=4.0)
    assert set(lv.anchor.tolist()) == {1}
    assert (lv.gx >= 0).all() and (lv.image == 1).all()
    torch.testing.assert_close(lv.anchor_wh, torch.tensor([[8.0, 2.0]]).expand(len(lv), 2))
    assert sorted(zip(lv.gx.tolist(), lv.gy.tolist())) == [(0, 5), (0, 6)]


def test_no_targets_and_levels():
    anchors = torch.rand(3, 3, 2) + 0.5
    levels = build_targets([(8, 8), (4, 4), (2, 2)], torch.zeros(0, 6), anchors, 4.0)
    assert len(levels) == 3 and all(len(lv) == 0 for lv in levels)
