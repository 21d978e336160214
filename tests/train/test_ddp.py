"""DDP started by torchrun with 2 CPU processes (gloo): trains, and only rank 0 writes outputs."""

import os
import socket
import subprocess
import sys

import yaml

from modyolo.engine.checkpoint import load_checkpoint


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_ddp_trains_and_writes_one_run(tiny_data, tiny_model_cfg, tmp_path):
    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_model_cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        "-m",
        "modyolo",
        "train",
        "--data",
        tiny_data,
        "--cfg",
        str(cfg_path),
        "--epochs",
        "2",
        "--img",
        "64",
        "--batch-size",
        "8",
        "--workers",
        "0",
        "--project",
        str(tmp_path / "runs"),
        "--name",
        "ddp",
        "--quiet",
        "--noplots",
        "--device",
        "cpu",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert runs == ["ddp"], f"expected one run folder, got {runs}"
    assert proc.stdout.count("results saved to") == 1, "only rank 0 may print the summary"
    ckpt = load_checkpoint(tmp_path / "runs" / "ddp" / "weights" / "last.pt")
    assert ckpt["epoch"] == 1
    assert not any(k.startswith("module.") for k in ckpt["model"]), "checkpoint must hold the unwrapped model"
    assert len((tmp_path / "runs" / "ddp" / "results.csv").read_text().strip().splitlines()) == 3
