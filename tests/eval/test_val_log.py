"""``val`` writes its run folder's log.txt: the dataset scan, the metrics table and where results went."""

from __future__ import annotations

from tiny_run import run_cli


def test_val_run_log_keeps_the_table(checkpoint, shapes, tmp_path, capsys):
    rc, out, _ = run_cli(
        [
            "val",
            "--weights",
            checkpoint,
            "--data",
            shapes,
            "--img",
            "64",
            "--batch-size",
            "4",
            "--workers",
            "0",
            "--no-plots",
            "--no-diagnose",
            "--project",
            tmp_path,
        ],
        capsys,
    )
    assert rc == 0 and "mAP50-95" in out
    log = (tmp_path / "exp" / "log.txt").read_text()
    assert "mAP50-95" in log and "Results saved to" in log and "val: " in log  # table, result, dataset scan
