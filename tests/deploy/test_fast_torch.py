"""The eager path's automatic precision: bf16 + channels_last where native, fp32 by flag, same detections."""

from __future__ import annotations

import logging

import pytest
import torch

from modyolo.deploy.fast_torch import FastTorchModel, fast_model, pick
from modyolo.deploy.prepare import prepare_for_export

from .tiny import tiny_model


def test_bf16_channels_last_matches_fp32_within_tolerance():
    model = prepare_for_export(tiny_model("yolov5n.yaml", seed=1))
    x = torch.rand(2, 3, 128, 96, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref = model(x)
        out = FastTorchModel(prepare_for_export(tiny_model("yolov5n.yaml", seed=1)))(x)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    torch.testing.assert_close(out[..., :4], ref[..., :4], rtol=1e-2, atol=0.5)  # pixels
    torch.testing.assert_close(out[..., 4:], ref[..., 4:], rtol=0, atol=2e-2)  # scores
    # and the final detections agree: same count at detect's threshold, boxes within the same tolerance
    from modyolo.eval.nms import non_max_suppression

    a, b = (non_max_suppression(p, 0.3, 0.45)[0] for p in (ref, out))
    assert abs(len(a) - len(b)) <= max(1, len(a) // 10)


def test_auto_follows_the_cpu_and_fp32_is_a_flag(monkeypatch):
    import modyolo.engine.precision as precision

    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert pick("auto", cpu)[0] == "bf16" and pick("fp32", cpu)[0] == "fp32"
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert pick("auto", cpu)[0] == "fp32" and pick("bf16", cpu)[0] == "bf16"
    with pytest.raises(ValueError, match="--precision 'fp8'"):
        pick("fp8", cpu)
    model = tiny_model()
    assert fast_model(model, "fp32", cpu) is model


def test_detect_cli_logs_the_choice_and_fp32_flag(tmp_path, caplog):
    import cv2
    import numpy as np

    from modyolo.cli import main
    from modyolo.engine.checkpoint import save_checkpoint

    model = tiny_model("yolov5n.yaml")
    ckpt = save_checkpoint(tmp_path / "best.pt", model=model, epoch=0, names=["a", "b", "c"], model_yaml=model.yaml)
    cv2.imwrite(str(tmp_path / "im.jpg"), (np.random.default_rng(0).random((64, 80, 3)) * 255).astype(np.uint8))
    for flag, want in (("bf16", "inference precision: bf16, channels_last"), ("fp32", "inference precision: fp32")):
        with caplog.at_level(logging.INFO, logger="modyolo"):
            rc = main(
                [
                    "detect",
                    "--weights",
                    str(ckpt),
                    "--source",
                    str(tmp_path / "im.jpg"),
                    "--img",
                    "64",
                    "--precision",
                    flag,
                    "--project",
                    str(tmp_path / "runs"),
                    "--nosave",
                ]
            )
        assert rc == 0 and want in caplog.text
        caplog.clear()
