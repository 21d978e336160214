"""Where modyolo's log records go: the terminal for the person at it, a file for the run folder.

Library code only ever does ``logging.getLogger("modyolo.<room>")`` and logs; it never prints
diagnostics and never configures logging. Two places do:

- the command line (``modyolo.cli.main``) wraps each verb in :func:`cli_logging`: INFO and up to
  the terminal (stderr, so stdout keeps the results a verb prints), WARNING and up with
  ``--quiet``, DEBUG and up with ``--verbose``; plain messages, no timestamps; lines go through
  ``tqdm.write`` so they do not tear a progress bar;
- whatever creates a run folder (the trainer, ``val``, ``detect``) calls :func:`attach_run_log`,
  which writes *every* record (DEBUG and up, with time, level and logger) to ``<run>/log.txt``,
  whatever the terminal shows. Under the CLI that includes the records logged before the folder
  existed (hyp defaults, weight transfer, autoanchor): they wait in a buffer until then.

Both only touch the ``modyolo`` logger (records still propagate to the root logger, so an
application's own handlers and pytest's ``caplog`` see them too).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = "modyolo"
LOG_FILE = "log.txt"
FILE_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
_ROLE = "_modyolo_role"  # marks the handlers this module owns: "terminal", "file", "buffer", "fallback"
# ``LOGGER.info(text, extra=FILE_ONLY)``: for the run log only, e.g. a result the verb already
# printed to stdout, or a per-epoch line the progress bar already showed
FILE_ONLY = {"modyolo_terminal": False}
BUFFER_LIMIT = 10_000  # records kept for the run log before its folder exists (then the oldest go)


def level_for(quiet: bool = False, verbose: bool = False) -> int:
    """The terminal level for the CLI's ``--quiet`` / ``--verbose`` (``--verbose`` wins if both)."""
    return logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO


class _TerminalFormatter(logging.Formatter):
    """``message`` for INFO and below; ``WARNING: message`` / ``ERROR: message`` above."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text if record.levelno < logging.WARNING else f"{record.levelname}: {text}"


class _TerminalHandler(logging.Handler):
    """Writes to the *current* ``sys.stderr`` (tests and notebooks swap it) via ``tqdm.write``."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            try:
                from tqdm import tqdm

                tqdm.write(text, file=sys.stderr)
            except ImportError:  # tqdm is a dependency; this only guards a broken install
                sys.stderr.write(text + "\n")
        except Exception:  # noqa: BLE001 - a Handler reports through handleError, never raises
            self.handleError(record)


class _BufferHandler(logging.Handler):
    """Holds the records since the last :func:`attach_run_log`, which replays them into the new
    run's log file (a compare or tune process builds several runs one after the other)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        if len(self.records) > BUFFER_LIMIT:
            del self.records[: len(self.records) - BUFFER_LIMIT]


def _owned(logger: logging.Logger, role: str) -> list[logging.Handler]:
    return [h for h in logger.handlers if getattr(h, _ROLE, None) == role]


def _remove(logger: logging.Logger, handler: logging.Handler) -> None:
    logger.removeHandler(handler)
    handler.close()


def configure(level: int = logging.INFO) -> logging.Logger:
    """Send ``modyolo`` records at ``level`` and up to the terminal (replacing an earlier call's)."""
    logger = logging.getLogger(ROOT)
    for h in _owned(logger, "terminal") + _owned(logger, "fallback") + _owned(logger, "buffer"):
        _remove(logger, h)
    handler = _TerminalHandler(level)
    handler.setFormatter(_TerminalFormatter("%(message)s"))
    handler.addFilter(lambda record: getattr(record, "modyolo_terminal", True))
    setattr(handler, _ROLE, "terminal")
    logger.addHandler(handler)
    buffer = _BufferHandler()
    setattr(buffer, _ROLE, "buffer")
    logger.addHandler(buffer)
    logger.setLevel(logging.DEBUG)  # the handlers decide; the run log wants everything
    return logger


@contextlib.contextmanager
def cli_logging(level: int = logging.INFO) -> Iterator[logging.Logger]:
    """:func:`configure` for one CLI invocation; afterwards the ``modyolo`` logger is as before
    (handlers this invocation added, run logs included, are closed), so in-process callers such
    as tests do not accumulate handlers."""
    logger = logging.getLogger(ROOT)
    before, old_level = list(logger.handlers), logger.level
    configure(level)
    try:
        yield logger
    finally:
        for h in list(logger.handlers):
            if h not in before:
                _remove(logger, h)
        for h in before:
            if h not in logger.handlers:
                logger.addHandler(h)
        logger.setLevel(old_level)


def attach_run_log(save_dir: str | Path) -> Path:
    """Write every ``modyolo`` record (DEBUG and up) to ``save_dir/log.txt`` from now on.

    A run log of another folder is closed, unless that folder contains this one (a compare run
    keeps logging while its variants train in sub-folders). Returns the log file's path.
    """
    logger = logging.getLogger(ROOT)
    path = Path(save_dir).resolve() / LOG_FILE
    for h in _owned(logger, "file"):
        current = Path(h.baseFilename)  # type: ignore[attr-defined]
        if current == path:
            return path
        if current.parent not in path.parents:
            _remove(logger, h)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter(FILE_FORMAT))
    setattr(handler, _ROLE, "file")
    for buffer in _owned(logger, "buffer"):  # what was logged since the last run log opened
        for record in buffer.records:  # type: ignore[attr-defined]
            handler.handle(record)
        buffer.records.clear()  # type: ignore[attr-defined]  (keeps buffering for the next run folder)
    logger.addHandler(handler)
    unconfigured = not _owned(logger, "terminal") and not logging.getLogger().handlers
    if logger.level == logging.NOTSET and unconfigured:
        # library use with no logging set up anywhere: the run log still gets everything (where an
        # application configured logging, its levels decide, and DEBUG does not flood its handlers)
        logger.setLevel(logging.DEBUG)
    if unconfigured and not _owned(logger, "fallback"):
        # Python prints WARNING+ to stderr only while *no* handler exists; keep that for library users
        fallback = _TerminalHandler(logging.WARNING)
        fallback.setFormatter(_TerminalFormatter("%(message)s"))
        setattr(fallback, _ROLE, "fallback")
        logger.addHandler(fallback)
    return path


def run_log_path() -> Path | None:
    """The run log records currently go to (the innermost one), or None."""
    files = _owned(logging.getLogger(ROOT), "file")
    return Path(files[-1].baseFilename) if files else None  # type: ignore[attr-defined]


__all__ = ["FILE_ONLY", "attach_run_log", "cli_logging", "configure", "level_for", "run_log_path"]
