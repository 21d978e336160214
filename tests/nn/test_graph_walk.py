"""One walk of the layer graph (``DetectionModel.run_rows``) that the dry run and the per-layer
profile observe; one box decode; one anchor-order check (issue 13)."""

from __future__ import annotations

import torch

from modyolo.nn.head import check_anchor_order, decode_xywh
from modyolo.nn.model import DetectionModel
from tiny_run import run_cli


def test_observers_see_every_row_once_and_the_forward_is_unchanged(tiny_cfg):
    model = DetectionModel(tiny_cfg()).eval()
    x = torch.rand(1, 3, 64, 64)
    seen: list[tuple[int, str]] = []

    def observe(i, module, inp):
        seen.append((i, type(inp).__name__))
        return module(inp)

    with torch.no_grad():
        plain = model(x)[0]
        observed = model.run_rows(x, observe)[0]
    assert torch.equal(plain, observed)
    assert [i for i, _ in seen] == list(range(len(model.model)))
    # a row whose `from` is a list gets a list, others a tensor
    for (i, kind), layer in zip(seen, model.layers_meta):
        assert kind == ("list" if isinstance(layer.from_, list) else "Tensor"), i


def test_from_is_resolved_once_by_the_builder(tiny_cfg):
    model = DetectionModel(tiny_cfg())
    for layer, report, route in zip(model.layers_meta, model.report, model.routes):
        assert report.sources == layer.sources  # the dry run reads the builder's indices
        if isinstance(route, list):
            assert [layer.index - 1 if j == -2 else j for j in route] == layer.sources
        elif route is not None:
            assert [route] == layer.sources
        else:
            assert layer.sources == [layer.index - 1]
    concat = next(layer for layer in model.layers_meta if layer.name == "Concat")
    assert concat.sources == [concat.index - 1, concat.from_[1]]  # yolov5n's [-1, 6]: previous row and row 6


def test_profile_per_layer_through_the_cli(capsys, tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(_tiny_yaml())
    rc, out, _ = run_cli(["profile", "--cfg", cfg, "--img", "64", "--per-layer", "--runs", "1"], capsys)
    assert rc == 0
    table = out.split("\n\n")[-1].strip().splitlines()
    rows = [line for line in table[1:-1] if line.strip()]
    n_rows = len(DetectionModel(str(cfg)).model)
    assert len(rows) == n_rows, out
    assert rows[0].split()[:2] == ["0", "Conv"] and rows[-1].split()[1] == "Detect"
    assert table[-1].startswith("total ")


def _tiny_yaml() -> str:
    import yaml

    from tiny_run import tiny_cfg

    return yaml.safe_dump(tiny_cfg())


def test_decode_is_the_head_decode_bit_for_bit(tiny_cfg):
    model = DetectionModel(tiny_cfg()).eval()
    head = model.head
    raw = torch.randn(2, head.na, 4, 6, head.no)
    got = head.decode(raw, 1)
    s = raw.sigmoid()
    gy, gx = torch.meshgrid(torch.arange(4.0), torch.arange(6.0), indexing="ij")
    grid = torch.stack((gx, gy), 2).view(1, 1, 4, 6, 2) - 0.5
    anchor_px = (head.anchors[1] * head.stride[1]).view(1, head.na, 1, 1, 2)
    xy = (s[..., :2] * 2 + grid) * head.stride[1]  # yolov5's formula, written out
    wh = (s[..., 2:4] * 2) ** 2 * anchor_px
    want = torch.cat((xy, wh, s[..., 4:]), 4).view(2, -1, head.no)
    assert torch.equal(got, want)


def test_decode_in_cells_is_the_loss_formula_bit_for_bit():
    t = torch.randn(1000, 4) * 4
    anchor = torch.rand(1000, 2) * 5
    xy, wh = decode_xywh(t[:, :2].sigmoid(), t[:, 2:].sigmoid(), anchor)
    assert torch.equal(xy, t[:, :2].sigmoid() * 2 - 0.5)
    assert torch.equal(wh, (t[:, 2:].sigmoid() * 2) ** 2 * anchor)


def test_anchor_order_is_checked_and_flipped_in_pixels(tiny_cfg):
    # larger anchors listed for P3 than for P5, each still within the per-level size check
    listed = [[40, 40] * 3, [35, 35] * 3, [30, 30] * 3]
    head = DetectionModel(tiny_cfg(anchors=listed)).head
    pixels = head.anchors * head.stride.view(-1, 1, 1)
    # each level gets the listed pixel sizes in stride order (a flip in grid units would give
    # P3 the P5 anchors scaled by 8/32: 7.5 px)
    want = torch.tensor(listed, dtype=torch.float32).view(3, 3, 2).flip(0)
    torch.testing.assert_close(pixels, want, rtol=0, atol=0)
    assert not check_anchor_order(head)
