"""What was identical for every variant of a comparison and what differed; the resume check.

A comparison is fair when everything but the variant is the same. This module states it: the
data split (with a hash of its files), hyp, epochs, image size, seeds, augmentation, head,
device, threads, batch and the latency protocol, each either identical for all variants or
listed per variant. A variant reused from ``--runs`` is read from its ``args.yaml``/``hyp.yaml``;
where it was trained with other settings its row is flagged.

It also keeps ``compare_state.json`` in the comparison folder: the settings the jobs were trained
with, so a rerun with other settings is refused with the list of differences (like ``tune``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modyolo.data.augment import AUG_KEYS  # the hyp keys augmentation reads: one list
from modyolo.yaml_io import read_yaml

# TrainConfig fields a reused run is compared on (its args.yaml against this comparison's settings).
RUN_KEYS = ("epochs", "imgsz", "batch_size", "optimizer", "seed", "cos_lr", "nbs", "fraction", "single_cls")
STATE_FILE = "compare_state.json"


def data_fingerprint(data_cfg: Any) -> dict[str, Any]:
    """Image counts and a SHA-1 over the split: every image's relative path and size, every label file's bytes."""
    from modyolo.data.formats.yolo import img2label_paths, list_image_files

    h = hashlib.sha1()
    counts = {}
    for split in ("train", "val"):
        files = list_image_files(getattr(data_cfg, split))
        counts[split] = len(files)
        root = Path(data_cfg.path)
        for img, lab in zip(files, img2label_paths(files)):
            p = Path(img)
            rel = str(p.relative_to(root)) if p.is_relative_to(root) else p.name
            h.update(f"{split}\0{rel}\0{p.stat().st_size}\0".encode())
            lp = Path(lab)
            h.update(lp.read_bytes() if lp.is_file() else b"<no labels>")
    return {
        "source": str(data_cfg.source),
        "train_images": counts["train"],
        "val_images": counts["val"],
        "sha1": h.hexdigest()[:16],
    }


def cfg_hash(cfg: dict | None) -> str:
    return "" if cfg is None else hashlib.sha1(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:12]


def head_of(cfg: dict | None) -> str:
    """The head module of a model YAML dict (the last row's module name), '' when unknown."""
    try:
        return str(cfg["head"][-1][2])
    except (TypeError, KeyError, IndexError):
        return ""


# -- resume check -------------------------------------------------------------------------------


def check_state(save_dir: Path, state: dict[str, Any]) -> list[str]:
    """Compare ``state`` with the folder's saved one; write it when new. Returns notes (jobs added).

    Raises ValueError listing every difference in the shared settings or in a variant's model
    YAML. Adding seeds or variants is allowed: only their jobs are new.
    """
    path = Path(save_dir) / STATE_FILE
    if not path.is_file():
        path.write_text(json.dumps(state, indent=1, default=str), encoding="utf-8")
        return []
    saved = json.loads(path.read_text(encoding="utf-8"))
    diffs = []
    was, now = _flatten(saved["shared"]), _flatten(state["shared"])
    for key in sorted(set(was) | set(now)):
        if was.get(key) != now.get(key):
            diffs.append(f"{key}: was {_short(was.get(key))}, now {_short(now.get(key))}")
    for name, h in state["variants"].items():
        if name in saved["variants"] and saved["variants"][name] != h:
            diffs.append(f"variant {name}: its model YAML changed")
    if diffs:
        raise ValueError(
            f"{save_dir} holds a comparison trained with other settings ({'; '.join(diffs)}); rerun with "
            "the original settings to continue it, or pass --name NEW (or --fresh) to start a new one"
        )
    notes = [f"variant {v} added" for v in state["variants"] if v not in saved["variants"]]
    notes += [f"seed {s} added" for s in state["seeds"] if s not in saved["seeds"]]
    if notes:
        merged = {
            **state,
            "variants": {**saved["variants"], **state["variants"]},
            "seeds": sorted(set(saved["seeds"]) | set(state["seeds"])),
        }
        path.write_text(json.dumps(merged, indent=1, default=str), encoding="utf-8")
    return notes


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"epochs": 1}}`` -> ``{"epochs": 1}``; ``hyp``/``data`` keys keep their section name."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        name = k if prefix in ("", "train") else f"{prefix}.{k}"
        if isinstance(v, dict) and k in ("train", "hyp", "data") and not prefix:
            out.update(_flatten(v, k))
        else:
            out[name] = v
    return out


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


# -- protocol section ---------------------------------------------------------------------------


def run_settings(run_dir: str | Path | None) -> dict[str, Any]:
    """A reused run's training settings (``args.yaml``) and hyp (``hyp.yaml``); {} when absent."""
    if not run_dir:
        return {}
    out: dict[str, Any] = {}
    args, hyp = Path(run_dir) / "args.yaml", Path(run_dir) / "hyp.yaml"
    if args.is_file():
        out.update(read_yaml(args) or {})
    if hyp.is_file():
        out["_hyp"] = read_yaml(hyp) or {}
    return out


def run_flags(settings: dict[str, Any], train: dict[str, Any], hyp: dict[str, Any], data: dict[str, Any]) -> list[str]:
    """How a reused run's settings differ from this comparison's (empty when they match or are unknown)."""
    if not settings:
        return ["trained elsewhere: its settings are unknown (no args.yaml)"]
    diffs = [
        f"{k} {settings[k]} (here {train.get(k)})"
        for k in RUN_KEYS
        if k in settings and k in train and settings[k] != train[k]
    ]
    if "data" in settings and Path(str(settings["data"])).name != Path(data["source"]).name:
        diffs.append(f"data {Path(str(settings['data'])).name} (here {Path(data['source']).name})")
    their = settings.get("_hyp") or {}
    hyp_diff = sorted(k for k in hyp if k in their and their[k] != hyp[k])
    if hyp_diff:
        diffs.append("hyp " + ", ".join(f"{k}={their[k]} (here {hyp[k]})" for k in hyp_diff[:6]))
    return [f"trained with other settings: {', '.join(diffs)}"] if diffs else []


def protocol_rows(items: dict[str, dict[str, Any]]) -> tuple[list[tuple[str, str]], list[tuple[str, dict[str, str]]]]:
    """Split ``item -> {variant: value}`` into (identical for all: (item, value)), (differed: (item, per variant))."""
    same, differed = [], []
    for item, per in items.items():
        values = {v: str(x) for v, x in per.items()}
        if len(set(values.values())) <= 1:
            same.append((item, next(iter(values.values()), "")))
        else:
            differed.append((item, values))
    return same, differed


def protocol_items(
    variants: Sequence[Any],
    results: Sequence[Any],
    train: dict[str, Any],
    hyp: dict[str, Any],
    data: dict[str, Any],
    seeds: Sequence[int],
    latency: Any,
    job_threads: int,
    executor: str,
) -> dict[str, dict[str, Any]]:
    """``item -> {variant: value}`` for the protocol section; reused runs report their own settings."""
    aug = ", ".join(f"{k} {hyp[k]}" for k in AUG_KEYS if k in hyp)
    given = train.get("hyp")
    hyp_label = (given or "modyolo train's default (auto recipe)") if isinstance(given, str) else "custom"
    items: dict[str, dict[str, Any]] = {
        k: {}
        for k in (
            "data",
            "hyp",
            "epochs",
            "image size",
            "seeds",
            "augmentation",
            "head",
            "optimizer",
            "batch",
            "device",
            "training threads",
            "latency",
        )
    }
    for variant, r in zip(variants, results):
        s = run_settings(r.run_dir) if variant.cfg is None else {}
        theirs = s.get("_hyp") or {}
        v = r.name
        items["data"][v] = (
            (
                f"{Path(data['source']).name}: {data['train_images']} train / {data['val_images']} val "
                f"images, sha1 {data['sha1']}"
            )
            if variant.cfg is not None
            else (
                f"val as above; trained on {Path(str(s.get('data', '?'))).name}"
                if s
                else "val as above; training unknown"
            )
        )
        h = hyp if variant.cfg is not None else theirs
        items["hyp"][v] = (
            f"{hyp_label} (sha1 {cfg_hash(h)[:8]})"
            if variant.cfg is not None
            else (f"sha1 {cfg_hash(theirs)[:8]}" if theirs else "unknown")
        )
        items["epochs"][v] = train.get("epochs") if variant.cfg is not None else s.get("epochs", "unknown")
        items["image size"][v] = train.get("imgsz")
        items["seeds"][v] = " ".join(map(str, seeds)) if variant.cfg is not None else s.get("seed", "unknown")
        items["augmentation"][v] = (
            aug if variant.cfg is not None else (", ".join(f"{k} {h[k]}" for k in AUG_KEYS if k in h) or "unknown")
        )
        items["head"][v] = head_of(variant.cfg) or head_of(_ckpt_yaml(r.weights)) or "unknown"
        items["optimizer"][v] = (
            _optimizer_label(train.get("optimizer") or "auto", run_settings(r.run_dir).get("optimizer"))
            if variant.cfg is not None
            else s.get("optimizer", "unknown")
        )
        items["batch"][v] = train.get("batch_size") if variant.cfg is not None else s.get("batch_size", "unknown")
        items["device"][v] = train.get("device", "cpu") if variant.cfg is not None else s.get("device", "unknown")
        items["training threads"][v] = f"{job_threads} per job, {executor}" if variant.cfg is not None else "unknown"
        items["latency"][v] = (
            f"{latency.resolved_threads()} threads, warm-up {latency.warmup}, median of "
            f"{latency.runs} runs, batch {latency.batch}, round-robin in one process"
        )
    return items


def _optimizer_label(requested: str, resolved: str | None) -> str:
    """``auto (AdamW)``: what was asked for and, when ``auto`` chose, what the run trained with (args.yaml)."""
    return f"{requested} ({resolved})" if resolved and resolved != requested else requested


def _ckpt_yaml(weights: str) -> dict | None:
    if not weights:
        return None
    try:
        from modyolo.engine.checkpoint import load_checkpoint

        return load_checkpoint(weights).get("model_yaml")
    except Exception:
        return None


__all__ = [
    "STATE_FILE",
    "cfg_hash",
    "check_state",
    "data_fingerprint",
    "head_of",
    "protocol_items",
    "protocol_rows",
    "run_flags",
    "run_settings",
]
