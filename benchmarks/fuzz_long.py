"""Long fuzzing run of the user-facing readers (the CI suite runs the same targets with few examples).

    python benchmarks/fuzz_long.py [--examples 2000] [--seconds 600] [--targets model_cfg label_rows ...]

Each target (tests/reliability/fuzz.py) gets ``--examples`` hypothesis examples or its share of
``--seconds``, whichever ends first. Prints one JSON line per target: examples run, allowed errors
seen (the project's own: ValueError, KeyError, FileNotFoundError), seconds, peak RSS, and the
first failing input when a target raised anything else (exit code 1 then).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from tests.reliability import fuzz  # noqa: E402


def _image(tmp: Path) -> Path:
    import cv2
    import numpy as np

    p = tmp / "x.jpg"
    cv2.imwrite(str(p), np.full((48, 64, 3), 127, np.uint8))
    return p


def targets(tmp: Path) -> dict:
    from modyolo.yaml_io import loads_yaml

    image = _image(tmp)
    ckpt = fuzz.small_checkpoint()
    return {
        "yaml_reader": (fuzz.yaml_text, lambda t: fuzz.call_allowed(loads_yaml, t, "fuzz.yaml")),
        "model_yaml_text": (fuzz.yaml_text, lambda t: fuzz.call_allowed(fuzz.model_yaml_text, t)),
        "model_cfg": (fuzz.mutated_model_cfg(), lambda c: fuzz.call_allowed(fuzz.model_cfg_dict, c)),
        "data_yaml": (fuzz.yaml_text, lambda t: fuzz.call_allowed(fuzz.data_yaml_text, t)),
        "label_rows": (fuzz.label_rows, lambda r: fuzz.call_allowed(fuzz.label_rows_parse, r)),
        "label_file": (st.binary(max_size=400), lambda b: fuzz.label_file_bytes(b, image) and None),
        "checkpoint": (
            st.one_of(st.binary(max_size=400), fuzz.mutated_bytes(ckpt)),
            lambda b: fuzz.call_allowed(fuzz.checkpoint_bytes, b),
        ),
    }


def run_target(name: str, strategy, fn, examples: int, seconds: float) -> dict:
    stats = {"target": name, "examples": 0, "allowed_errors": 0}
    t0 = time.perf_counter()

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def prop(x):
        if time.perf_counter() - t0 > seconds:
            return
        stats["examples"] += 1
        if fn(x) is not None:
            stats["allowed_errors"] += 1

    try:
        prop()
        stats["ok"] = True
    except Exception as e:  # report the finding, keep fuzzing the other targets
        stats["ok"] = False
        stats["failure"] = f"{type(e).__name__}: {str(e)[:500]}"
    stats["seconds"] = round(time.perf_counter() - t0, 1)
    stats["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return stats


def main() -> int:
    import tempfile

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=600, help="total time budget, shared by the targets")
    ap.add_argument("--targets", nargs="*", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        table = targets(Path(d))
        names = args.targets or list(table)
        failed = False
        for name in names:
            strategy, fn = table[name]
            result = run_target(name, strategy, fn, args.examples, args.seconds / len(names))
            failed |= not result["ok"]
            print(json.dumps(result), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
