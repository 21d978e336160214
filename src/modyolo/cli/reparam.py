"""``modyolo reparam``: a trained YOLOv7 (training layout) -> yolov7's cfg/deploy layout.

    modyolo reparam --weights runs/train/exp/weights/best.pt               # writes best_deploy.pt
    modyolo reparam --weights yolov7_state_dict.pt --cfg yolov7.yaml --out deploy.pt

The implicit layers of IDetect / IAuxDetect are folded into a plain Detect head and the
auxiliary head's rows are dropped (see :mod:`modyolo.nn.v7_deploy`); the eval outputs are checked
equal before the file is written. The result is an ordinary modyolo checkpoint (weights + the
deploy YAML), so ``modyolo export / val / detect --weights`` take it as it is; RepConv rows are
folded by their fuse step, as for any model.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", required=True, help="modyolo checkpoint or state_dict (.pt) of a YOLOv7 model")
    parser.add_argument("--cfg", default=None, help="model YAML, only for a bare state_dict .pt")
    parser.add_argument("--out", default=None, help="output checkpoint (default: <weights stem>_deploy.pt)")
    parser.add_argument("--img", type=int, default=320, help="image size of the output check (default 320)")


def run(args: argparse.Namespace) -> int:
    import torch

    from modyolo.deploy.prepare import load_model
    from modyolo.engine.checkpoint import save_checkpoint
    from modyolo.nn.v7_deploy import to_deploy_layout

    model = load_model(args.weights, cfg=args.cfg)
    deploy = to_deploy_layout(model)
    x = torch.rand(1, int(model.yaml.get("ch", 3)), args.img, args.img, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref, out = model(x)[0], deploy(x)[0]
    err = float((ref - out).abs().max())
    scale = float(ref.abs().max().clamp(min=1.0))
    if err > 1e-4 * scale:
        raise RuntimeError(
            f"{args.weights}: the deploy layout's outputs differ by {err:.3g} (scale {scale:.3g}); not written"
        )
    out_path = Path(args.out) if args.out else Path(args.weights).with_name(Path(args.weights).stem + "_deploy.pt")
    save_checkpoint(
        out_path,
        model=deploy,
        epoch=-1,
        names=deploy.names,
        model_yaml=deploy.yaml,
        extra={"reparam_from": str(args.weights)},
    )
    n0 = sum(p.numel() for p in model.parameters())
    n1 = sum(p.numel() for p in deploy.parameters())
    print(
        f"{out_path}: deploy layout ({type(model.head).__name__} -> Detect), parameters {n0:,} -> {n1:,}, "
        f"max output difference {err:.2g} px"
    )
    return 0
