"""Keep the calling thread's alternate signal stack across OpenVINO calls that load its CPU plugin.

OpenVINO's CPU plugin (2026.4) installs its own small alternate signal stack on the thread that
compiles a model, and when the plugin is unloaded (its last ``Core`` released) it puts back the stack
it found. Two plugin instances released in the other order than they were loaded (two backends, a
float and an INT8 model, NNCF's calibration) leave the thread on a stack that has been unmapped. The
next signal whose handler runs on the alternate stack then cannot be delivered and the kernel kills
the process with SIGSEGV, without a traceback: Python installs its handlers with ``SA_ONSTACK``, and
PyTorch's DataLoader installs one for SIGCHLD, so the first subprocess or loader worker that exits
afterwards (the next variant's training in ``compare``, the INT8 check's val loader) takes the
process down. Putting the thread's own stack back right after each such call means every plugin
instance saves, and later restores, a stack that stays valid.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Iterator
from contextlib import contextmanager

SS_ONSTACK = 1  # <signal.h> (Linux): the thread is running on its alternate stack now


class _StackT(ctypes.Structure):
    """Linux's ``stack_t`` (the field order differs on macOS, where this module does nothing)."""

    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


def _libc_sigaltstack():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).sigaltstack
    except (OSError, AttributeError):
        return None


_SIGALTSTACK = _libc_sigaltstack()


def current_signal_stack() -> tuple[int | None, int, int] | None:
    """The calling thread's alternate signal stack as (address, size, flags), None off Linux."""
    if _SIGALTSTACK is None:
        return None
    now = _StackT()
    if _SIGALTSTACK(None, ctypes.byref(now)) != 0:
        return None
    return now.ss_sp, now.ss_size, now.ss_flags


@contextmanager
def keep_signal_stack() -> Iterator[None]:
    """Run the body, then give the calling thread back the alternate signal stack it had before."""
    if _SIGALTSTACK is None:
        yield
        return
    saved = _StackT()
    known = _SIGALTSTACK(None, ctypes.byref(saved)) == 0
    try:
        yield
    finally:
        if known and not saved.ss_flags & SS_ONSTACK:  # the stack cannot be changed while running on it
            _SIGALTSTACK(ctypes.byref(saved), None)
