"""A tiny trained run for the val / detect / API tests: the model config, the CLI in-process, and the
session fixtures (``shapes``, ``checkpoint``) that tests/conftest.py exposes (conftest files are not
importable, so the code lives here)."""

from __future__ import annotations

from pathlib import Path

import yaml


def tiny_cfg(name: str = "yolov5n.yaml", width: float = 0.125, depth: float | None = None) -> dict:
    """A shipped model YAML narrowed to ``width`` (and ``depth``): a forward at 64 px takes milliseconds."""
    from modyolo.nn.graph import resolve_cfg_path

    cfg = yaml.safe_load(resolve_cfg_path(name).read_text())
    cfg["width_multiple"] = width
    if depth is not None:
        cfg["depth_multiple"] = depth
    return cfg


def tiny_cfg_file(folder: Path, name: str = "yolov5n.yaml", width: float = 0.125, depth: float | None = None) -> str:
    """:func:`tiny_cfg` written to ``folder/tiny-<name>``; its path, for ``--cfg``."""
    path = Path(folder) / f"tiny-{Path(name).name}"
    path.write_text(yaml.safe_dump(tiny_cfg(name, width, depth), sort_keys=False))
    return str(path)


def tiny_train_argv(data: str, cfg: str, project: Path, *extra: str, epochs: int = 1) -> list[str]:
    """``modyolo train`` flags for a tiny run: 64 px, batch 4, no workers, no plots, into ``project``."""
    return [
        "train",
        "--data",
        str(data),
        "--cfg",
        str(cfg),
        "--img",
        "64",
        "--epochs",
        str(epochs),
        "--batch-size",
        "4",
        "--workers",
        "0",
        "--project",
        str(project),
        "--noplots",
        *extra,
    ]


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """``modyolo <argv>`` in-process -> (exit code, stdout, stderr)."""
    from modyolo.cli import main

    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def make_shapes(tmp_path_factory) -> Path:
    """Data YAML of 8 train / 4 val shapes images, 64-128 px a side (non-square)."""
    from modyolo.data.synthetic import make_shapes_dataset

    return make_shapes_dataset(tmp_path_factory.mktemp("shapes"), n_train=8, n_val=4, img_size=(64, 128))


def train_checkpoint(shapes: Path, tmp_path_factory) -> Path:
    """``last.pt`` of ``modyolo.train`` (1 epoch, 2 batches, 64 px, a yolov5n at width
    0.125): the tests need real ``modyolo train`` output, not quality."""
    from modyolo.api import train

    project = tmp_path_factory.mktemp("train")
    result = train(
        data=str(shapes),
        cfg=tiny_cfg(),
        epochs=1,
        imgsz=64,
        batch_size=4,
        workers=0,
        max_batches=2,
        verbose=False,
        noplots=True,
        project=str(project),
    )
    assert result.last is not None and result.last.is_file()
    return result.last
