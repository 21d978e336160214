"""Suite-wide settings: small thread counts (CI has 2 cores and runs 2 workers), no network."""

import os

os.environ.setdefault("ULTRALYTICS_SKIP_REQUIREMENTS_CHECKS", "1")  # the yolov5 peer would pip-install
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import torch

torch.set_num_threads(1)


import pytest  # noqa: E402

import tiny_run  # noqa: E402  (tests/ is on sys.path: this conftest's folder has no __init__.py)


@pytest.fixture(scope="session")
def shapes(tmp_path_factory):
    """A tiny shapes dataset (tests/tiny_run.py); folders that need another one define their own."""
    return tiny_run.make_shapes(tmp_path_factory)


@pytest.fixture(scope="session")
def checkpoint(shapes, tmp_path_factory):
    """``last.pt`` of a 1-epoch tiny run on ``shapes`` (eval/ and inference/ tests)."""
    return tiny_run.train_checkpoint(shapes, tmp_path_factory)


@pytest.fixture(autouse=True)
def _close_run_logs():
    """Library calls from Python (train, compare, val) attach a run log (``modyolo.logs.attach_run_log``)
    and keep it, as a script wants; between tests it would send one test's records into another's
    folder (and make tests/test_logs.py see a run log it never opened). Close them after each test."""
    yield
    import logging

    from modyolo.logs import _owned, _remove

    logger = logging.getLogger("modyolo")
    for handler in _owned(logger, "file"):
        _remove(logger, handler)
