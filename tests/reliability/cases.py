"""The bad-input kinds of the reliability suite: what a user can do wrong, and what modyolo answers.

Each :class:`Case` builds its inputs under ``env.inp`` and returns the ``modyolo`` argv; the test
(``test_bad_input.py``) runs it in-process from ``env.work`` (the run folder) and checks the
verdict, the exit code, the expected words, that no traceback was printed and that nothing under
``env.inp`` changed. ``python -m tests.reliability.table`` writes the README's table from this list.

Verdicts: ``error`` (one clear line, exit 1, or 2 for a flag refused at parse time),
``skip`` (the bad file is reported and skipped, the run goes on) and ``accepted`` (the input is
valid or repaired, with a line saying so where something was changed).
"""

from __future__ import annotations

import errno
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

BOMB = (
    "\n".join(
        [f"a: &a [{', '.join(['lol'] * 9)}]"]
        + [f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi", strict=True)]
    )
    + "\n"
)


@dataclass
class Env:
    """Paths of one case: ``inp`` (inputs, must not change), ``work`` (cwd and run folder), fixtures."""

    inp: Path
    work: Path
    data: Path  # a copy of the tiny shapes dataset's YAML (nc=5), under inp
    cfg: Path  # a tiny yolov5n YAML (width 0.125), under inp
    ckpt: Path  # a tiny checkpoint for that YAML and nc=5, under inp
    ckpt_nc2: Path  # the same architecture for 2 classes

    def write(self, name: str, text: str | bytes) -> str:
        p = self.inp / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(text) if isinstance(text, bytes) else p.write_text(text, encoding="utf-8")
        return str(p)

    @property
    def ds(self) -> Path:
        return self.data.parent


@dataclass(frozen=True)
class Case:
    kind: str
    group: str
    verdict: str  # error | skip | accepted
    build: Callable[[Env], list[str]]
    rc: int
    expect: str = ""  # words the output must contain (case-insensitive)
    patch: Callable | None = None  # (monkeypatch, env) -> None: simulate the environment (full disk...)
    check: Callable[[Env, str], None] | None = None  # extra assertions (env, output)
    slow: bool = False
    tags: tuple[str, ...] = field(default_factory=tuple)


def _model_yaml(env: Env, **changes) -> str:
    import yaml

    cfg = yaml.safe_load(env.cfg.read_text())
    cfg.update(changes)
    return env.write("model.yaml", yaml.safe_dump(cfg, sort_keys=False))


def _shipped(name: str, env: Env, key: str, value: str) -> str:
    from modyolo.nn.graph import resolve_cfg_path

    text = resolve_cfg_path(name).read_text()
    lines = [f"{key}: {value}" if ln.startswith(f"{key}:") else ln for ln in text.splitlines()]
    return env.write(name, "\n".join(lines) + "\n")


def _data_yaml(env: Env, text: str) -> str:
    return env.write("data.yaml", f"path: {env.ds}\n" + text)


def profile(path_fn: Callable[[Env], str], *extra: str) -> Callable[[Env], list[str]]:
    return lambda env: ["profile", "--cfg", path_fn(env), "--img", "64", "--runs", "1", *extra]


def verify(path_fn: Callable[[Env], str], *extra: str) -> Callable[[Env], list[str]]:
    return lambda env: ["data", "verify", "--data", path_fn(env), *extra]


def train(*extra: str, data: Callable[[Env], str] | None = None) -> Callable[[Env], list[str]]:
    return lambda env: [
        "train",
        "--data",
        data(env) if data else str(env.data),
        "--cfg",
        str(env.cfg),
        "--epochs",
        "1",
        "--img",
        "64",
        "--batch-size",
        "4",
        "--workers",
        "0",
        "--noval",
        "--noautoanchor",
        "--noplots",
        "--quiet",
        "--project",
        str(env.work / "runs"),
        *extra,
    ]


def val(weights: Callable[[Env], str] | None = None, *extra: str) -> Callable[[Env], list[str]]:
    return lambda env: [
        "val",
        "--weights",
        weights(env) if weights else str(env.ckpt),
        "--data",
        str(env.data),
        "--img",
        "64",
        "--workers",
        "0",
        "--project",
        str(env.work / "runs"),
        *extra,
    ]


def detect(source: Callable[[Env], str], *extra: str, weights: Callable[[Env], str] | None = None):
    return lambda env: [
        "detect",
        "--weights",
        weights(env) if weights else str(env.ckpt),
        "--source",
        source(env),
        "--img",
        "64",
        "--project",
        str(env.work / "runs"),
        *extra,
    ]


def _label(env: Env, text: str | bytes, split: str = "train") -> None:
    """Replace the first label file of ``split`` with ``text``."""
    lb = sorted((env.ds / "labels" / split).glob("*.txt"))[0]
    lb.write_bytes(text) if isinstance(text, bytes) else lb.write_text(text, encoding="utf-8")


def with_label(text: str | bytes, split: str = "train", *extra: str):
    def build(env: Env) -> list[str]:
        _label(env, text, split)
        return ["data", "verify", "--data", str(env.data), "--split", split, *extra]

    return build


def with_image(make: Callable[[Path], None], split: str = "train", *extra: str):
    def build(env: Env) -> list[str]:
        im = sorted((env.ds / "images" / split).glob("*"))[0]
        make(im)
        return ["data", "verify", "--data", str(env.data), *extra]

    return build


def _truncate(p: Path) -> None:
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 3])


def _huge_png(p: Path) -> None:
    from PIL import Image

    p.unlink()
    Image.new("L", (20000, 20000)).save(p.with_suffix(".png"))  # 400 M pixels, a ~400 KB file


def _huge_png_file(env: Env) -> str:
    p = env.inp / "src" / "huge.png"
    p.parent.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    Image.new("L", (20000, 20000)).save(p)
    shutil.copy(next((env.ds / "images" / "val").glob("*")), p.parent / "ok.jpg")
    return str(p.parent)


def _with_ok(env: Env, name: str, data: bytes) -> str:
    """A source folder with one good image and the bad file ``name``."""
    env.write(f"src/{name}", data)
    shutil.copy(next((env.ds / "images" / "val").glob("*")), env.inp / "src" / "ok.jpg")
    return str(env.inp / "src")


def _onnx_bytes() -> bytes:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 64, 64])
    graph = helper.make_graph([helper.make_node("Relu", ["images"], ["out"])], "g", [x], [y])
    return helper.make_model(graph).SerializeToString()


def _torchscript_bytes(env: Env) -> bytes:
    import torch

    p = env.inp / "ts.tmp"
    torch.jit.save(torch.jit.script(torch.nn.ReLU()), str(p))
    data = p.read_bytes()
    p.unlink()
    return data


def _voc(env: Env, imagesets: bool) -> str:
    import cv2

    voc = env.inp / "VOC"
    for k, stem in enumerate(("a", "b")):
        (voc / "Annotations").mkdir(parents=True, exist_ok=True)
        (voc / "JPEGImages").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(voc / "JPEGImages" / f"{stem}.jpg"), np.full((80, 100, 3), 40 * k, np.uint8))
        (voc / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><filename>{stem}.jpg</filename><size><width>100</width><height>80</height></size>"
            "<object><name>cat</name><bndbox><xmin>11</xmin><ymin>21</ymin><xmax>50</xmax><ymax>60</ymax>"
            "</bndbox></object></annotation>"
        )
    if imagesets:
        (voc / "ImageSets" / "Main").mkdir(parents=True)
        (voc / "ImageSets" / "Main" / "train.txt").write_text("a\n")
        (voc / "ImageSets" / "Main" / "val.txt").write_text("b\n")
    return str(voc)


def _coco(env: Env, **changes) -> list[str]:
    import cv2

    imgs = env.inp / "coco_images"
    imgs.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(imgs / "1.jpg"), np.zeros((60, 80, 3), np.uint8))
    gt = {
        "images": [{"id": 1, "file_name": "1.jpg", "width": 80, "height": 60}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [10, 10, 20, 20], "iscrowd": 0}],
        "categories": [{"id": 3, "name": "cat"}],
    }
    gt.update(changes)
    path = env.write("gt.json", json.dumps(gt))
    return ["convert", "coco2yolo", "--json", path, "--images", str(imgs), "--out", str(env.work / "coco")]


def _no_file(env: Env) -> str:
    return str(env.inp / "does_not_exist.yaml")


def _ro_project(monkeypatch, env: Env) -> None:
    """The kernel's answer for a read-only mount (root passes chmod checks, so simulate it)."""
    real = Path.mkdir
    target = str(env.work / "ro")

    def mkdir(self, *a, **k):
        if str(self).startswith(target):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "mkdir", mkdir)


def _full_disk(monkeypatch, env: Env) -> None:
    import torch

    def save(obj, f, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", save)


def _full_disk_after(monkeypatch, env: Env, n_ok: int) -> None:
    """The disk fills after ``n_ok`` successful checkpoint writes."""
    import torch

    real, calls = torch.save, []

    def save(obj, f, *a, **k):
        calls.append(1)
        if len(calls) > n_ok:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", save)


def _last_kept(env: Env, out: str) -> None:
    """The checkpoint written before the disk filled is still there, whole, and loads."""
    from modyolo.engine.checkpoint import load_checkpoint

    _no_tmp_left(env, out)
    last = next(env.work.rglob("last.pt"))
    assert load_checkpoint(last)["epoch"] == 0


def _table_printed(out: str) -> None:
    assert "mAP50-95" in out and "tiny" in out, "compare --quiet hid the final table"


def _no_tmp_left(env: Env, out: str) -> None:
    assert not list(env.work.rglob("*.tmp")), "a temporary checkpoint was left behind"


def _no_run_folder(env: Env, out: str) -> None:
    assert not (env.work / "runs").exists(), "a run folder was left by a refused run"


def _memory_at(share: float) -> Callable:
    """Set MODYOLO_MEMORY_LIMIT so that the tiny model's training at ``train()``'s batch 4 x 64 px
    needs ``share`` of it (nn/budget.py's estimate)."""

    def patch(monkeypatch, env: Env) -> None:
        from modyolo.nn.budget import estimate_train_memory
        from modyolo.nn.model import DetectionModel

        needed = estimate_train_memory(DetectionModel(str(env.cfg), nc=5), 4, 64).needed
        monkeypatch.setenv("MODYOLO_MEMORY_LIMIT", str(int(needed / share)))

    return patch


def _no_val_from_train(env: Env, out: str) -> None:
    text = (env.work / "voc" / "data.yaml").read_text()
    assert "val:" not in text and "train: images/train" in text


def _coco_val_only(env: Env, out: str) -> None:
    text = (env.work / "coco" / "data.yaml").read_text()
    assert "val: images/val" in text and "train:" not in text


def _cache_damaged(env: Env) -> list[str]:
    from modyolo.data.formats.yolo import list_image_files
    from modyolo.data.verify import scan

    files = list_image_files([env.ds / "images" / "train"])
    rep = scan(files, 5, progress=False)
    data = json.loads(rep.cache_path.read_text())
    first = next(iter(data["results"]))
    data["results"][first]["labels"] = [[0, 0.5, 0.5, 0.2]]  # a column deleted by hand
    rep.cache_path.write_text(json.dumps(data))
    return ["data", "verify", "--data", str(env.data), "--split", "train"]


def _cache_garbage(env: Env) -> list[str]:
    (env.ds / "labels" / "train.modyolo.cache").write_text("{not json")
    return ["data", "verify", "--data", str(env.data), "--split", "train"]


def _npy_damaged(env: Env) -> list[str]:
    """A --cache disk run whose first cached .npy was then truncated: the next run repairs it."""
    from modyolo.cli import main

    argv = train("--cache", "disk", "--name", "first")(env)
    assert main(argv) == 0
    npy = sorted(env.ds.rglob("*.npy"))
    assert npy, "--cache disk wrote no .npy files"
    for p in npy:
        p.write_bytes(p.read_bytes()[:100])
    return train("--cache", "disk", "--name", "second", "--verbose")(env)


def _val_corrupt(env: Env) -> list[str]:
    _truncate(sorted((env.ds / "images" / "val").glob("*"))[0])
    return ["data", "verify", "--data", str(env.data)]


def _flag_argv(verb: str, env: Env, *flag: str) -> list[str]:
    """A command line of ``verb`` that would run but for ``flag``."""
    if verb == "train":
        return train(*flag)(env)
    if verb == "val":
        return val(None, *flag)(env)
    if verb == "detect":
        return detect(lambda e: str(e.ds / "images" / "val"), *flag)(env)
    if verb == "profile":
        return profile(lambda e: str(e.cfg), *flag)(env)
    common = {
        "data": ["data", "show", "--data", str(env.data)],
        "export": ["export", "--weights", str(env.ckpt)],
        "compare": ["compare", "--cfg", str(env.cfg)],
        "tune": ["tune", "--data", str(env.data), "--cfg", str(env.cfg)],
        "benchmark": ["benchmark", "--weights", str(env.ckpt)],
    }
    return [*common[verb], *flag]


def _flag_case(verb: str, flag: str, value: str) -> Case:
    kind = f"flag_{verb}_{flag.strip('-').replace('-', '_')}_{value.replace('-', 'neg').replace('.', 'p')}"
    return Case(kind, F, "error", lambda env: _flag_argv(verb, env, flag, value), 2, flag)


BAD_ARGS = [  # model row arguments that must never be evaluated or crash
    ("model_args_code", "[[-1, 1, Conv, [__import__('os').system('echo x'), 3, 2]]]"),
    ("model_args_nested", "[[-1, 1, Conv, [[[[16]]], 3, 2]]]"),
]

M = "model YAML"
D = "data YAML"
H = "hyp YAML"
F = "flags"
W = "weights / model files"
S = "sources (detect)"
L = "labels and images"
C = "converters"
E = "environment"


CASES: list[Case] = [
    # ---- model YAML
    Case(
        "model_alias_bomb_args",
        M,
        "error",
        profile(
            lambda e: e.write(
                "m.yaml", BOMB + "backbone: [[-1, 1, Conv, [*i, 3, 2]]]\nhead: [[-1, 1, Detect, [nc, anchors]]]\n"
            )
        ),
        1,
        "alias",
    ),
    Case(
        "model_alias_bomb_unused_keys",
        M,
        "error",
        profile(lambda e: e.write("m.yaml", e.cfg.read_text() + BOMB)),
        1,
        "alias",
    ),
    Case(
        "model_deep_nesting",
        M,
        "error",
        profile(lambda e: e.write("m.yaml", "x: " + "[" * 500 + "]" * 500)),
        1,
        "nested",
    ),
    Case(
        "model_yaml_syntax",
        M,
        "error",
        profile(lambda e: e.write("m.yaml", "backbone: [[-1, 1, Conv\n")),
        1,
        "not valid YAML",
    ),
    Case("model_yaml_empty", M, "error", profile(lambda e: e.write("m.yaml", "")), 1, "expected a mapping"),
    Case("model_yaml_list", M, "error", profile(lambda e: e.write("m.yaml", "- 1\n- 2\n")), 1, "expected a mapping"),
    Case("model_missing_head", M, "error", profile(lambda e: e.write("m.yaml", "backbone: []\n")), 1, "head"),
    Case(
        "model_unknown_module",
        M,
        "error",
        profile(
            lambda e: e.write(
                "m.yaml", "backbone: [[-1, 1, Convv, [16, 3, 2]]]\nhead: [[-1, 1, Detect, [nc, anchors]]]\n"
            )
        ),
        1,
        "unknown",
    ),
    Case(
        "model_depth_multiple_100000",
        M,
        "error",
        profile(lambda e: _shipped("yolov5x.yaml", e, "depth_multiple", "100000")),
        1,
        "depth_multiple",
    ),
    Case(
        "model_width_multiple_8",
        M,
        "error",
        profile(lambda e: _shipped("yolov5x.yaml", e, "width_multiple", "8")),
        1,
        "width_multiple",
        patch=lambda mp, e: mp.setenv("MODYOLO_MAX_PARAMS", "5e8"),
    ),
    Case("model_negative_depth", M, "error", profile(lambda e: _model_yaml(e, depth_multiple=-1)), 1, "depth_multiple"),
    Case("model_nc_zero", M, "error", profile(lambda e: _model_yaml(e, nc=0)), 1, "nc"),
    Case("model_not_utf8", M, "error", profile(lambda e: e.write("m.yaml", b"\xff\xfe\x00garbage\x81")), 1, "UTF-8"),
    Case(
        "model_is_folder",
        M,
        "error",
        profile(lambda e: (e.inp / "dir.yaml").mkdir() or str(e.inp / "dir.yaml")),
        1,
        "dir.yaml",
    ),
    Case("model_missing_file", M, "error", profile(_no_file), 1, "does_not_exist"),
    Case(
        "model_bad_from",
        M,
        "error",
        profile(
            lambda e: e.write(
                "m.yaml", "backbone: [[7, 1, Conv, [16, 3, 2]]]\nhead: [[-1, 1, Detect, [nc, anchors]]]\n"
            )
        ),
        1,
        "layer 0",
    ),
    Case(
        "model_python_tag",
        M,
        "error",
        profile(lambda e: e.write("m.yaml", "backbone: !!python/object/apply:os.system ['echo x']\nhead: []\n")),
        1,
        "not valid YAML",
    ),
    Case(
        "model_args_code",
        M,
        "error",
        profile(lambda e: e.write("m.yaml", f"backbone: {BAD_ARGS[0][1]}\nhead: [[-1, 1, Detect, [nc, anchors]]]\n")),
        1,
        "layer 0",
    ),
    Case(
        "model_yaml_bom",
        M,
        "accepted",
        profile(lambda e: e.write("m.yaml", "\ufeff" + e.cfg.read_text())),
        0,
        "parameters",
    ),
    Case(
        "model_bad_activation",
        M,
        "error",
        profile(lambda e: _model_yaml(e, activation="__import__('os')")),
        1,
        "activation",
    ),
    # ---- data YAML
    Case(
        "data_alias_bomb_names",
        D,
        "error",
        verify(lambda e: _data_yaml(e, BOMB + "train: images/train\nval: images/val\nnames: *i\n")),
        1,
        "alias",
    ),
    Case(
        "data_missing_val", D, "error", verify(lambda e: _data_yaml(e, "train: images/train\nnames: [a]\n")), 1, "'val'"
    ),
    Case(
        "data_names_number",
        D,
        "error",
        verify(lambda e: _data_yaml(e, "train: images/train\nval: images/val\nnames: 5\n")),
        1,
        "names",
    ),
    Case(
        "data_nc_mismatch",
        D,
        "error",
        verify(lambda e: _data_yaml(e, "train: images/train\nval: images/val\nnc: 3\nnames: [a, b]\n")),
        1,
        "nc",
    ),
    Case(
        "data_train_path_missing",
        D,
        "error",
        verify(
            lambda e: _data_yaml(e, "train: images/nope\nval: images/val\nnames: [a, b, c, d, e]\n"), "--split", "train"
        ),
        1,
        "nope",
    ),
    Case(
        "data_yaml_syntax", D, "error", verify(lambda e: e.write("data.yaml", "train: [images\n")), 1, "not valid YAML"
    ),
    Case("data_yaml_empty", D, "error", verify(lambda e: e.write("data.yaml", "")), 1, "data.yaml"),
    Case(
        "data_yaml_too_big",
        D,
        "error",
        verify(lambda e: e.write("data.yaml", "# pad\n" * 4000)),
        1,
        "limit",
        patch=lambda mp, e: mp.setattr("modyolo.yaml_io.MAX_BYTES", 10_000),
    ),
    Case("data_yaml_missing", D, "error", verify(_no_file), 1, "does_not_exist"),
    # ---- hyp YAML
    Case(
        "hyp_unknown_key",
        H,
        "error",
        lambda e: train("--hyp", e.write("hyp.yaml", "lr0: 0.01\nlrr0: 0.1\n"))(e),
        1,
        "lrr0",
    ),
    Case("hyp_alias_bomb", H, "error", lambda e: train("--hyp", e.write("hyp.yaml", BOMB))(e), 1, "alias"),
    Case("hyp_value_text", H, "error", lambda e: train("--hyp", e.write("hyp.yaml", "lr0: fast\n"))(e), 1, "lr0"),
    # ---- flags (refused at parse time, before any work: exit 2)
    *[
        _flag_case(verb, flag, value)
        for verb, flag, value in [
            ("train", "--img", "0"),
            ("train", "--img", "-64"),
            ("train", "--batch-size", "0"),
            ("train", "--batch-size", "-5"),
            ("train", "--workers", "-1"),
            ("train", "--fraction", "0"),
            ("train", "--fraction", "1.5"),
            ("train", "--fraction", "nan"),
            ("train", "--epochs", "0"),
            ("train", "--epochs", "-1"),
            ("train", "--label-smoothing", "2"),
            ("train", "--patience", "-1"),
            ("val", "--batch-size", "0"),
            ("val", "--conf-thres", "1.5"),
            ("val", "--iou-thres", "-0.1"),
            ("detect", "--max-det", "0"),
            ("detect", "--vid-stride", "0"),
            ("export", "--img", "0"),
            ("export", "--batch-size", "0"),
            ("profile", "--nc", "0"),
            ("data", "--n", "0"),
            ("compare", "--jobs", "0"),
            ("tune", "--trials", "0"),
            ("benchmark", "--runs", "0"),
        ]
    ],
    Case("flag_not_a_number", F, "error", lambda e: train("--img", "abc")(e), 2, "--img"),
    Case(
        "flag_img_33_rounded",
        F,
        "accepted",
        lambda e: ["profile", "--cfg", str(e.cfg), "--img", "33", "--runs", "1"],
        0,
        "rounded up to 64",
    ),
    Case("unknown_verb", F, "error", lambda e: ["trian"], 2, "invalid choice"),
    # ---- weights and model files
    Case("weights_missing", W, "error", val(lambda e: str(e.inp / "nope.pt")), 1, "nope.pt"),
    Case(
        "weights_garbage_pt",
        W,
        "error",
        val(lambda e: e.write("g.pt", np.random.default_rng(0).bytes(3000))),
        1,
        "g.pt",
    ),
    Case("weights_truncated_pt", W, "error", val(lambda e: e.write("t.pt", e.ckpt.read_bytes()[:5000])), 1, "t.pt"),
    Case("weights_empty_pt", W, "error", val(lambda e: e.write("z.pt", b"")), 1, "z.pt"),
    Case(
        "weights_garbage_onnx",
        W,
        "error",
        val(lambda e: e.write("g.onnx", np.random.default_rng(1).bytes(3000))),
        1,
        "not a valid ONNX",
    ),
    Case("weights_truncated_onnx", W, "error", val(lambda e: e.write("t.onnx", _onnx_bytes()[:40])), 1, "t.onnx"),
    Case(
        "weights_garbage_torchscript",
        W,
        "error",
        val(lambda e: e.write("g.torchscript", np.random.default_rng(2).bytes(3000))),
        1,
        "g.torchscript",
    ),
    Case(
        "weights_truncated_torchscript",
        W,
        "error",
        val(lambda e: e.write("t.torchscript", _torchscript_bytes(e)[:300])),
        1,
        "t.torchscript",
    ),
    Case("weights_is_folder", W, "error", val(lambda e: str(e.ds)), 1, "ds"),
    Case(
        "weights_other_nc_partial_load",
        W,
        "accepted",
        lambda e: train("--weights", str(e.ckpt_nc2))(e),
        0,
        "partial load",
        slow=True,
    ),
    # ---- detect sources
    Case("source_missing", S, "error", detect(lambda e: str(e.inp / "nope")), 1, "nope"),
    Case(
        "source_empty_folder",
        S,
        "error",
        detect(lambda e: (e.inp / "empty").mkdir() or str(e.inp / "empty")),
        1,
        "no images",
    ),
    Case("source_huge_png", S, "skip", detect(_huge_png_file), 0, "MODYOLO_MAX_PIXELS"),
    Case("source_huge_png_limit_raised", S, "accepted", detect(_huge_png_file, "--max-pixels", "5e8"), 0, "image 1/2"),
    Case(
        "image_huge_limit_raised", L, "accepted", with_image(_huge_png, "train", "--max-pixels", "5e8"), 0, "0 corrupt"
    ),
    Case("source_corrupt_image", S, "skip", detect(lambda e: _with_ok(e, "x.jpg", b"\xff\xd8garbage")), 0, "x.jpg"),
    Case("source_text_as_image", S, "skip", detect(lambda e: _with_ok(e, "notes.png", b"hello")), 0, "notes.png"),
    Case(
        "source_all_unreadable",
        S,
        "skip",
        detect(lambda e: e.write("src/x.jpg", b"\xff\xd8garbage")),
        1,
        "could not be read",
    ),
    # ---- labels and images (per-file skip with a summary; verify exits 1 for corrupt files)
    Case("label_bom", L, "accepted", with_label("\ufeff0 0.5 0.5 0.2 0.2\n"), 0, "0 corrupt"),
    Case("label_bad_columns", L, "skip", with_label("0 0.5 0.5 0.2\n"), 1, "columns"),
    Case("label_non_numeric", L, "skip", with_label("0 0.5 abc 0.2 0.2\n"), 1, "non-numeric"),
    Case("label_class_out_of_range", L, "skip", with_label("9 0.5 0.5 0.2 0.2\n"), 1, "class id 9"),
    Case("label_coords_out_of_range", L, "skip", with_label("0 1.5 0.5 0.2 0.2\n"), 1, "outside [0, 1]"),
    Case("label_nan", L, "skip", with_label("0 nan 0.5 0.2 0.2\n"), 1, "non-finite"),
    Case("label_not_utf8", L, "skip", with_label(b"\xff\xfe\x81\x00 0.5\n"), 1, "unreadable label"),
    Case("label_overshoot_fixed", L, "accepted", with_label("0 0.95 0.5 0.2 0.2\n"), 0, "clipped"),
    Case("label_overshoot_strict", L, "error", with_label("0 0.95 0.5 0.2 0.2\n", "train", "--strict"), 1, "--strict"),
    Case("image_truncated_jpeg", L, "skip", with_image(_truncate), 1, "corrupt"),
    Case("image_zero_bytes", L, "skip", with_image(lambda p: p.write_bytes(b"")), 1, "corrupt"),
    Case("image_huge", L, "skip", with_image(_huge_png), 1, "MODYOLO_MAX_PIXELS"),
    Case("image_corrupt_in_val_only", L, "skip", _val_corrupt, 1, "val:"),
    Case("label_cache_hand_edited", L, "accepted", _cache_damaged, 0, "0 corrupt"),
    Case("label_cache_garbage", L, "accepted", _cache_garbage, 0, "0 corrupt"),
    Case("disk_cache_npy_damaged", L, "accepted", lambda e: _npy_damaged(e), 0, "is damaged", slow=True),
    # ---- converters
    Case(
        "voc_without_imagesets",
        C,
        "error",
        lambda e: ["convert", "voc2yolo", "--src", _voc(e, False), "--out", str(e.work / "voc")],
        1,
        "--split",
    ),
    Case(
        "voc_without_imagesets_split_given",
        C,
        "accepted",
        lambda e: ["convert", "voc2yolo", "--src", _voc(e, False), "--out", str(e.work / "voc"), "--split", "train"],
        0,
        "no 'val' split",
        check=_no_val_from_train,
    ),
    Case(
        "voc_xml_malformed",
        C,
        "skip",
        lambda e: (
            (_voc(e, True), e.write("VOC/Annotations/b.xml", "<annotation>"))
            and ["convert", "voc2yolo", "--src", str(e.inp / "VOC"), "--out", str(e.work / "voc")]
        ),
        0,
        "unreadable",
    ),
    Case(
        "voc_xml_entity_bomb",
        C,
        "skip",
        lambda e: (
            (
                _voc(e, True),
                e.write(
                    "VOC/Annotations/b.xml",
                    '<!DOCTYPE a [<!ENTITY x "xxxxxxxxxx"><!ENTITY y "&x;&x;&x;&x;&x;&x;&x;&x;&x;">'
                    '<!ENTITY z "&y;&y;&y;&y;&y;&y;&y;&y;&y;&y;">]><annotation><filename>&z;</filename></annotation>',
                ),
            )
            and ["convert", "voc2yolo", "--src", str(e.inp / "VOC"), "--out", str(e.work / "voc")]
        ),
        0,
        "b",
    ),
    Case(
        "coco_split_val",
        C,
        "accepted",
        lambda e: [*_coco(e), "--split", "val"],
        0,
        "no 'train' split",
        check=_coco_val_only,
    ),
    Case(
        "coco_categories_not_list",
        C,
        "error",
        lambda e: _coco(e, categories={"id": 3, "name": "cat"}),
        1,
        "'categories' must be a list",
    ),
    Case(
        "coco_unknown_category",
        C,
        "skip",
        lambda e: _coco(e, categories=[{"id": 1, "name": "dog"}]),
        0,
        "category_id 3 is not in",
    ),
    Case(
        "coco_json_garbage",
        C,
        "error",
        lambda e: (
            _coco(e)
            and [
                "convert",
                "coco2yolo",
                "--json",
                e.write("gt.json", "{oops"),
                "--images",
                str(e.inp),
                "--out",
                str(e.work / "c"),
            ]
        ),
        1,
        "cannot read COCO JSON",
    ),
    Case(
        "coco_json_list",
        C,
        "error",
        lambda e: [
            "convert",
            "coco2yolo",
            "--json",
            e.write("gt.json", "[1, 2]"),
            "--images",
            str(e.inp),
            "--out",
            str(e.work / "c"),
        ],
        1,
        "expected a JSON object",
    ),
    Case(
        "coco_bbox_not_list",
        C,
        "skip",
        lambda e: _coco(e, annotations=[{"id": 1, "image_id": 1, "category_id": 3, "bbox": "wide", "iscrowd": 0}]),
        0,
        "not [x, y, w, h]",
    ),
    Case(
        "coco_image_without_size",
        C,
        "skip",
        lambda e: _coco(
            e, images=[{"id": 2, "file_name": "2.jpg"}, {"id": 1, "file_name": "1.jpg", "width": 80, "height": 60}]
        ),
        0,
        "width/height",
    ),
    Case(
        "coco_no_usable_image",
        C,
        "error",
        lambda e: _coco(e, images=[{"id": 1, "file_name": "1.jpg"}]),
        1,
        "none of its 1 image entries",
    ),
    Case(
        "compare_quiet_keeps_table_and_failures",
        F,
        "accepted",
        lambda e: [
            "compare",
            "--runs",
            str(e.ckpt),
            str(e.inp / "missing-run"),
            "--data",
            str(e.data),
            "--img",
            "64",
            "--batch-size",
            "4",
            "--workers",
            "0",
            "--latency-runs",
            "2",
            "--latency-warmup",
            "1",
            "--threads",
            "1",
            "--no-onnx",
            "--no-report",
            "--samples",
            "0",
            "--project",
            str(e.work / "cmp"),
            "--quiet",
        ],
        0,
        "FAILED missing-run",
        check=lambda e, out: _table_printed(out),
        slow=True,
    ),
    Case("convert_missing_src", C, "error", lambda e: ["convert", "voc2yolo", "--out", str(e.work / "v")], 1, "--src"),
    # ---- environment
    Case(
        "project_read_only",
        E,
        "error",
        lambda e: val(None, "--project", str(e.work / "ro"))(e),
        1,
        "read-only",
        patch=_ro_project,
    ),
    Case("project_is_a_file", E, "error", lambda e: val(None, "--project", e.write("afile", "x"))(e), 1, "afile"),
    Case(
        "disk_full_at_checkpoint",
        E,
        "error",
        train(),
        1,
        "first checkpoint",
        patch=_full_disk,
        check=_no_tmp_left,
        slow=True,
    ),
    Case(
        "disk_full_after_a_checkpoint",
        E,
        "error",
        lambda e: train("--epochs", "2")(e),
        1,
        "--resume",
        patch=lambda mp, e: _full_disk_after(mp, e, 1),
        check=_last_kept,
        slow=True,
    ),
    Case(
        "train_batch_cannot_fit_memory",
        F,
        "error",
        lambda e: train("--batch-size", "4096", "--img", "1280")(e),  # ~1.5 TB of activations for the tiny model
        2,
        "--batch-size 4096 --img 1280",
        check=_no_run_folder,
    ),
    Case(
        "train_batch_1_cannot_fit_memory",
        F,
        "error",
        lambda e: train("--batch-size", "1", "--img", "1280")(e),
        2,
        "even --batch-size 1 does not fit",
        patch=lambda mp, e: mp.setenv("MODYOLO_MEMORY_LIMIT", "64M"),
        check=_no_run_folder,
    ),
    Case("train_memory_near_limit_warns", E, "accepted", train(), 0, "85% of the", patch=_memory_at(0.85)),
    Case(
        "env_memory_limit_not_a_size",
        E,
        "error",
        train(),
        2,
        "MODYOLO_MEMORY_LIMIT",
        patch=lambda mp, e: mp.setenv("MODYOLO_MEMORY_LIMIT", "lots"),
        check=_no_run_folder,
    ),
    Case(
        "env_max_pixels_not_number",
        E,
        "error",
        detect(lambda e: str(e.ds / "images" / "val")),
        1,
        "MODYOLO_MAX_PIXELS",
        patch=lambda mp, e: mp.setenv("MODYOLO_MAX_PIXELS", "lots"),
    ),
]
