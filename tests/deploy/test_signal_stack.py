"""OpenVINO's CPU plugin must not leave the thread on an unmapped alternate signal stack.

The plugin installs its own stack when it compiles a model and restores the one it found when it is
unloaded; two plugin instances released out of order used to leave the thread on freed memory, and
the next Python signal handler (SIGCHLD when a subprocess or DataLoader worker exits) killed the
process with SIGSEGV and no traceback — it took pytest-xdist workers down in CI.
"""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap

import pytest

from modyolo.deploy.export import export
from modyolo.deploy.signal_stack import current_signal_stack

from .tiny import IMG, tiny_model

pytest.importorskip("openvino")
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sigaltstack as Linux lays it out")


@pytest.fixture(scope="module")
def ir(tmp_path_factory):
    return export(tiny_model(), include=("openvino",), imgsz=IMG, out_dir=tmp_path_factory.mktemp("ov"))["openvino"]


def test_backends_leave_the_threads_signal_stack_as_it_was(ir):
    from modyolo.deploy.backends import load_backend

    before = current_signal_stack()
    first, second = load_backend(ir), load_backend(ir)
    assert current_signal_stack() == before
    del first
    gc.collect()
    del second  # released in the other order than loaded: what used to leave a freed stack behind
    gc.collect()
    assert current_signal_stack() == before


def test_a_subprocess_after_two_released_backends_does_not_kill_the_process(ir, tmp_path):
    """The user's path in a fresh process: two OpenVINO models loaded and released (as compare's
    per-format check and the INT8 check do), then a Python SIGCHLD handler (DataLoader installs one)
    and a child that exits."""
    script = textwrap.dedent(
        f"""
        import faulthandler, gc, signal, subprocess, sys
        faulthandler.enable()  # an alternate stack of its own, as under pytest
        from modyolo.deploy.backends import load_backend
        first, second = load_backend({str(ir)!r}), load_backend({str(ir)!r})
        del first; gc.collect(); del second; gc.collect()
        signal.signal(signal.SIGCHLD, lambda *a: None)
        for _ in range(3):
            subprocess.run([sys.executable, "-c", "pass"], check=True)
        print("survived")
        """
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0 and "survived" in r.stdout, f"exit {r.returncode}: {r.stderr[-2000:]}"
