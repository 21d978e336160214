"""``modyolo <verb>``: a thin dispatcher.

Each verb lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``;
this file only lists them, so the CLI imports nothing heavy until a verb is chosen.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# verb -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("modyolo.engine.cli_train", "train a detector from a model YAML or weights"),
    "val": ("modyolo.eval.cli_val", "validate weights on a dataset: P, R, mAP50, mAP50-95"),
    "detect": ("modyolo.eval.cli_detect", "run detection on images, folders or videos"),
    "export": ("modyolo.deploy.cli_export", "export weights to ONNX / TorchScript"),
    "profile": ("modyolo.tools.profile", "build a model YAML and print layers, params, GFLOPs"),
    "compare": ("modyolo.tools.compare", "train, validate and time several variants; write a report"),
    "tune": ("modyolo.tools.tune", "hyperparameter search with Optuna"),
    "benchmark": ("modyolo.tools.benchmark", "time, size and mAP of every inference format of one model"),
    "demo": ("modyolo.tools.demo", "compare three backbones on the embedded shapes dataset"),
    "convert": ("modyolo.data.cli_convert", "convert datasets: VOC XML / COCO JSON <-> YOLO txt"),
    "data": ("modyolo.data.cli_data", "inspect a dataset: verify labels, show augmented samples"),
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
    args = verb_parser.parse_args(argv[1:])
    _configure_threads()
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print(f"modyolo {verb}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, KeyError) as e:
        # Expected user errors (bad YAML, missing file) carry their own fix; no traceback.
        if os.environ.get("MODYOLO_DEBUG"):
            raise
        print(f"modyolo {verb}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
