"""Write the YOLOv7 parity reference: a state_dict, an input and the outputs of yolov7's own code.

Runs the WongKinYiu/yolov7 repository (GPL, never copied here) from a checkout given by
``--repo`` or ``$YOLOV7_REPO``; nothing of it is imported by modyolo or its tests. The model is
yolov7's ``cfg/training/yolov7-tiny.yaml`` at nc=2 and width_multiple 0.125, so the reference stays
small (weights stored as float16 and used as float16-rounded float32 on both sides):

    YOLOV7_REPO=/path/to/yolov7 python benchmarks/v7_parity_reference.py
    # -> tests/nn/data/yolov7_tiny_parity.npz, read by tests/nn/test_yolov7_parity.py

Prints one JSON line (file, size, parameters, output shapes).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import yaml

OUT = Path(__file__).resolve().parents[1] / "tests" / "nn" / "data" / "yolov7_tiny_parity.npz"
NC, WIDTH, SIZE = 2, 0.125, 64


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", default=os.environ.get("YOLOV7_REPO"), help="yolov7 checkout (or $YOLOV7_REPO)")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    if not args.repo or not Path(args.repo, "models", "yolo.py").is_file():
        sys.exit("pass --repo (or set YOLOV7_REPO) to a checkout of github.com/WongKinYiu/yolov7")
    sys.path.insert(0, str(Path(args.repo).resolve()))
    warnings.simplefilter("ignore")
    from models.yolo import Model  # yolov7's, from the checkout above

    cfg = yaml.safe_load(Path(args.repo, "cfg", "training", "yolov7-tiny.yaml").read_text())
    cfg["nc"], cfg["width_multiple"] = NC, WIDTH
    torch.manual_seed(0)
    with contextlib.redirect_stdout(io.StringIO()):
        model = Model(cfg)
    g = torch.Generator().manual_seed(1)
    state = {}
    for k, v in model.state_dict().items():
        if k.endswith("running_var"):
            v = torch.rand(v.shape, generator=g) + 0.5  # away from defaults: BN eps matters
        elif k.endswith("running_mean"):
            v = torch.rand(v.shape, generator=g) - 0.5
        elif v.is_floating_point() and "anchor" not in k:
            v = v + 0.05 * torch.randn(v.shape, generator=g)  # implicit layers away from 0 / 1
        state[k] = v.half().float() if v.is_floating_point() and "anchor" not in k else v
    model.load_state_dict(state, strict=True)
    model.eval()
    x = torch.rand(2, 3, SIZE, SIZE, generator=g).half().float()
    with torch.no_grad():
        pred = model(x)[0]
        with contextlib.redirect_stdout(io.StringIO()):
            model.fuse()
        fused = model(x)[0]
    arrays = {
        f"sd/{k}": (v.half() if v.is_floating_point() and "anchor" not in k else v).numpy() for k, v in state.items()
    }
    arrays.update(
        x=x.numpy(),
        pred=pred.numpy(),
        pred_fused=fused.numpy(),
        meta=np.array(
            json.dumps(
                {"nc": NC, "width_multiple": WIDTH, "size": SIZE, "source": "yolov7 cfg/training/yolov7-tiny.yaml"}
            )
        ),
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(
        json.dumps(
            {
                "file": args.out,
                "bytes": Path(args.out).stat().st_size,
                "parameters": sum(p.numel() for p in state.values() if p.is_floating_point()),
                "pred": list(pred.shape),
                "max_abs_pred": float(pred.abs().max()),
                "fused_vs_unfused": float((fused - pred).abs().max()),
            }
        )
    )


if __name__ == "__main__":
    main()
