"""The dynamic-convolution recipe on the default path: ``modyolo train`` (channels_last by default)
and ``compare`` with a dynamic variant used to crash in ``model.to(memory_format=channels_last)``."""

import copy

import yaml

from modyolo.cli import main as cli_main
from modyolo.nn.graph import load_model_yaml


def _tiny_dynamic_yaml(tmp_path) -> str:
    cfg, _ = load_model_yaml("yolov5l-dynamic.yaml")
    cfg = copy.deepcopy(cfg)
    cfg["width_multiple"], cfg["depth_multiple"] = 0.125, 0.33
    cfg.pop("yaml_file", None)
    path = tmp_path / "tiny-dynamic.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return str(path)


def test_train_dynamic_with_default_flags(tiny_data, tmp_path):
    cfg = _tiny_dynamic_yaml(tmp_path)
    rc = cli_main(
        [
            "train",
            "--data",
            tiny_data,
            "--cfg",
            cfg,
            "--img",
            "64",
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--workers",
            "0",
            "--project",
            str(tmp_path / "runs"),
            "--name",
            "dyn",
            "--noplots",
            "--quiet",
        ]
    )
    assert rc == 0
    assert (tmp_path / "runs" / "dyn" / "weights" / "last.pt").is_file()


def test_compare_runs_a_dynamic_variant(tiny_data, tmp_path):
    from modyolo.tools.compare import compare
    from modyolo.tools.latency import LatencyProtocol

    train = dict(epochs=1, imgsz=64, batch_size=4, workers=0, max_batches=2, noplots=True, seed=0)
    result = compare(
        [_tiny_dynamic_yaml(tmp_path)],
        data=tiny_data,
        train=train,
        project=tmp_path / "cmp",
        protocol=LatencyProtocol(imgsz=64, warmup=1, runs=2, threads=1),
        samples=1,
        verbose=False,
    )
    (row,) = result.results
    assert row.status == "ok", row.error
    assert row.latency_torch.median_ms > 0
