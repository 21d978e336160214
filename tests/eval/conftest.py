"""Fixtures for the eval tests."""

from __future__ import annotations

import pytest

from .synth import make_eval_set


@pytest.fixture(scope="session")
def eval_set() -> dict:
    return make_eval_set()
