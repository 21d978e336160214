"""Logging through the CLI: INFO reaches the terminal and the run folder's log.txt (it used to be
dropped: nothing configured logging), ``--quiet`` / ``--verbose`` work on every verb."""

from __future__ import annotations

import logging

import pytest

from modyolo.cli import COMMANDS, build_parser
from modyolo.cli import main as cli_main
from tiny_run import tiny_cfg_file, tiny_train_argv

AUTOANCHOR = "autoanchor: "
HYP_DEFAULTS = "keys not given, using defaults"


def _train(tiny_data, tmp_path, *extra: str) -> tuple[int, str]:
    cfg = tiny_cfg_file(tmp_path)
    hyp = tmp_path / "hyp.yaml"
    hyp.write_text("lr0: 0.01\nmosaic: 1.0\n")  # every other key from the defaults: an INFO line says so
    name = "q" if "--quiet" in extra else "v" if "--verbose" in extra else "default"
    rc = cli_main(tiny_train_argv(tiny_data, cfg, tmp_path / "runs", "--hyp", str(hyp), "--name", name, *extra))
    return rc, name


def test_train_info_reaches_terminal_and_run_log(tiny_data, tmp_path, capsys):
    handlers_before = list(logging.getLogger("modyolo").handlers)
    rc, name = _train(tiny_data, tmp_path)
    assert rc == 0
    err = capsys.readouterr().err
    assert AUTOANCHOR in err and HYP_DEFAULTS in err
    assert "INFO" not in err and not any(line[:4].isdigit() for line in err.splitlines())  # no timestamps
    log = (tmp_path / "runs" / name / "log.txt").read_text()
    assert AUTOANCHOR in log and HYP_DEFAULTS in log  # logged before the folder existed, kept all the same
    assert " INFO " in log and "modyolo." in log  # time, level and logger in the file
    assert logging.getLogger("modyolo").handlers == handlers_before  # the invocation cleaned up after itself


def test_train_quiet_hides_info_but_the_log_keeps_it(tiny_data, tmp_path, capsys):
    rc, name = _train(tiny_data, tmp_path, "--quiet")
    assert rc == 0
    err = capsys.readouterr().err
    assert AUTOANCHOR not in err and HYP_DEFAULTS not in err
    log = (tmp_path / "runs" / name / "log.txt").read_text()
    assert AUTOANCHOR in log and HYP_DEFAULTS in log


def test_train_verbose_shows_debug(tiny_data, tmp_path, capsys):
    logging.getLogger("modyolo.train").debug("not shown: nothing configured")
    rc, name = _train(tiny_data, tmp_path, "--verbose")
    assert rc == 0
    log = (tmp_path / "runs" / name / "log.txt").read_text()
    debug = [line.split(": ", 1)[1] for line in log.splitlines() if " DEBUG " in line]
    err = capsys.readouterr().err
    assert "not shown" not in err
    assert all(message in err for message in debug)  # every DEBUG line of the run log was on the terminal


@pytest.mark.parametrize("verb", sorted(COMMANDS))
def test_every_verb_takes_quiet_and_verbose(verb):
    import argparse
    import importlib

    from modyolo.cli import _add_log_flags

    parser = argparse.ArgumentParser(prog=f"modyolo {verb}")
    importlib.import_module(COMMANDS[verb][0]).add_arguments(parser)
    _add_log_flags(parser)
    for flag in ("--quiet", "--verbose"):
        assert flag in parser._option_string_actions, f"modyolo {verb} lacks {flag}"
    assert build_parser()  # the dispatcher itself still builds


def test_val_verbose_keeps_its_meaning_and_turns_on_debug(monkeypatch, capsys):
    """``val --verbose`` still asks for the per-class table; the terminal shows DEBUG as well."""
    seen = {}

    def fake_run(args):
        seen["verbose"] = args.verbose
        logging.getLogger("modyolo.eval").debug("a debug line")
        logging.getLogger("modyolo.eval").info("an info line")
        return 0

    from modyolo.cli import val as cli_val

    monkeypatch.setattr(cli_val, "run", fake_run)
    assert cli_main(["val", "--weights", "x.pt", "--verbose"]) == 0
    err = capsys.readouterr().err
    assert seen["verbose"] is True and "a debug line" in err and "an info line" in err
    assert cli_main(["val", "--weights", "x.pt", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert seen["verbose"] is False and "an info line" not in err


def test_weight_transfer_and_mosaic_closing_reach_the_terminal(tiny_data, tmp_path, capsys):
    rc, name = _train(tiny_data, tmp_path)
    assert rc == 0
    last = tmp_path / "runs" / name / "weights" / "last.pt"
    capsys.readouterr()
    argv = tiny_train_argv(
        tiny_data, tiny_cfg_file(tmp_path), tmp_path / "runs", "--weights", str(last), "--name", "ft"
    )
    rc = cli_main([*argv, "--close-mosaic", "1"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "transferred " in err and " tensors from " in err
    assert "mosaic off for the last 1 epochs" in err
    assert "transferred " in (tmp_path / "runs" / "ft" / "log.txt").read_text()


def test_epoch_rows_and_summary_go_to_the_run_log_only(tiny_data, tmp_path, capsys):
    rc, name = _train(tiny_data, tmp_path)
    assert rc == 0
    captured = capsys.readouterr()
    log = (tmp_path / "runs" / name / "log.txt").read_text()
    assert "epoch 1/1: " in log and "mAP50-95" in log and "results saved to" in log
    assert "epoch 1/1: " not in captured.err and "results saved to" in captured.out  # printed once, on stdout
