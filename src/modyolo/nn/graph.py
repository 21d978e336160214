"""YAML layer list -> ``nn.Module`` layers.

Reads yolov5 model YAML verbatim (``nc``, ``depth_multiple``, ``width_multiple``, ``anchors``,
``activation``, ``backbone`` + ``head`` rows ``[from, number, module, args]``). Every name goes
through a registry and every arg must be a literal, ``nc`` or ``anchors``: nothing is evaluated,
because a YAML file is untrusted input. Each block reads its own row (``from_row``), so the
builder has no per-module branches.
"""

from __future__ import annotations

import contextlib
import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from torch import nn

from modyolo.nn import blocks as _blocks  # noqa: F401  (registers every block family)
from modyolo.nn import budget
from modyolo.nn.registry import ACTIVATIONS, BLOCKS
from modyolo.nn.row import Channels, ModelConfigError, Row, using_activation
from modyolo.nn.scales import apply_scales, guess_scale, unscaled_name
from modyolo.registry import RegistryError
from modyolo.yaml_io import loads_yaml, read_yaml

REQUIRED_KEYS = ("backbone", "head")
# Strings an arg may legitimately hold (modes, model names, file paths); anything with call or
# attribute syntax is refused before a block ever sees it.
_SAFE_STRING = re.compile(r"^[\w\-./: +~]*$")
_LITERALS = {"None": None, "True": True, "False": False}
# Modules of the origins' YAMLs that modyolo deliberately does not build: say so, not "unknown".
OUT_OF_SCOPE = {
    "Segment": "'Segment' (yolov5's instance-segmentation head) is out of scope: modyolo builds detectors. "
    "Use the detection version of this YAML (its head row ends in Detect [nc, anchors])",
    "IBin": "unknown module 'IBin' (yolov7's binned-regression head is not supported); did you mean 'IDetect'?",
    "IKeypoint": "unknown module 'IKeypoint' (yolov7's pose head is out of scope: modyolo builds detectors); "
    "did you mean 'IDetect'?",
}
# An activation written as an arg: `nn.Name`, `nn.Name(...)` or `Name(...)` (a bare word is a mode string).
_ACTIVATION_ARG = re.compile(r"^\s*(nn\.[A-Za-z]\w*(\([\w.+\-, ]*\))?|[A-Za-z]\w*\([\w.+\-, ]*\))\s*$")


@dataclass
class Layer:
    """A built layer plus the routing the model's forward needs.

    ``sources``: the absolute indices ``from`` names, resolved once here (-1 = the input image,
    only for layer 0); the forward loop, the dry run and the profile all read them.
    """

    module: nn.Module
    index: int
    from_: int | list[int]
    number: int
    name: str
    args: list[Any]
    c2: Channels
    sources: list[int]


def shipped_configs() -> list[str]:
    """File names of the model YAMLs shipped in ``modyolo/cfg/models``."""
    root = resources.files("modyolo") / "cfg" / "models"
    return sorted(p.name for p in root.iterdir() if p.name.endswith(".yaml"))


def resolve_cfg_path(cfg: str | Path) -> Path:
    """A path as given, or the name of a shipped config (``yolov5s.yaml`` or ``yolov5s``)."""
    p = Path(cfg)
    if p.is_file():
        return p
    name = p.name if p.suffix in {".yaml", ".yml"} else f"{p.name}.yaml"
    shipped = resources.files("modyolo") / "cfg" / "models" / name
    if shipped.is_file():
        return Path(str(shipped))
    near = [n for n in shipped_configs() if n.split(".")[0] in name or name.split(".")[0] in n]
    hint = f"; shipped configs like it: {', '.join(near)}" if near else f"; shipped: {', '.join(shipped_configs())}"
    raise FileNotFoundError(f"model config {str(cfg)!r} is neither a file nor a shipped config{hint}")


def load_model_yaml(cfg: str | Path | dict) -> tuple[dict, str]:
    """(config dict, source name for messages). Accepts a path, a shipped name or a dict."""
    if isinstance(cfg, dict):
        return copy.deepcopy(cfg), str(cfg.get("yaml_file", "<dict>"))
    name, given, unscaled = "", Path(str(cfg)), unscaled_name(cfg)
    try:
        if not given.is_file() and unscaled and Path(unscaled).is_file() and given.parent != Path("."):
            raise FileNotFoundError  # .../yolov5n.yaml beside .../yolov5.yaml: that file, not a shipped yolov5n
        path = resolve_cfg_path(cfg)
    except FileNotFoundError:  # ultralytics naming: yolo11n.yaml = scale n of yolo11.yaml
        if not unscaled:
            raise
        try:
            path, name = resolve_cfg_path(unscaled), given.name
        except FileNotFoundError:
            raise FileNotFoundError(
                f"model config {str(cfg)!r} is neither a file nor a shipped config, and "
                f"neither is {unscaled!r} (its unscaled name)"
            ) from None
    try:
        data = read_yaml(path)  # budgeted: an alias bomb is refused here, naming the file
    except ValueError as e:
        raise ModelConfigError(str(e)) from e
    if not isinstance(data, dict):
        raise ModelConfigError(f"{path}: expected a mapping with 'backbone' and 'head', got {type(data).__name__}")
    data.setdefault("yaml_file", name or path.name)
    if "scales" in data and not data.get("scale") and guess_scale(cfg):
        data["scale"] = guess_scale(cfg)
    return data, name or path.name


def parse_activation(spec: Any, source: str) -> Callable[[], nn.Module]:
    """``nn.LeakyReLU(0.1)`` / ``SiLU`` / ``nn.ReLU()`` -> a factory; args must be literals."""
    m = re.fullmatch(r"\s*([\w.]+)\s*(?:\((.*)\))?\s*", str(spec))
    if not m:
        raise ModelConfigError(f"{source}: activation {spec!r} is not of the form Name or Name(args)")
    name, arg_text = m.group(1), (m.group(2) or "").strip()
    try:
        cls = ACTIVATIONS.get(name)
    except RegistryError as e:
        raise ModelConfigError(f"{source}: {e}") from None
    args: list[Any] = []
    if arg_text:
        try:
            parsed = loads_yaml(f"[{arg_text}]", source)  # numbers / booleans only, no evaluation
        except ValueError as e:
            raise ModelConfigError(f"{source}: activation args {arg_text!r} are not literals") from e
        if not all(isinstance(a, (int, float, bool)) for a in parsed):
            raise ModelConfigError(f"{source}: activation args {arg_text!r} must be numbers or booleans")
        args = parsed
    kwargs: dict[str, Any] = {"inplace": True}  # yolov5 sets activations in-place
    try:
        cls(*args, **kwargs)
    except TypeError:
        kwargs = {}
        try:
            cls(*args)
        except TypeError as e:
            raise ModelConfigError(f"{source}: activation {spec!r}: {e}") from None
    return lambda: cls(*args, **kwargs)


def _resolve_arg(a: Any, cfg: dict, where: str) -> Any:
    """Substitute the symbols yolov5 YAMLs use in args; refuse anything resembling code."""
    if isinstance(a, list):
        return [_resolve_arg(x, cfg, where) for x in a]
    if not isinstance(a, str):
        return a
    if a == "nc":
        return cfg["nc"]
    if a == "anchors":
        return cfg["anchors"]
    if a in _LITERALS:
        return _LITERALS[a]
    if _ACTIVATION_ARG.match(a):
        # yolov7 writes a layer's activation as an arg, e.g. nn.LeakyReLU(0.1): parsed like the
        # `activation:` key (registry name + literal args), never evaluated.
        return parse_activation(a, where)()
    if not _SAFE_STRING.match(a) or "__" in a:
        raise ModelConfigError(
            f"{where}: arg {a!r} looks like a Python expression; modyolo never evaluates YAML. "
            "Write a literal (number, list, true/false, null) or one of the names nc, anchors"
        )
    return a


def _check_row(row: Any, i: int, source: str, section: str) -> tuple[Any, int, str, list]:
    if not isinstance(row, list) or len(row) != 4:
        raise ModelConfigError(
            f"layer {i} of {source} ({section}): a row must be [from, number, module, args], got {row!r}"
        )
    f, n, name, args = row
    if not isinstance(name, str):
        raise ModelConfigError(f"layer {i} of {source}: module must be a name, got {name!r}")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ModelConfigError(f"layer {i} ({name}) of {source}: number must be an integer >= 1, got {n!r}")
    if args is None:
        args = []
    if not isinstance(args, list):
        raise ModelConfigError(f"layer {i} ({name}) of {source}: args must be a list, got {args!r}")
    return f, n, name, args


def _check_from(f: Any, i: int, name: str, source: str) -> list[int]:
    """Absolute layer indices of ``from`` (-1 = the input image for layer 0)."""
    items = f if isinstance(f, list) else [f]
    if not items or not all(isinstance(x, int) and not isinstance(x, bool) for x in items):
        raise ModelConfigError(f"layer {i} ({name}) of {source}: 'from' must be an int or a list of ints, got {f!r}")
    out = []
    for x in items:
        j = x + i if x < 0 else x
        if x == -1 and i == 0:
            j = -1  # the input image
        elif not 0 <= j < i:
            raise ModelConfigError(
                f"layer {i} ({name}) of {source}: 'from' {x} points at layer {j}, but only layers "
                f"0..{i - 1} come before it; use a negative offset or an earlier index"
            )
        out.append(j)
    return out


def build_layers(cfg: dict, source: str, ch: int = 3, extra: dict | None = None) -> tuple[list[Layer], list[int]]:
    """Build every row; return the layers and the indices whose outputs later rows reuse."""
    for key in REQUIRED_KEYS:
        if key not in cfg:
            raise ModelConfigError(f"{source}: missing key {key!r} (a model YAML needs 'backbone' and 'head' lists)")
        if not isinstance(cfg[key], list):
            raise ModelConfigError(f"{source}: {key!r} must be a list of [from, number, module, args] rows")
    nc = cfg.setdefault("nc", 80)
    if not isinstance(nc, int) or isinstance(nc, bool) or nc < 1:
        raise ModelConfigError(f"{source}: nc must be a positive integer, got {nc!r}")
    max_channels = apply_scales(cfg, source)
    gd = cfg.setdefault("depth_multiple", 1.0)
    gw = cfg.setdefault("width_multiple", 1.0)
    for key, v in (("depth_multiple", gd), ("width_multiple", gw)):
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
            raise ModelConfigError(f"{source}: {key} must be a positive number, got {v!r}")
    anchors = cfg.get("anchors", 3)
    na = len(anchors[0]) // 2 if isinstance(anchors, list) and anchors and isinstance(anchors[0], list) else anchors
    if not isinstance(na, int) or isinstance(na, bool):
        raise ModelConfigError(f"{source}: anchors must be a list of [w, h, ...] lists or an int, got {anchors!r}")
    act = parse_activation(cfg["activation"], source) if cfg.get("activation") else None

    rows = [(r, "backbone") for r in cfg["backbone"]] + [(r, "head") for r in cfg["head"]]
    # limits before work: refuse what cannot fit before allocating it (see nn/budget.py)
    budget.check_repeats(source, gd, [_check_row(r, i, source, s)[1] for i, (r, s) in enumerate(rows)])
    budget.check_params(source, gw, lambda: build_layers(copy.deepcopy(cfg), source, ch, extra)[0])
    layers: list[Layer] = []
    channels: list[Channels] = []
    save: set[int] = set()
    # rows may read the model YAML's top-level keys and the layers built before them (a head that
    # follows ultralytics picks its class branch by the blocks in front of it)
    extra = {**(extra or {}), "yaml": cfg, "built": layers}
    with using_activation(act) if act else contextlib.nullcontext():
        for i, (raw, section) in enumerate(rows):
            f, n, name, args = _check_row(raw, i, source, section)
            where = f"layer {i} ({name}) of {source}"
            try:
                block = BLOCKS.get(name)
            except RegistryError as e:
                if name in OUT_OF_SCOPE:
                    raise ModelConfigError(f"{where}: {OUT_OF_SCOPE[name]}") from None
                raise ModelConfigError(f"{where}: {e}") from None
            sources = _check_from(f, i, name, source)
            ch_in = [ch if j == -1 else channels[j] for j in sources]
            if any(isinstance(c, int) and c <= 0 for c in ch_in):  # e.g. a Conv row with 0 (or 0.01 x width) channels
                raise ModelConfigError(
                    f"{where}: its input has {ch_in} channels; the rows feeding it need at least 1 "
                    "output channel (check their args and width_multiple)"
                )
            number = max(round(n * gd), 1) if n > 1 else n
            row = Row(
                index=i,
                source=source,
                from_=f,
                number=number,
                module=name,
                args=[_resolve_arg(a, cfg, where) for a in args],
                ch_in=ch_in,
                width_multiple=gw,
                depth_multiple=gd,
                nc=nc,
                no=na * (nc + 5),
                extra=extra,
                max_channels=max_channels,
            )
            module, c2 = block.from_row(row)
            layers.append(Layer(module, i, f, number, name, args, c2, sources))
            channels.append(c2)
            save.update(j for j in sources if j != -1 and j != i - 1)
    return layers, sorted(save)
