"""Helpers shared by the eval2 tests (a module of its own: conftest files are not importable)."""

from __future__ import annotations

import yaml


def tiny_cfg() -> dict:
    from modyolo.nn.graph import resolve_cfg_path

    cfg = yaml.safe_load(resolve_cfg_path("yolov5n.yaml").read_text())
    cfg["width_multiple"] = 0.125
    return cfg


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """``modyolo <argv>`` in-process -> (exit code, stdout, stderr)."""
    from modyolo.cli import main

    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err
