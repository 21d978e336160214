"""``modyolo demo`` (what ``make demo`` runs): compare three backbones on the embedded dataset.

Generates the shapes dataset if needed, then runs :func:`modyolo.tools.compare.compare` on
yolov5n, the MobileNetV2 variant and the ResNet18 variant, scaled and trained as the shipped
``cfg/demo.yaml`` says (no magic numbers here), and prints the table, the wall time and where the
report is.
"""

from __future__ import annotations

import difflib
import os
from importlib import resources
from pathlib import Path
from typing import Any

from modyolo.yaml_io import read_yaml

TOP_KEYS = {"data", "variants", "train", "hyp", "latency", "samples", "project", "name", "seeds", "jobs", "bootstrap"}
VARIANT_KEYS = {"name", "cfg", "width_multiple", "depth_multiple"}
LATENCY_KEYS = {"warmup", "runs", "layout", "threads"}


def default_config() -> Path:
    return Path(str(resources.files("modyolo") / "cfg" / "demo.yaml"))


def _check_keys(section: dict, allowed: set[str], where: str) -> None:
    for key in section:
        if key not in allowed:
            near = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else f"; known keys: {', '.join(sorted(allowed))}"
            raise ValueError(f"{where}: unknown key {key!r}{hint}")


def load_demo_config(path: str | Path | None = None) -> dict[str, Any]:
    """The demo settings, checked: unknown keys are errors naming the file and the near key."""
    path = Path(path) if path else default_config()
    if not path.is_file():
        raise FileNotFoundError(f"demo config {path} not found")
    cfg = read_yaml(path)
    if not isinstance(cfg, dict) or not cfg.get("variants"):
        raise ValueError(f"{path}: expected a mapping with a non-empty 'variants' list")
    _check_keys(cfg, TOP_KEYS, str(path))
    for i, v in enumerate(cfg["variants"]):
        if not isinstance(v, dict) or "cfg" not in v:
            raise ValueError(f"{path}: variants[{i}] needs at least 'cfg: <model YAML>'")
        _check_keys(v, VARIANT_KEYS, f"{path}: variants[{i}]")
    _check_keys(cfg.get("latency") or {}, LATENCY_KEYS, f"{path}: latency")
    from modyolo.engine.config import TrainConfig

    TrainConfig.from_dict(cfg.get("train") or {}, source=f"{path}: train")
    cfg["_path"] = str(path)
    return cfg


def build_variants(cfg: dict[str, Any]) -> tuple[list[dict], list[str]]:
    """Model YAML dicts with the configured multiples, and their display names."""
    from modyolo.nn.graph import load_model_yaml

    models, names = [], []
    for v in cfg["variants"]:
        model, _ = load_model_yaml(v["cfg"])
        for key in ("width_multiple", "depth_multiple"):
            if key in v:
                model[key] = float(v[key])
        models.append(model)
        names.append(str(v.get("name") or Path(v["cfg"]).stem))
    return models, names


def build_hyp(cfg: dict[str, Any]) -> dict[str, Any] | str:
    """The demo's hyp for TrainConfig: ``''`` (modyolo train's default) without a ``hyp`` section;
    with ``base`` (a shipped hyp), that hyp in full with the other keys overridden; otherwise only
    the keys given, so ``--optimizer auto`` still fits the ones left out (engine/recipe_auto.py)."""
    from modyolo.engine.hyp import load_hyp

    section = dict(cfg.get("hyp") or {})
    if not section:
        return ""
    if "base" not in section:
        load_hyp(section)  # validated here: a typo fails before any training
        return section
    base = section.pop("base")
    return load_hyp(base, **section).to_dict()


def _seed_settings(cfg: dict[str, Any]) -> dict[str, Any]:
    """compare's seeds / jobs / bootstrap from the demo config (``seeds``: a count or a list, as ``--seeds``)."""
    from modyolo.tools.compare import parse_seeds
    from modyolo.tools.compare_jobs import cpu_cores

    seeds = cfg.get("seeds")
    out: dict[str, Any] = {
        "seeds": parse_seeds(
            seeds if isinstance(seeds, list) else None if seeds is None else [seeds],
            int((cfg.get("train") or {}).get("seed", 0)),
        )
    }
    out["jobs"] = max(1, min(int(cfg.get("jobs", 1)), cpu_cores()))  # never more processes than cores
    out["n_boot"] = int(cfg.get("bootstrap", 1000))
    return out


def _load() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


__all__ = ["build_hyp", "build_variants", "default_config", "load_demo_config"]
