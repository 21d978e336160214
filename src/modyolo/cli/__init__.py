"""``modyolo <verb>``: a thin dispatcher.

Each verb lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``;
this file only lists them, so the CLI imports nothing heavy until a verb is chosen.

Logging is configured here, once per invocation (``modyolo.logs``): INFO to the terminal,
``--quiet`` WARNING and up, ``--verbose`` DEBUG and up, on every verb. A verb that defines
``--quiet`` / ``--verbose`` itself keeps its own meaning as well (``train --quiet``: no
progress bars; ``val --verbose``: the per-class table for many classes).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

# verb -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("modyolo.cli.train", "train a detector from a model YAML or weights"),
    "val": ("modyolo.cli.val", "validate weights on a dataset: P, R, mAP50, mAP50-95"),
    "detect": ("modyolo.cli.detect", "run detection on images, folders or videos"),
    "export": ("modyolo.cli.export", "export weights to ONNX / TorchScript"),
    "reparam": ("modyolo.cli.reparam", "re-parameterise a trained YOLOv7 into yolov7's deploy layout"),
    "profile": ("modyolo.cli.profile", "build a model YAML and print layers, params, GFLOPs"),
    "compare": ("modyolo.cli.compare", "train, validate and time several variants; write a report"),
    "tune": ("modyolo.cli.tune", "hyperparameter search with Optuna"),
    "benchmark": ("modyolo.cli.benchmark", "time, size and mAP of every inference format of one model"),
    "demo": ("modyolo.cli.demo", "compare three backbones on the embedded shapes dataset"),
    "convert": ("modyolo.cli.convert", "convert datasets: VOC XML / COCO JSON <-> YOLO txt"),
    "data": ("modyolo.cli.data", "inspect a dataset: verify labels, show augmented samples"),
}


def _load(verb: str):
    module_name = COMMANDS[verb][0]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name == module_name:  # the verb itself is missing, not one of its dependencies
            return None
        raise


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modyolo",
        description="YOLOv5-style detection with swappable backbones, declared in YAML.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for verb, (_, help_text) in COMMANDS.items():
        sub.add_parser(verb, help=help_text, description=help_text, add_help=False)
    return parser


def _configure_threads() -> None:
    """Thread settings belong to the entry point, not to import time (see DESIGN)."""
    threads = os.environ.get("MODYOLO_THREADS")
    if threads:
        import torch

        torch.set_num_threads(int(threads))


LOG_FLAGS = {
    "--quiet": "warnings and errors only on the terminal (the run's log.txt keeps everything)",
    "--verbose": "debug messages on the terminal too",
}


def _add_log_flags(verb_parser: argparse.ArgumentParser) -> None:
    """``--quiet`` / ``--verbose`` for verbs that do not define them (their level is read by
    :func:`_log_level`, so a verb's own flag of that name keeps working as it did)."""
    for flag, help_text in LOG_FLAGS.items():
        if flag not in verb_parser._option_string_actions:
            verb_parser.add_argument(flag, dest=f"log_{flag[2:]}", action="store_true", help=help_text)


def _add_limit_flags(verb_parser: argparse.ArgumentParser) -> None:
    """``--max-pixels`` on every verb: the per-image pixel limit (``MODYOLO_MAX_PIXELS``, see data/images.py)."""
    if "--max-pixels" not in verb_parser._option_string_actions:
        verb_parser.add_argument(
            "--max-pixels",
            dest="limit_max_pixels",
            type=float,
            default=None,
            help="refuse images over N pixels, per file, before decoding (default 1e8)",
        )


def _apply_limit_flags(args: argparse.Namespace, verb_parser: argparse.ArgumentParser) -> None:
    """Move ``--max-pixels`` into the environment (dataloader workers and subprocesses inherit it)."""
    value = vars(args).pop("limit_max_pixels", None)
    if value is None:
        return
    if not value >= 1:  # also refuses nan
        verb_parser.exit(
            2,
            f"{verb_parser.prog}: error: argument --max-pixels: {value:g} is out of range; "
            "allowed: >= 1 (pixels per image)\n",
        )
    os.environ["MODYOLO_MAX_PIXELS"] = str(int(value))


def _log_level(verb_argv: list[str]) -> int:
    from modyolo.logs import level_for

    flags = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for flag in LOG_FLAGS:
        flags.add_argument(flag, action="store_true")
    known, _ = flags.parse_known_args(verb_argv)
    if os.environ.get("RANK", "0") not in ("0", "-1"):  # torchrun's other ranks: warnings only, no echoes
        return max(level_for(quiet=known.quiet, verbose=known.verbose), logging.WARNING)
    return level_for(quiet=known.quiet, verbose=known.verbose)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] in {"-h", "--help"}:
        parser.print_help()
        return 0
    verb = argv[0]
    if verb not in COMMANDS:
        parser.parse_args(argv)  # prints argparse's "invalid choice" message and exits 2
        return 2
    module = _load(verb)
    if module is None:
        print(f"modyolo {verb}: not yet available in this version", file=sys.stderr)
        return 2
    verb_parser = argparse.ArgumentParser(prog=f"modyolo {verb}", description=COMMANDS[verb][1])
    module.add_arguments(verb_parser)
    _add_log_flags(verb_parser)
    _add_limit_flags(verb_parser)
    args = verb_parser.parse_args(argv[1:])
    _apply_limit_flags(args, verb_parser)
    for flag in LOG_FLAGS:  # read by _log_level; verbs only see their own options
        vars(args).pop(f"log_{flag[2:]}", None)
    _configure_threads()
    from modyolo.cli.checks import check_args
    from modyolo.cli.errors import user_message
    from modyolo.logs import cli_logging

    try:
        with cli_logging(_log_level(argv[1:])):
            check_args(args, verb_parser, verb)  # every number in range, image sizes rounded (exit 2)
            try:
                return int(module.run(args) or 0)
            except Exception as e:
                # User-caused errors (bad YAML, missing or read-only path, full disk, corrupt model
                # file) carry their own fix: one line, the traceback only at DEBUG (run log, --verbose).
                message = user_message(e, getattr(args, "weights", None))
                if message is None or os.environ.get("MODYOLO_DEBUG"):
                    raise
                logging.getLogger("modyolo.cli").debug("modyolo %s failed", verb, exc_info=True)
                print(f"modyolo {verb}: error: {message}", file=sys.stderr)
                return int(getattr(e, "exit_code", 1))  # 2: flags refused after parsing (nn/budget.py)
    except KeyboardInterrupt:
        print(f"modyolo {verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
