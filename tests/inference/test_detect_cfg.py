"""``detect`` on a bare state_dict: the message says to pass ``--cfg``, and ``--cfg`` works."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from modyolo.engine.checkpoint import load_checkpoint
from tiny_run import run_cli, tiny_cfg


def test_detect_bare_state_dict_with_cfg(checkpoint, shapes, tmp_path, capsys):
    ckpt = load_checkpoint(checkpoint)
    bare = tmp_path / "bare.pt"
    torch.save(dict(ckpt["model"]), bare)  # what a user exports with torch.save(model.state_dict())
    cfg = tiny_cfg()
    cfg["nc"] = len(ckpt["names"])
    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    image = sorted((Path(yaml.safe_load(Path(shapes).read_text())["path"]) / "images" / "val").glob("*.jpg"))[0]
    common = ["detect", "--weights", bare, "--source", image, "--img", "64", "--project", tmp_path / "runs"]

    rc, _, err = run_cli(common, capsys)
    assert rc == 1 and "bare state_dict" in err and f"--weights {bare} --cfg" in err

    rc, _, err = run_cli([*common, "--cfg", cfg_path], capsys)
    assert rc == 0, err
    assert (tmp_path / "runs" / "exp" / image.name).is_file()
