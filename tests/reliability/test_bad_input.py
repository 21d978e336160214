"""One test per bad-input kind (tests/reliability/cases.py): verdict, exit code, words, no traceback,
no hang, and nothing outside the run folder changed.

The CLI runs in-process (``modyolo.cli.main``) for speed; ``test_subprocess_*`` run a few kinds
through the installed ``modyolo`` command with a memory limit, as a user would meet them.
"""

from __future__ import annotations

import hashlib
import os
import resource
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from tests.reliability.cases import BOMB, CASES, Case, Env

CASE_TIMEOUT_S = 180  # a hang fails the case instead of the whole run


def _snapshot(root: Path) -> dict[str, str]:
    """Content hash of every file under ``root`` except the label and ``--cache disk`` caches (documented
    side effects beside the data)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.name.endswith((".modyolo.cache", ".npy")):
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@contextmanager
def _deadline(seconds: int):
    def expire(signum, frame):
        raise TimeoutError(f"no answer within {seconds} s (a hang)")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def run_case(case: Case, env: Env, monkeypatch, capsys) -> tuple[int, str]:
    from modyolo.cli import main

    monkeypatch.delenv("MODYOLO_DEBUG", raising=False)
    monkeypatch.setenv("MODYOLO_MAX_PIXELS", "1e8")  # the default; restored after main() (--max-pixels sets it)
    argv = case.build(env)
    before = _snapshot(env.inp)
    if case.patch:
        case.patch(monkeypatch, env)
    with _deadline(CASE_TIMEOUT_S):
        try:
            rc = main(argv)
        except SystemExit as e:  # argparse's parse-time errors
            rc = e.code if isinstance(e.code, int) else 1
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert _snapshot(env.inp) == before, "files outside the run folder changed"
    return rc, out


@pytest.mark.parametrize(
    "case", [pytest.param(c, id=c.kind, marks=[pytest.mark.slow] if c.slow else []) for c in CASES]
)
def test_bad_input(case: Case, env: Env, monkeypatch, capsys):
    rc, out = run_case(case, env, monkeypatch, capsys)
    assert "Traceback" not in out, out
    assert rc == case.rc, f"exit code {rc}, expected {case.rc}\n{out}"
    assert case.expect.lower() in out.lower(), f"{case.expect!r} not in the output:\n{out}"
    if case.verdict == "error":
        # "modyolo <verb>: error: ..." / argparse's, or data verify's per-split verdict line
        errors = [ln for ln in out.splitlines() if ": error: " in ln or ln.startswith(("train:", "val:", "test:"))]
        assert errors, f"no one-line error message:\n{out}"
    if case.check:
        case.check(env, out)


def test_at_least_80_kinds():
    kinds = [c.kind for c in CASES]
    assert len(set(kinds)) == len(kinds), "duplicate kind names"
    assert len(kinds) >= 80
    assert {c.verdict for c in CASES} == {"error", "skip", "accepted"}


def _cli(args: list[str], cwd: Path, limit_gb: float = 4.0) -> subprocess.CompletedProcess:
    """The installed command under an address-space limit: a bomb that slipped through would die, not swap."""

    def limit() -> None:
        cap = int(limit_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    exe = Path(sys.executable).with_name("modyolo")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("MODYOLO_DEBUG", None)
    return subprocess.run(
        [str(exe), *args], cwd=cwd, capture_output=True, text=True, timeout=120, preexec_fn=limit, env=env
    )


def test_subprocess_alias_bomb_profile(env: Env):
    path = env.write("bomb.yaml", BOMB + "backbone: [[-1, 1, Conv, [*i, 3, 2]]]\nhead: []\n")
    r = _cli(["profile", "--cfg", path, "--img", "64"], env.work)
    assert r.returncode == 1 and "alias" in r.stderr and "Traceback" not in r.stderr + r.stdout


def test_subprocess_img_zero_leaves_no_run_folder(env: Env):
    r = _cli(
        ["train", "--data", str(env.data), "--cfg", str(env.cfg), "--img", "0", "--project", str(env.work / "runs")],
        env.work,
    )
    assert r.returncode == 2 and "--img" in r.stderr and "Traceback" not in r.stderr
    assert not (env.work / "runs").exists()  # refused before autoanchor or a run folder


def test_verbose_keeps_the_traceback(env: Env):
    r = _cli(
        [
            "val",
            "--weights",
            env.write("g.onnx", b"\x08garbage"),
            "--data",
            str(env.data),
            "--img",
            "64",
            "--verbose",
            "--project",
            str(env.work / "runs"),
        ],
        env.work,
    )
    assert r.returncode == 1 and "not a valid ONNX" in r.stderr
    assert "Traceback" in r.stderr + r.stdout  # --verbose: the DEBUG line carries it
