"""Property-based fuzzing of the readers a user's files reach: model YAML, data YAML, label files,
checkpoints. Each target takes the fuzzed input and either returns or raises one of the project's
own errors (ValueError and its subclasses: ModelConfigError, CheckpointError, YamlLimitError,
CorruptFile...; KeyError for registry look-ups; FileNotFoundError). Anything else (TypeError,
IndexError, RecursionError, MemoryError...) is a bug the fuzzer found.

Used by ``test_fuzz.py`` (few examples, in CI) and ``benchmarks/fuzz_long.py`` (many).
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import yaml
from hypothesis import strategies as st

ALLOWED = (ValueError, KeyError, FileNotFoundError)

# ---------------------------------------------------------------- strategies

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(["nc", "anchors", "None", "nearest", "Conv", "-1"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=20,
)
near = st.one_of(
    st.integers(-3, 64), st.sampled_from([0.5, 1.0, 2.0, "nc", "anchors", None, [], [-1, -2]]), values
)  # mostly plausible values: the interesting failures are near-valid rows
yaml_text = st.one_of(
    st.text(max_size=400),
    st.builds(lambda v: yaml.safe_dump(v), values),
    st.builds(
        lambda n, d: "a: &a [x]\n" + "".join(f"b{i}: &b{i} [{', '.join(['*a'] * n)}]\n" for i in range(d)),
        st.integers(1, 40),
        st.integers(0, 4),
    ),
)


def _tiny_model_cfg() -> dict:
    from modyolo.nn.graph import load_model_yaml

    cfg, _ = load_model_yaml("yolov5n.yaml")
    cfg.update(width_multiple=0.0625, depth_multiple=0.33)
    return cfg


_BASE_CFG: dict | None = None


@st.composite
def mutated_model_cfg(draw) -> dict:
    """The tiny yolov5n dict with one to three values replaced (a row, an arg, a multiple, nc...)."""
    global _BASE_CFG
    if _BASE_CFG is None:
        _BASE_CFG = _tiny_model_cfg()
    cfg = copy.deepcopy(_BASE_CFG)
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(["top", "row", "arg", "from", "number", "module"]))
        section = draw(st.sampled_from(["backbone", "head"]))
        rows = cfg[section]
        i = draw(st.integers(0, len(rows) - 1))
        if where == "top":
            cfg[draw(st.sampled_from(["nc", "depth_multiple", "width_multiple", "anchors", "activation"]))] = draw(
                values
            )
        elif where == "row":
            rows[i] = draw(values)
        elif not isinstance(rows[i], list) or len(rows[i]) != 4:
            continue
        elif where == "arg" and isinstance(rows[i][3], list) and rows[i][3]:
            rows[i][3][draw(st.integers(0, len(rows[i][3]) - 1))] = draw(near)
        else:
            rows[i][{"from": 0, "number": 1, "module": 2, "arg": 3}[where]] = draw(near)
    return cfg


label_rows = st.lists(
    st.lists(
        st.one_of(
            st.floats(allow_nan=True, allow_infinity=True).map(str), st.integers(-5, 100).map(str), st.text(max_size=4)
        ),
        max_size=9,
    ),
    max_size=6,
)

# ---------------------------------------------------------------- targets


def model_yaml_text(text: str) -> None:
    """Write ``text`` as a model YAML and build it (read_yaml budget, graph checks, budget checks)."""
    from modyolo.nn.model import DetectionModel

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "fuzz.yaml"
        p.write_text(text, encoding="utf-8", errors="surrogatepass") if isinstance(text, str) else p.write_bytes(text)
        DetectionModel(str(p))


def model_cfg_dict(cfg: dict) -> None:
    from modyolo.nn.model import DetectionModel

    DetectionModel(cfg)


def data_yaml_text(text: str) -> None:
    from modyolo.data.dataset_yaml import load_data_config

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "data.yaml"
        p.write_text(text, encoding="utf-8", errors="surrogatepass")
        load_data_config(p)


def label_rows_parse(rows: list[list[str]]) -> None:
    from modyolo.data.verify import parse_labels

    parse_labels(rows, 5, (64, 48))


def label_file_bytes(data: bytes, image: Path) -> dict:
    """A label file's raw bytes through the per-image check: must return a verdict, never raise."""
    from modyolo.data.verify import _verify_one

    with tempfile.TemporaryDirectory() as d:
        lb = Path(d) / "x.txt"
        lb.write_bytes(data)
        out = _verify_one(str(image), str(lb), 5)
    assert isinstance(out, dict) and ("corrupt" in out or "labels" in out)
    return out


def checkpoint_bytes(data: bytes) -> None:
    from modyolo.engine.checkpoint import load_checkpoint

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "w.pt"
        p.write_bytes(data)
        load_checkpoint(p)


def small_checkpoint() -> bytes:
    """A real checkpoint (a small module's state_dict in modyolo's format) for mutation."""
    import torch

    from modyolo.engine.checkpoint import save_checkpoint

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "c.pt"
        save_checkpoint(p, model=torch.nn.Conv2d(3, 4, 3), epoch=1, names=["a"])
        return p.read_bytes()


@st.composite
def mutated_bytes(draw, base: bytes) -> bytes:
    """``base`` truncated, with bytes flipped or spliced."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "splice"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] ^= draw(st.integers(1, 255))
        elif op == "truncate":
            del data[i:]
        else:
            data[i:i] = draw(st.binary(max_size=16))
    return bytes(data)


def call_allowed(fn, *args) -> BaseException | None:
    """Run a target; return the allowed error it raised (None when it returned). Other errors propagate."""
    try:
        fn(*args)
    except ALLOWED as e:
        return e
    return None
