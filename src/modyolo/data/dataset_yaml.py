"""Read a dataset YAML as yolov5 does: ``path``, ``train``, ``val``, optional ``test``, ``names``, ``nc``.

``train``/``val``/``test`` are a folder, a ``.txt`` list of image paths, or a list of those,
relative to ``path`` (itself relative to the YAML file's folder when not absolute; yolov5
resolves it against the working directory, which makes a YAML depend on where it is run from).
``names`` is a list or an ``{id: name}`` mapping with ids 0..nc-1.

The name ``shapes`` (or ``shapes.yaml`` when no such file exists) is the embedded demo dataset,
generated on first use into ``$MODYOLO_DATA_DIR/shapes-v<N>`` (default
``~/.cache/modyolo/datasets``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modyolo.yaml_io import read_yaml


@dataclass
class DataConfig:
    """A resolved dataset description; every path is absolute."""

    path: Path
    train: list[Path]
    val: list[Path]
    test: list[Path] | None
    names: list[str]
    nc: int
    source: Path  # the YAML file it came from


def _err(source: Path, key: str, msg: str) -> ValueError:
    return ValueError(f"{source}: key '{key}': {msg}")


def _names(raw: Any, nc: Any, source: Path) -> list[str]:
    if raw is None:
        if nc is None:
            raise _err(source, "names", "missing; give 'names' as a list or {id: name} (or at least 'nc')")
        return [f"class{i}" for i in range(int(nc))]
    if isinstance(raw, dict):
        try:
            ids = sorted(int(k) for k in raw)
        except (TypeError, ValueError) as e:
            raise _err(source, "names", "mapping keys must be integer class ids") from e
        if ids != list(range(len(ids))):
            raise _err(source, "names", f"class ids must be 0..{len(ids) - 1} without gaps, got {ids}")
        lookup = {int(k): v for k, v in raw.items()}
        names = [str(lookup[i]) for i in ids]
    elif isinstance(raw, (list, tuple)):
        names = [str(n) for n in raw]
    else:
        raise _err(source, "names", f"expected a list or a mapping, got {type(raw).__name__}")
    if nc is not None and int(nc) != len(names):
        raise _err(source, "nc", f"nc={nc} but {len(names)} names are given; make them agree")
    return names


def _sources(raw: Any, root: Path, key: str, source: Path, required: bool) -> list[Path] | None:
    if raw is None or raw == "":
        if required:
            raise _err(source, key, "missing; give a folder, a .txt list of images, or a list of those")
        return None
    items = raw if isinstance(raw, (list, tuple)) else [raw]
    out = []
    for item in items:
        if not isinstance(item, (str, Path)):
            raise _err(source, key, f"expected a path, got {item!r}")
        p = Path(os.path.expanduser(str(item)))
        out.append((p if p.is_absolute() else root / p).resolve())
    return out


def parse_data_dict(d: dict, source: Path) -> DataConfig:
    """Resolve an already-loaded data YAML mapping (``source`` anchors relative paths and errors)."""
    if not isinstance(d, dict):
        raise ValueError(f"{source}: expected a mapping with train/val/names, got {type(d).__name__}")
    root = Path(os.path.expanduser(str(d.get("path") or "")))
    if not root.is_absolute():
        root = source.parent / root
    root = root.resolve()
    names = _names(d.get("names"), d.get("nc"), source)
    return DataConfig(
        path=root,
        train=_sources(d.get("train"), root, "train", source, required=True),
        val=_sources(d.get("val"), root, "val", source, required=True),
        test=_sources(d.get("test"), root, "test", source, required=False),
        names=names,
        nc=len(names),
        source=source,
    )


def shapes_root() -> Path:
    """Where the embedded demo dataset lives (see module docstring)."""
    from .synthetic import SHAPES_VERSION

    base = os.environ.get("MODYOLO_DATA_DIR") or Path.home() / ".cache" / "modyolo" / "datasets"
    return Path(base).expanduser() / f"shapes-v{SHAPES_VERSION}"


def load_data_config(path_or_name: str | os.PathLike) -> DataConfig:
    """Load a data YAML file, or ``"shapes"`` for the embedded demo dataset (generated if missing)."""
    p = Path(os.path.expanduser(str(path_or_name)))
    if str(path_or_name) in ("shapes", "shapes.yaml") and not p.is_file():
        from .synthetic import ensure_shapes_dataset

        p = ensure_shapes_dataset(shapes_root())
    if not p.is_file():
        raise FileNotFoundError(f"data YAML '{path_or_name}' not found; give a path to a .yaml file or 'shapes'")
    return parse_data_dict(read_yaml(p), p.resolve())
