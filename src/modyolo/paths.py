"""Run folders: ``runs/<task>/exp``, ``exp2``, ... as yolov5 numbers them."""

from __future__ import annotations

from pathlib import Path


def increment_path(path: str | Path, exist_ok: bool = False, mkdir: bool = True) -> Path:
    """``path`` if free (or ``exist_ok``), else ``path2``, ``path3``, ... (the first free one)."""
    path = Path(path)
    if not exist_ok and path.exists():
        n = 2
        while (candidate := path.with_name(f"{path.name}{n}")).exists():
            n += 1
        path = candidate
    if mkdir:
        path.mkdir(parents=True, exist_ok=True)
    return path
