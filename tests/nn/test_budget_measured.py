"""The activation-memory estimate (nn/budget.py) against reality: one real training step in a fresh process.

The child builds the model, makes the estimate, then runs what the trainer runs for one batch (forward,
the head's loss, backward, gradient clipping, an SGD step, the EMA update) and reports how far its peak
RSS rose above the RSS before the step. The peak is ``VmHWM`` from ``/proc/self/status``, the high-water
mark of this process's own memory: ``ru_maxrss`` is not, because Linux carries the parent's RSS at
fork into it across ``exec`` (under a 2 GB pytest worker every child "peaked" at 2 GB). The
estimate of what training adds (``TrainMemory.needed``) must be within 0.5x-2x of that; the figures
measured are in the budget module's docstring. Run as a script to print the table:
``python tests/nn/test_budget_measured.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

STEP = r"""
import json, os, sys
import torch
torch.set_num_threads(1)
from modyolo.engine.ema import ModelEMA
from modyolo.engine.hyp import load_hyp
from modyolo.engine.optim import build_optimizer
from modyolo.nn.budget import estimate_train_memory
from modyolo.nn.graph import load_model_yaml
from modyolo.nn.heads import loss_kind
from modyolo.nn.model import DetectionModel

name, width, batch, img = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
cfg, _ = load_model_yaml(name)
cfg["width_multiple"] = width
model = DetectionModel(cfg, nc=5)
est = estimate_train_memory(model, batch, img, optimizer="SGD")
hyp = load_hyp("")
if loss_kind(model.head) == "anchor_free":
    from modyolo.engine.loss_af import AnchorFreeLoss
    loss_fn = AnchorFreeLoss.from_hyp(model, hyp)
else:
    from modyolo.engine.loss import DetectionLoss
    loss_fn = DetectionLoss(model, hyp)
opt = build_optimizer(model, "SGD", 0.01, 0.937, 5e-4)
g = torch.Generator().manual_seed(0)
targets = torch.rand(4 * batch, 6, generator=g)  # (image, class, cx, cy, w, h): 4 boxes an image
targets[:, 0] = torch.arange(4 * batch) % batch
targets[:, 1] = (targets[:, 1] * 5).floor()
targets[:, 4:] = targets[:, 4:] * 0.3 + 0.05
def high_water():  # bytes; this process's own peak RSS
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
page = os.sysconf("SC_PAGE_SIZE")
with open("/proc/self/statm") as f:
    base = int(f.read().split()[1]) * page
peak_before = high_water()
ema = ModelEMA(model)
imgs = torch.rand(batch, 3, img, img, generator=g)
loss, _ = loss_fn(model(imgs), targets)
loss.backward()
torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
opt.step()
opt.zero_grad()
ema.update(model)
peak = high_water()
print(json.dumps({"estimate": est.needed, "per_image": est.per_image, "state": est.state,
                  "measured": peak - base, "peak_before": peak_before, "peak": peak}))
"""

# (model YAML, width_multiple, batch, image size): sized so the step's memory dwarfs the process's
# earlier peaks (the build's dry run), which the high-water mark would otherwise report
CONFIGS = [
    ("yolov5n.yaml", 0.25, 8, 320),
    ("yolov5-mobilenetv2.yaml", 0.25, 8, 256),
    ("yolov8.yaml", 0.25, 8, 256),
]


def measure(name: str, width: float, batch: int, img: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, "-c", STEP, name, str(width), str(batch), str(img)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["ratio"] = out["estimate"] / out["measured"]
    return out


@pytest.mark.slow
@pytest.mark.parametrize(("name", "width", "batch", "img"), CONFIGS)
def test_estimate_within_a_band_of_a_measured_step(name, width, batch, img):
    m = measure(name, width, batch, img)
    assert m["peak"] > 1.2 * m["peak_before"], m  # the step made the peak (the high-water mark never falls)
    assert 0.5 <= m["ratio"] <= 2.0, m


if __name__ == "__main__":
    for cfg in CONFIGS:
        m = measure(*cfg)
        print(
            f"{cfg[0]:<26} w={cfg[1]} batch={cfg[2]} img={cfg[3]}: estimate {m['estimate'] / 2**20:,.0f} MiB, "
            f"measured {m['measured'] / 2**20:,.0f} MiB, ratio {m['ratio']:.2f}"
        )
