"""Every shipped model config works on the default path, as a user runs it: ``modyolo train`` for
one epoch with default flags, then ``modyolo val`` on best.pt and ``modyolo export`` on last.pt.

The configs are collected from the package at test time (``configs.py``), scaled down (depth
<= 0.33, width <= 0.25) and trained at 64 px on 8 generated images with batch 4: only what a
user must give (``--data --cfg --epochs``) plus that scale-down. Nothing else is passed, so a
default that breaks a config (memory format, precision, optimizer, autoanchor, plots) fails here.

One config runs as real ``modyolo`` processes (the console script, as a user types it); the others
call ``modyolo.cli.main`` in-process, which saves the interpreter and torch start-up per verb.
Rows with a TorchVision/Timm backbone (fixed widths) are marked slow; CI runs them too. Configs
that are one file once scaled down (yolov5n/s/m/l/x) run once, under an id naming them all.

Set ``MODYOLO_ACCEPTANCE_SUMMARY=path.jsonl`` to append one line per config with what its run
printed (params, train img/s, val mAP, seconds): the figures for a release note.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from modyolo.cli import main as cli_main
from modyolo.nn.graph import shipped_configs

from .configs import is_heavy, matrix_params, scaled_copy

IMG = "64"
BATCH = "4"
# The val table's summary row: "all <images> <instances> <P> <R> <mAP50> <mAP50-95>".
ALL_ROW = re.compile(r"^\s*all\s+4\s+\d+\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$", re.M)
IMG_PER_S = re.compile(r"([\d.]+) train img/s")


def _process_config() -> str:
    """The config that runs through real processes: yolov5n when shipped, else the first light one."""
    names = shipped_configs()
    return "yolov5n.yaml" if "yolov5n.yaml" in names else next(n for n in names if not is_heavy(n))


class Cli:
    """Runs ``modyolo <verb> ...`` in ``cwd`` either as a process or through ``cli.main``."""

    def __init__(self, cwd: Path, as_process: bool, capfd: pytest.CaptureFixture):
        self.cwd, self.as_process, self.capfd = cwd, as_process, capfd

    def __call__(self, *argv: str) -> tuple[int, str]:
        """(exit code, stdout + stderr)."""
        if self.as_process:
            script = Path(sys.executable).with_name("modyolo")
            cmd = [str(script)] if script.is_file() else [sys.executable, "-m", "modyolo"]
            env = {**os.environ, "MODYOLO_THREADS": "1", "OMP_NUM_THREADS": "1"}  # CI: 2 workers on 2 cores
            proc = subprocess.run(cmd + list(argv), cwd=self.cwd, env=env, capture_output=True, text=True, timeout=600)
            return proc.returncode, proc.stdout + proc.stderr
        self.capfd.readouterr()
        try:
            rc = cli_main(list(argv))
        except SystemExit as e:  # argparse's usage errors exit 2, as the console script would
            rc = e.code if isinstance(e.code, int) else 1
        out, err = self.capfd.readouterr()
        return rc, out + err


def _params(state_dict: dict) -> int:
    """Learnable parameters in a saved state_dict (BatchNorm statistics and counters left out)."""
    skip = ("running_mean", "running_var", "num_batches_tracked")
    return sum(
        v.numel()
        for k, v in state_dict.items()
        if torch.is_tensor(v)
        and v.is_floating_point()
        and not k.endswith(skip)
        and not k.endswith((".anchors", ".stride", "anchor_grid"))
    )


# Inputs an ONNX graph with detections out (NMS appended, or an NMS-free head) takes besides the
# images, each float32[1] (modyolo.deploy.nms_graph.INPUTS), with `modyolo detect`'s values.
THRESHOLD_INPUTS = {"conf_thres": 0.25, "iou_thres": 0.45, "multi_label": 0.0}


def _check_onnx(path: Path) -> list[tuple[int, ...]]:
    """The exported file loads in ONNX Runtime and runs on an image batch of its declared shape."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    image, *extra = session.get_inputs()
    shape = [
        d if isinstance(d, int) and d > 0 else (1 if i == 0 else int(IMG) if i > 1 else 3)
        for i, d in enumerate(image.shape)
    ]
    feed = {image.name: np.random.default_rng(0).random(shape, dtype=np.float32)}
    for inp in extra:
        assert inp.name in THRESHOLD_INPUTS, f"{path}: unexpected input {inp.name!r} {inp.shape}"
        feed[inp.name] = np.array([THRESHOLD_INPUTS[inp.name]], np.float32)
    outputs = session.run(None, feed)
    assert outputs and all(np.isfinite(o).all() for o in outputs), f"{path}: non-finite outputs"
    return [tuple(o.shape) for o in outputs]


def _summarise(name: str, **figures) -> None:
    target = os.environ.get("MODYOLO_ACCEPTANCE_SUMMARY")
    if target:
        with open(target, "a", encoding="utf-8") as f:
            f.write(json.dumps({"config": name, **figures}) + "\n")


@pytest.mark.parametrize("names", matrix_params())
def test_default_train_val_export(names, acceptance_data, tmp_path, monkeypatch, capfd):
    name = names[0]  # the others are the same file once scaled down (configs.matrix_params)
    cfg = scaled_copy(name, tmp_path / "cfg")
    monkeypatch.chdir(tmp_path)  # runs/ lands here, as under a user's working directory
    cli = Cli(tmp_path, as_process=_process_config() in names, capfd=capfd)
    data = str(acceptance_data)
    t0 = time.perf_counter()

    # 1. Train one epoch with default flags.
    rc, out = cli("train", "--data", data, "--cfg", str(cfg), "--epochs", "1", "--img", IMG, "--batch-size", BATCH)
    assert rc == 0, f"modyolo train --cfg {name} (scaled) exited {rc}:\n{out[-4000:]}"
    run = tmp_path / "runs" / "train" / "exp"
    best, last = run / "weights" / "best.pt", run / "weights" / "last.pt"
    assert best.is_file() and last.is_file(), f"{run}: weights missing: {sorted(p.name for p in run.rglob('*'))}"
    with open(run / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and "mAP50-95" in rows[0], f"{run / 'results.csv'}: {rows}"
    assert math.isfinite(float(rows[0]["mAP50-95"]))
    ckpt = torch.load(last, map_location="cpu", weights_only=True)  # plain data, as the project promises
    params = _params(ckpt["model"])
    assert params > 0 and ckpt["epoch"] == 0
    speed = IMG_PER_S.search(out)
    t_train = time.perf_counter() - t0

    # 2. Validate best.pt: the per-class table's "all" row with P, R, mAP50, mAP50-95.
    rc, out = cli("val", "--weights", str(best), "--data", data, "--img", IMG)
    assert rc == 0, f"modyolo val --weights {best} ({name}) exited {rc}:\n{out[-4000:]}"
    row = ALL_ROW.search(out)
    assert row, f"modyolo val ({name}) printed no 'all' row with P R mAP50 mAP50-95:\n{out[-4000:]}"
    p, r, map50, map50_95 = (float(v) for v in row.groups())
    assert all(0.0 <= v <= 1.0 for v in (p, r, map50, map50_95))

    # 3. Export last.pt to ONNX (default format) and load the file in ONNX Runtime.
    rc, out = cli("export", "--weights", str(last), "--img", IMG)
    assert rc == 0, f"modyolo export --weights {last} ({name}) exited {rc}:\n{out[-4000:]}"
    onnx_files = sorted(run.rglob("*.onnx"))
    assert onnx_files, f"modyolo export ({name}) wrote no .onnx under {run}:\n{out[-2000:]}"
    shapes = _check_onnx(onnx_files[0])

    _summarise(
        "+".join(names),
        params=params,
        train_img_s=float(speed.group(1)) if speed else None,
        P=p,
        R=r,
        mAP50=map50,
        mAP50_95=map50_95,
        onnx_outputs=shapes,
        train_s=round(t_train, 1),
        total_s=round(time.perf_counter() - t0, 1),
        process=cli.as_process,
    )
