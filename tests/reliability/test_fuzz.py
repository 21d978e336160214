"""Property-based fuzzing (hypothesis) of the user-facing readers, bounded for CI.

Every target returns or raises one of the project's own errors (see ``fuzz.py``), within a time
budget per example (``deadline``) and a bounded number of examples; ``benchmarks/fuzz_long.py``
runs the same targets with many more examples.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.reliability import fuzz

CI = settings(
    max_examples=25,
    deadline=5000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
    derandomize=True,
)


@CI
@given(fuzz.yaml_text)
def test_yaml_reader_only_raises_value_error(text):
    from modyolo.yaml_io import loads_yaml

    fuzz.call_allowed(loads_yaml, text, "fuzz.yaml")


@CI
@given(fuzz.yaml_text)
def test_model_yaml_text(text):
    fuzz.call_allowed(fuzz.model_yaml_text, text)


@settings(CI, max_examples=40)
@given(fuzz.mutated_model_cfg())
def test_model_yaml_mutated_rows(cfg):
    fuzz.call_allowed(fuzz.model_cfg_dict, cfg)


@CI
@given(fuzz.yaml_text)
def test_data_yaml_text(text):
    fuzz.call_allowed(fuzz.data_yaml_text, text)


@settings(CI, max_examples=60)
@given(fuzz.label_rows)
def test_label_rows(rows):
    fuzz.call_allowed(fuzz.label_rows_parse, rows)


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("fuzz_img") / "x.jpg"
    cv2.imwrite(str(p), np.full((48, 64, 3), 127, np.uint8))
    return p


@settings(CI, max_examples=40)
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass"))))
def test_label_file_bytes(image, data):
    fuzz.label_file_bytes(data, image)  # never raises: a verdict per file


_CKPT = None


@settings(CI, max_examples=30)
@given(st.data())
def test_checkpoint_bytes(data):
    global _CKPT
    if _CKPT is None:
        _CKPT = fuzz.small_checkpoint()
    blob = data.draw(st.one_of(st.binary(max_size=300), fuzz.mutated_bytes(_CKPT)))
    fuzz.call_allowed(fuzz.checkpoint_bytes, blob)
