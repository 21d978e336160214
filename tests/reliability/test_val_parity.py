"""A .pt and its fixed-shape .onnx see the same pixels only when the .pt is validated with --no-rect.

The finding behind issue 16's "R 0.188 vs 0.125": ``val best.pt`` uses rectangular batches (shapes
set by --batch-size), a fixed-shape export square letterboxes. With ``--no-rect`` both score the
same candidates; the CLI refuses ``--rect`` for a fixed-shape model instead of silently ignoring it.
"""

from __future__ import annotations

import logging

import pytest
from tests.reliability.cases import Env


@pytest.fixture
def onnx_path(env: Env):
    pytest.importorskip("onnxruntime")
    from modyolo.deploy.export import export

    return export(str(env.ckpt), include=("onnx",), imgsz=64, out_dir=env.work / "export")["onnx"]


def _stats(weights, env: Env, rect, batch_size=4):
    from modyolo.inference.predictor import load_model_for_cli
    from modyolo.inference.val_run import validate_model
    from modyolo.logs import cli_logging

    model, names, meta = load_model_for_cli(str(weights), device="cpu")
    with cli_logging(logging.WARNING):  # the run log it attaches is closed after, as the CLI does
        out = validate_model(
            model,
            names,
            meta,
            data=env.data,
            imgsz=64,
            batch_size=batch_size,
            workers=0,
            plots=False,
            diagnose=False,
            progress=False,
            project=env.work / "val",
            rect=rect,
            conf_thres=1e-4,
        )
    return out.result.stats


def test_pt_no_rect_scores_what_the_onnx_scores(env: Env, onnx_path):
    onnx = _stats(onnx_path, env, None)
    square = _stats(env.ckpt, env, False)
    rect = _stats(env.ckpt, env, None)
    assert square["candidates_before_nms"] == onnx["candidates_before_nms"]
    assert square["max_objectness"] == pytest.approx(onnx["max_objectness"], abs=1e-4)
    # the shapes dataset's images are not square: rectangular batches give the model other inputs
    assert rect["candidates_before_nms"] != onnx["candidates_before_nms"]


def test_val_rect_refused_for_a_fixed_shape_model(env: Env, onnx_path, capsys):
    from modyolo.cli import main

    rc = main(
        [
            "val",
            "--weights",
            str(onnx_path),
            "--data",
            str(env.data),
            "--img",
            "64",
            "--workers",
            "0",
            "--rect",
            "--project",
            str(env.work / "v"),
            "--no-plots",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1 and "--rect needs a .pt or an export with --dynamic" in err and "Traceback" not in err
    assert (
        main(
            [
                "val",
                "--weights",
                str(env.ckpt),
                "--data",
                str(env.data),
                "--img",
                "64",
                "--workers",
                "0",
                "--no-rect",
                "--project",
                str(env.work / "v"),
                "--no-plots",
            ]
        )
        == 0
    )
