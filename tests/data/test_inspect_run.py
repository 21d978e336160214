"""``modyolo data verify|show``: the CLI prints what ``modyolo.data.inspect_run`` returns."""

from __future__ import annotations

import cv2
import pytest

from modyolo.data.inspect_run import verify_dataset
from tiny_run import run_cli


def test_verify_every_split_and_one(shapes_yaml, capsys):
    rc, out, _ = run_cli(["data", "verify", "--data", shapes_yaml, "--no-cache"], capsys)
    lines = out.splitlines()
    assert rc == 0 and lines[0].startswith("train: ") and lines[0].endswith("-> ok"), out
    assert any(line.startswith("val: ") for line in lines)
    verdicts = verify_dataset(str(shapes_yaml), "val")
    assert [v.split for v in verdicts] == ["val"] and not verdicts[0].failed
    with pytest.raises(ValueError, match="key 'test': no such split"):
        verify_dataset(str(shapes_yaml), "test")


def test_verify_fails_on_corrupt_files(faulty_dir, tmp_path, capsys):
    data = tmp_path / "faulty.yaml"
    data.write_text(f"train: {faulty_dir}\nval: {faulty_dir}\nnc: 3\nnames: [a, b, c]\n")
    rc, out, _ = run_cli(["data", "verify", "--data", data, "--split", "train"], capsys)
    assert rc == 1 and "FAIL: " in out.splitlines()[0] and "corrupt file(s) would be skipped" in out
    assert len(out.splitlines()) > 1  # the per-file problems follow the summary


def test_show_writes_a_grid(shapes_yaml, tmp_path, capsys):
    out_png = tmp_path / "grid" / "samples.png"
    argv = ["data", "show", "--data", shapes_yaml, "--img", "64", "--n", "4", "--out", out_png]
    rc, out, _ = run_cli(argv, capsys)
    assert rc == 0 and out.strip() == f"wrote {out_png} (4 samples)"
    grid = cv2.imread(str(out_png))
    assert grid.shape == (640, 640, 3)  # 2 x 2 tiles of 320 px
