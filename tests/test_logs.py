"""``modyolo.logs``: the run log gets what was logged before its folder existed, a run inside
another run's folder (compare's variants) leaves the outer log open, and an invocation cleans up."""

import logging

from modyolo.logs import attach_run_log, cli_logging, run_log_path

LOG = logging.getLogger("modyolo.test")


def test_buffered_records_reach_each_new_run_log(tmp_path):
    with cli_logging(logging.WARNING):
        LOG.debug("before the first folder")
        first = attach_run_log(tmp_path / "a")
        LOG.info("during a")
        LOG.info("setting up b")
        second = attach_run_log(tmp_path / "b")
        LOG.info("during b")
        assert run_log_path() == second
    a, b = first.read_text(), second.read_text()
    assert "before the first folder" in a and "during a" in a and "during b" not in a
    assert "setting up b" in b and "during b" in b and "before the first folder" not in b
    assert run_log_path() is None


def test_a_run_inside_another_keeps_the_outer_log(tmp_path):
    with cli_logging():
        outer = attach_run_log(tmp_path / "compare")
        inner = attach_run_log(tmp_path / "compare" / "train" / "v1")
        LOG.warning("variant trains")
    assert "variant trains" in outer.read_text() and "variant trains" in inner.read_text()
