"""The dynamic-convolution recipe on the default path: ``modyolo train`` (channels_last by default)
and ``compare`` with a dynamic variant used to crash in ``model.to(memory_format=channels_last)``."""

from modyolo.cli import main as cli_main
from tiny_run import tiny_cfg_file, tiny_train_argv


def _tiny_dynamic_yaml(tmp_path) -> str:
    return tiny_cfg_file(tmp_path, "yolov5l-dynamic.yaml", width=0.125, depth=0.33)


def test_train_dynamic_with_default_flags(tiny_data, tmp_path):
    cfg = _tiny_dynamic_yaml(tmp_path)
    rc = cli_main(tiny_train_argv(tiny_data, cfg, tmp_path / "runs", "--name", "dyn", "--quiet"))
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
