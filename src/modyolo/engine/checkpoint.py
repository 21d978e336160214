"""Checkpoints as plain data, written atomically; resume state; best-model bookkeeping.

A checkpoint is a dict of state_dicts, dicts, lists, numbers, strings and tensors — never a
pickled module — so it loads with ``torch.load(weights_only=True)`` and does not execute code
from the file. Layout (format ``modyolo.checkpoint`` version 1)::

    format, version, epoch (last finished, 0-based), best_fitness,
    model: state_dict (the raw training weights), ema: {model, updates, decay, tau} | None,
    optimizer: state_dict | None, model_yaml: dict, names: list[str], hyp: dict,
    metrics: dict, train_args: dict, rng: {python, numpy, torch, cuda}, extra: dict

``inference_state_dict`` picks the weights to evaluate or deploy (the EMA when there is one).
Writes go to a temporary file in the same directory, then ``os.replace``: a crash mid-write
never leaves a truncated ``last.pt`` behind.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from modyolo.engine.ema import unwrap
from modyolo.structures import FITNESS_WEIGHTS as FITNESS_WEIGHTS  # re-exported
from modyolo.structures import fitness as fitness  # re-exported: best.pt is chosen by it
from modyolo.weights_io import FORMAT as FORMAT  # re-exported: reading checkpoints lives in weights_io
from modyolo.weights_io import VERSION as VERSION
from modyolo.weights_io import CheckpointError as CheckpointError
from modyolo.weights_io import inference_state_dict as inference_state_dict
from modyolo.weights_io import load_checkpoint as load_checkpoint

LOGGER = logging.getLogger(__name__)


# --------------------------------------------------------------------------- plain data


def to_plain(obj: Any, where: str = "checkpoint") -> Any:
    """``obj`` with paths, numpy values and tuples made plain; raises naming the key otherwise."""
    if obj is None or isinstance(obj, (bool, int, float, str, torch.Tensor)):
        return obj
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, Mapping):
        return {k: to_plain(v, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        items = [to_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    if isinstance(obj, torch.dtype | torch.device):
        return str(obj)
    raise TypeError(
        f"{where} holds a {type(obj).__module__}.{type(obj).__qualname__}, which a weights-only "
        "checkpoint cannot store; convert it to a dict, list, number, string or tensor"
    )


# --------------------------------------------------------------------------- RNG state


def capture_rng_state() -> dict[str, Any]:
    """Python, numpy, torch (and CUDA) generator states, as plain data."""
    version, mt, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": version, "state": list(mt), "gauss": gauss},
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Undo :func:`capture_rng_state` (CUDA states only when the device count matches)."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state(
        (npy["name"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"], npy["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


# --------------------------------------------------------------------------- save / load


def save_checkpoint(
    path: str | Path,
    *,
    model: nn.Module | Mapping[str, torch.Tensor],
    epoch: int,
    ema: Any = None,
    optimizer: Any = None,
    best_fitness: float | None = None,
    hyp: Any = None,
    names: Sequence[str] | Mapping[int, str] | None = None,
    model_yaml: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    train_args: Mapping[str, Any] | None = None,
    rng_state: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically to ``path``; returns it.

    model: the model (DDP is unwrapped) or its state_dict. ema: a :class:`ModelEMA` or its state_dict.
    optimizer: anything with ``state_dict()`` (``torch.optim`` or :class:`SAM`). hyp: a
    :class:`Hyp` or dict. rng_state: from :func:`capture_rng_state` (captured here if None).
    """
    path = Path(path)
    if isinstance(model, nn.Module):
        model = unwrap(model)  # no "module." prefixes from DDP in the saved keys
    state_of = lambda x: x.state_dict() if hasattr(x, "state_dict") else x  # noqa: E731
    if hasattr(hyp, "to_dict"):
        hyp = hyp.to_dict()
    ckpt = {
        "format": FORMAT,
        "version": VERSION,
        "epoch": int(epoch),
        "best_fitness": None if best_fitness is None else float(best_fitness),
        "model": state_of(model),
        "ema": state_of(ema),
        "optimizer": state_of(optimizer),
        "model_yaml": model_yaml if model_yaml is not None else getattr(model, "yaml", None),
        "names": dict(names) if isinstance(names, Mapping) else (list(names) if names is not None else None),
        "hyp": hyp,
        "metrics": dict(metrics or {}),
        "train_args": dict(train_args or {}),
        "rng": rng_state if rng_state is not None else capture_rng_state(),
        "extra": dict(extra or {}),
    }
    return _atomic_save(to_plain(ckpt), path)


def _atomic_save(obj: Any, path: Path) -> Path:
    """torch.save to a temporary file beside ``path``, fsync, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise _write_error(e, path) from e
    except RuntimeError as e:  # torch's zip writer reports a failed write as RuntimeError ("file write failed")
        Path(tmp).unlink(missing_ok=True)
        if "write" not in str(e):
            raise
        full = shutil.disk_usage(path.parent).free < 64 * 2**20
        raise _write_error(OSError(errno.ENOSPC if full else errno.EIO, str(e)), path) from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _write_error(e: OSError, path: Path) -> OSError:
    """The OSError of a failed checkpoint write, its message naming the file and the way on.

    The temporary file is gone and ``path`` itself was never touched (the write is atomic), so the
    last good checkpoint is still there: say so, and how to resume from it.
    """
    resume = path.parent / "last.pt"
    if e.errno == errno.ENOSPC and not resume.is_file():
        why = (
            f"no space left on the device writing {path}, the run's first checkpoint; free some space (or "
            "choose another --project) and start the run again"
        )
    elif e.errno == errno.ENOSPC:
        why = (
            f"no space left on the device writing {path}; the last good {resume.name} there is unchanged. "
            f"Free some space, then resume with: modyolo train --resume {resume}"
        )
    elif e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        why = (
            f"cannot write {path} ({e.strerror}); choose a writable folder with --project, "
            f"or fix the permissions and resume with: modyolo train --resume {resume}"
        )
    else:
        why = f"cannot write checkpoint {path} ({e.strerror or e}); the last good {path.name} there is unchanged"
    return OSError(e.errno, why, str(path))


def resume_training(
    ckpt: Mapping[str, Any],
    *,
    model: nn.Module,
    optimizer: Any = None,
    ema: Any = None,
    restore_rng: bool = True,
) -> int:
    """Load model, optimizer, EMA and RNG state from ``ckpt``; return the epoch to start at."""
    if ckpt.get("format") != FORMAT:
        raise CheckpointError("cannot resume from a bare state_dict; resume needs a last.pt written by modyolo train")
    model.load_state_dict(ckpt["model"])
    if optimizer is not None:
        if ckpt.get("optimizer") is None:
            raise CheckpointError("the checkpoint has no optimizer state (it was stripped); it cannot be resumed")
        optimizer.load_state_dict(ckpt["optimizer"])
    if ema is not None and ckpt.get("ema") is not None:
        ema.load_state_dict(ckpt["ema"])
    if restore_rng and ckpt.get("rng"):
        restore_rng_state(ckpt["rng"])
    return int(ckpt["epoch"]) + 1


def strip_checkpoint(src: str | Path, dst: str | Path | None = None, half: bool = False) -> Path:
    """Keep only what inference needs: the EMA weights as ``model``; no optimizer, EMA or RNG."""
    ckpt = load_checkpoint(src)
    weights = inference_state_dict(ckpt)
    if half:
        weights = {k: v.half() if v.is_floating_point() else v for k, v in weights.items()}
    ckpt.update(model=weights, ema=None, optimizer=None, rng=None)
    return _atomic_save(to_plain(ckpt), Path(dst or src))


# --------------------------------------------------------------------------- best / stop


class EarlyStopping:
    """Stop after ``patience`` epochs without a better fitness (``patience <= 0``: never)."""

    def __init__(self, patience: int = 100) -> None:
        self.patience = patience if patience > 0 else float("inf")
        self.best_fitness = float("-inf")
        self.best_epoch = 0

    def __call__(self, epoch: int, fit: float) -> bool:
        """Record epoch's fitness; True when training should stop."""
        if fit >= self.best_fitness:
            self.best_epoch, self.best_fitness = epoch, fit
        stop = epoch - self.best_epoch >= self.patience
        if stop:
            LOGGER.info(
                "early stop: no improvement for %d epochs; best was epoch %d (fitness %.4f)",
                self.patience,
                self.best_epoch,
                self.best_fitness,
            )
        return bool(stop)

    def state_dict(self) -> dict[str, Any]:
        return {"best_fitness": self.best_fitness, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best_fitness = float(state["best_fitness"])
        self.best_epoch = int(state["best_epoch"])
