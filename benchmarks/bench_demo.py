"""Project ``modyolo demo``'s wall time from a short measurement of each demo variant.

For each variant of ``cfg/demo.yaml`` (or ``--config``): train 2 short epochs of ``--batches``
batches at the demo's settings and read the steady-state training images/s (the first epoch,
with worker start-up, is excluded by the trainer), then time one validation pass over the val
split. The projection is ``epochs * (train_images / img_s + val_s)`` per variant, summed. Prints
JSON, including the load average, because on a shared machine every figure is pessimistic.

    python benchmarks/bench_demo.py [--config cfg.yaml] [--batches 8]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=None)
    ap.add_argument("--batches", type=int, default=8, help="batches per measured epoch")
    args = ap.parse_args()

    from modyolo.data.dataset_yaml import load_data_config
    from modyolo.data.formats.yolo import list_image_files
    from modyolo.engine.config import TrainConfig
    from modyolo.engine.trainer import Trainer
    from modyolo.eval.validator import validate
    from modyolo.tools.demo import build_hyp, build_variants, load_demo_config

    cfg = load_demo_config(args.config)
    data = load_data_config(cfg.get("data", "shapes"))
    n_train = len(list_image_files(data.train))
    train = {**cfg["train"], "hyp": build_hyp(cfg)}
    epochs = int(train["epochs"])
    out = {
        "config": cfg["_path"],
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "train_images": n_train,
        "epochs": epochs,
        "variants": {},
    }
    total = 0.0
    models, names = build_variants(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in zip(names, models):
            settings = {
                **train,
                "data": str(data.source),
                "cfg": model,
                "epochs": 2,
                "max_batches": args.batches,
                "project": tmp,
                "name": name,
                "verbose": False,
                "noplots": True,
                "noval": True,
            }
            trainer = Trainer(TrainConfig.from_dict(settings), evaluator=validate)
            result = trainer.fit()  # noval still validates the final epoch: time it separately below
            t0 = time.perf_counter()
            from modyolo.engine.epoch_callbacks import validation

            validation(trainer, trainer.cfg.epochs - 1)  # the final epoch's validation, as the trainer runs it
            val_s = time.perf_counter() - t0
            per_epoch = n_train / max(result.train_images_per_s, 1e-9) + val_s
            total += epochs * per_epoch
            out["variants"][name] = {
                "train_img_per_s": round(result.train_images_per_s, 2),
                "val_seconds": round(val_s, 2),
                "projected_minutes": round(epochs * per_epoch / 60, 2),
            }
    out["projected_training_minutes"] = round(total / 60, 2)
    out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
