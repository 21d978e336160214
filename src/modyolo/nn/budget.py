"""Refuse a model that cannot fit *before* allocating it (``depth_multiple: 100000``, ``width_multiple: 8``).

Two checks, both cheap compared to the build they guard:

- repeats: every row's ``number`` scaled by ``depth_multiple`` is plain arithmetic on the YAML;
  over ``MAX_REPEATS`` blocks in all the model is refused naming ``depth_multiple`` (building
  100000 repeats of a C3 would take minutes and gigabytes of Python objects before any message);
- parameters: when ``width_multiple`` is above anything shipped (``WIDE``), the layers are first
  built on PyTorch's ``meta`` device (shapes only, no memory) and their parameters counted.
  Training needs about 16 bytes a parameter (fp32 weights, gradients and two optimizer moments);
  a model whose estimate exceeds the memory available now is refused naming ``width_multiple``
  and the estimate. ``MODYOLO_MAX_PARAMS`` sets a fixed parameter limit instead.

A block that cannot be built on ``meta`` (an external backbone reading weights) simply skips the
estimate: the check may let a model through, never refuse a good one.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from modyolo.nn.row import ModelConfigError

LOGGER = logging.getLogger("modyolo.nn.budget")

MAX_REPEATS = 5_000  # yolov5x has 24 repeated blocks in all; a deep ablation has a few hundred
WIDE = 1.5  # the widest shipped scale is yolov5x / yolov8x at 1.25
BYTES_PER_PARAM = 16  # fp32 weight + gradient + two Adam/SGD-momentum buffers

_ESTIMATING: contextvars.ContextVar[bool] = contextvars.ContextVar("modyolo_budget_estimating", default=False)


def check_repeats(source: str, depth_multiple: float, numbers: list[int]) -> None:
    """Raise ModelConfigError when the rows' repeats, scaled by ``depth_multiple``, exceed ``MAX_REPEATS``."""
    total = sum(max(round(n * depth_multiple), 1) if n > 1 else n for n in numbers)
    if total > MAX_REPEATS:
        raise ModelConfigError(
            f"{source}: depth_multiple={depth_multiple} scales the rows' repeats to {total:,} blocks (limit "
            f"{MAX_REPEATS:,}; yolov5x has 24). Use a depth_multiple like 0.33-1.33."
        )


def available_bytes() -> int | None:
    """Memory available now (Linux MemAvailable), or None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def estimating() -> bool:
    """True inside :func:`check_params`' meta build (so the build does not estimate itself)."""
    return _ESTIMATING.get()


def _param_limit() -> tuple[int | None, str]:
    raw = os.environ.get("MODYOLO_MAX_PARAMS", "")
    if raw:
        try:
            return int(float(raw)), f"MODYOLO_MAX_PARAMS={raw}"
        except ValueError:
            raise ModelConfigError(f"MODYOLO_MAX_PARAMS={raw!r} is not a number; unset it or give e.g. 5e8") from None
    avail = available_bytes()
    if avail is None:
        return None, ""
    return avail // BYTES_PER_PARAM, f"{avail / 2**30:.1f} GiB of memory available at {BYTES_PER_PARAM} B/parameter"


def check_params(source: str, width_multiple: float, build: Callable[[], list]) -> int | None:
    """Build the layers on ``meta`` with ``build()``; refuse when their parameters cannot fit. Returns the count."""
    if width_multiple <= WIDE or estimating():
        return None
    token = _ESTIMATING.set(True)
    try:
        with torch.device("meta"):
            layers = build()
        count = sum(p.numel() for layer in layers for p in layer.module.parameters())
    except ModelConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - a block that cannot be built on meta: no estimate
        LOGGER.debug("%s: no parameter estimate on the meta device (%s); building directly", source, e)
        return None
    finally:
        _ESTIMATING.reset(token)
    limit, why = _param_limit()
    if limit is not None and count > limit:
        raise ModelConfigError(
            f"{source}: width_multiple={width_multiple} gives an estimated {count / 1e6:,.0f}M parameters "
            f"({count * BYTES_PER_PARAM / 2**30:,.1f} GiB to train), over the limit of {limit / 1e6:,.0f}M ({why}). "
            "Use a width_multiple like 0.25-1.25."
        )
    LOGGER.debug("%s: width_multiple=%s: %d parameters estimated", source, width_multiple, count)
    return count


# ---- activation memory: batch x image size, checked before training allocates ----------------------------

PROBE_CELLS = 4  # the larger probe image is 4 cells of the coarsest stride a side (128 px at stride 32)
STEP_OVERHEAD = 1.25  # measured peak of a training step / bytes saved for backward (see estimate_train_memory)
WARN_FRACTION = 0.7  # warn above this share of the available memory; refuse above all of it


class MemoryBudgetError(ValueError):
    """A training run whose estimated peak memory exceeds what is available; names the flags and the fix.

    ``exit_code`` 2: the flags (--batch-size, --img) are what is refused, as at parse time."""

    exit_code = 2


@dataclass(frozen=True)
class TrainMemory:
    """Estimated bytes of training one model at one batch size and image size (see estimate_train_memory)."""

    weights: int  # parameters + buffers: allocated already when the check runs
    state: int  # gradients + optimizer buffers + the EMA copy
    fixed: int  # saved tensors that do not grow with the image (autocast's low-precision weight copies)
    per_image: int  # activation bytes per image at ``imgsz``, STEP_OVERHEAD included
    batch: int
    imgsz: int

    @property
    def activations(self) -> int:
        return self.fixed + self.per_image * self.batch

    @property
    def needed(self) -> int:
        """Bytes training adds to what is allocated now (the weights)."""
        return self.state + self.activations

    @property
    def peak(self) -> int:
        return self.weights + self.needed


def _storage_key(t: torch.Tensor) -> tuple[int, int] | None:
    try:
        storage = t.untyped_storage()
        return storage.data_ptr(), storage.nbytes()
    except (RuntimeError, NotImplementedError):  # a tensor subclass without a plain storage
        return None


def saved_bytes(model: nn.Module, size: int, ch: int = 3, autocast: Callable[[], Any] | None = None) -> int:
    """Bytes autograd keeps for backward after one training-mode forward of a ``1 x ch x size x size`` image.

    Counted with ``torch.autograd.graph.saved_tensors_hooks``, once per storage (a conv's output is
    saved by the BatchNorm after it and is the same memory), parameters left out. Runs on the
    model's device; BatchNorm running statistics are restored afterwards, so the model is unchanged.
    """
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    own = {key[0] for p in model.parameters() if (key := _storage_key(p)) is not None}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = _storage_key(t)
        if key is not None and key[0] not in own:
            seen[key[0]] = max(seen.get(key[0], 0), key[1])
        return t

    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    was_training = model.training
    model.train()
    try:
        x = torch.zeros(1, ch, size, size, device=device)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), (autocast or contextlib.nullcontext)():
            out = model(x)
        del out
    finally:
        model.train(was_training)
        with torch.no_grad():
            for name, b in model.named_buffers():
                b.copy_(buffers[name])
    return sum(seen.values())


def optimizer_buffers(optimizer: str) -> int:
    """fp32 buffers an optimizer keeps per parameter: SGD's momentum 1, Adam's moments 2 ('auto' may pick Adam)."""
    return 1 if optimizer.lower() == "sgd" else 2


def estimate_train_memory(
    model: nn.Module,
    batch: int,
    imgsz: int,
    *,
    optimizer: str = "auto",
    autocast: Callable[[], Any] | None = None,
) -> TrainMemory:
    """Peak memory of training ``model`` at ``batch`` images of ``imgsz x imgsz``, without allocating it.

    Method: the bytes saved for backward are measured (:func:`saved_bytes`) on two small square
    probes of 2 and 4 cells of the coarsest stride a side (64 and 128 px for a stride-32 model; one
    image each; 0.05-1 s on CPU for the shipped configs) and fitted as ``fixed + slope x area``:
    every feature map of a convolutional detector is ``size / stride`` a side, so its saved tensors
    grow with the area. ``fixed`` (autocast's weight copies, per-image kernels of dynamic
    convolution: 3 MiB for yolov5l-dynamic against 1 GiB per image at 640 px) is counted once.
    The slope, scaled to ``imgsz`` and times STEP_OVERHEAD, is the per-image cost (what backward
    allocates for gradients of activations, the loss and the allocator's slack on top of the saved
    tensors; 1.25 calibrated on CPU). Against the peak-RSS growth of one real training step in a
    fresh process (forward, loss, backward, clipping, SGD step, EMA update;
    tests/nn/test_budget_measured.py), estimate / measured was 0.90-1.05: yolov5n w0.25 at batch 8
    x 320 px (388 vs 400-424 MiB) and 16 x 416 px (1263 vs 1270 MiB), yolov5s at 4 x 320 px (443 vs
    420 MiB), the MobileNetV2 backbone (346 vs 386 MiB) and yolov8 w0.25 (323 vs 307 MiB) at 8 x 256 px.
    Parameter state is 4 B each for the gradient and the EMA copy plus 4 B per optimizer buffer.
    Not counted: the data loader's workers and --cache ram (the data's own memory), validation
    (no gradients: smaller), cuDNN workspaces on CUDA (the probe runs there with training's autocast).
    """
    grid = int(max(float(getattr(model, "stride", torch.tensor([32.0])).max()), 32))
    small, large = 2 * grid, PROBE_CELLS * grid
    ch = int(getattr(model, "yaml", {}).get("ch", 3))
    s_small = saved_bytes(model, small, ch, autocast)
    s_large = saved_bytes(model, large, ch, autocast)
    slope = max(s_large - s_small, 0) / (large**2 - small**2)  # bytes per pixel of one image
    fixed = max(s_small - int(slope * small**2), 0)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    state = weights * (2 + optimizer_buffers(optimizer)) + buffers  # grads, optimizer, EMA (+ its buffers)
    per_image = int(slope * imgsz * imgsz * STEP_OVERHEAD)
    return TrainMemory(weights + buffers, state, fixed, per_image, batch, imgsz)


def _parse_bytes(raw: str) -> int:
    """'8G', '512M', '2.5e9' -> bytes (K/M/G/T are powers of 1024)."""
    text = raw.strip().upper().removesuffix("B").removesuffix("I")
    scale = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}.get(text[-1:], 1)
    number = float(text[:-1] if scale > 1 else text)
    if not number > 0:  # also refuses nan
        raise ValueError(raw)
    return int(number * scale)


def _cgroup_room() -> int | None:
    """Bytes left under this process's cgroup memory limit (containers), or None when unlimited / unknown."""
    pairs = (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),  # cgroup v2
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),  # v1
    )
    for limit_path, usage_path in pairs:
        try:
            with open(limit_path, encoding="ascii") as f:
                limit = f.read().strip()
            with open(usage_path, encoding="ascii") as f:
                usage = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if limit == "max" or not limit.isdigit() or int(limit) >= 2**60:
            return None
        return max(int(limit) - usage, 0)
    return None


def _address_space_room() -> int | None:
    """Bytes left under ``ulimit -v`` (RLIMIT_AS), or None when there is no such limit."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft == resource.RLIM_INFINITY:
            return None
        with open("/proc/self/status", encoding="ascii") as f:
            vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
        return max(soft - vm, 0)
    except (ImportError, OSError, ValueError, StopIteration):
        return None


def memory_room(device: torch.device) -> tuple[int | None, str]:
    """(bytes training may still allocate on ``device``, what the figure is), or (None, '') when unknown.

    ``MODYOLO_MEMORY_LIMIT`` (e.g. ``8G``) replaces the measured figure. CUDA: the device's free
    memory plus what PyTorch's cache holds unused. CPU: the least of MemAvailable, the cgroup's
    limit minus its usage and ``ulimit -v`` minus this process's address space.
    """
    raw = os.environ.get("MODYOLO_MEMORY_LIMIT", "")
    if raw:
        try:
            return _parse_bytes(raw), f"allowed by MODYOLO_MEMORY_LIMIT={raw}"
        except ValueError:
            raise MemoryBudgetError(
                f"MODYOLO_MEMORY_LIMIT={raw!r} is not a memory size; give e.g. 8G or 512M, or unset it"
            ) from None
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return free + cached, f"free on {device} ({torch.cuda.get_device_name(device)})"
    if device.type != "cpu":
        return None, ""
    figures = [
        (v, what)
        for v, what in (
            (available_bytes(), "of RAM available"),
            (_cgroup_room(), "left under the container's memory limit"),
            (_address_space_room(), "left under ulimit -v"),
        )
        if v is not None
    ]
    return min(figures) if figures else (None, "")


def _gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB" if n >= 2**30 else f"{n / 2**20:,.0f} MiB"


def check_train_memory(
    model: nn.Module,
    batch: int,
    imgsz: int,
    device: torch.device,
    optimizer: str = "auto",
    precision: str = "auto",
    multi_scale: bool = False,
) -> TrainMemory | None:
    """Refuse (MemoryBudgetError) a training run whose estimated peak exceeds the memory available.

    Runs after the model is built and before anything else is allocated (loaders, optimizer, run
    folder). Warns above WARN_FRACTION of the available memory. ``batch`` is per device (DDP
    divides --batch-size); ``multi_scale`` trains at up to 1.5x ``imgsz``. ``precision`` picks the
    probe's autocast: CUDA trains in fp16/bf16 unless 'fp32'; a CPU in bf16 only when asked for
    ('auto' may choose bf16 on a CPU with native bf16, then the fp32 estimate is high, never low).
    Returns the estimate, or None when it could not be made (a block that fails the probe): the
    check may let a run through, never refuse a good one.
    """
    if batch < 1 or imgsz < 1:  # --batch-size -1 (automatic) has no size yet to check
        return None
    size = imgsz * 3 // 2 if multi_scale else imgsz
    low = None if precision == "fp32" else (torch.bfloat16 if precision == "bf16" else torch.float16)
    if device.type != "cuda" and precision != "bf16":
        low = None
    autocast = (lambda: torch.autocast(device.type, dtype=low)) if low is not None else None
    source = getattr(model, "source", "the model")
    try:
        est = estimate_train_memory(model, batch, size, optimizer=optimizer, autocast=autocast)
    except Exception as e:  # noqa: BLE001 - no estimate: train as asked
        LOGGER.debug("%s: no activation-memory estimate (%s: %s)", source, type(e).__name__, e)
        return None
    room, what = memory_room(device)
    LOGGER.debug(
        "%s: estimated training peak %s (%s per image at %d px, batch %d); %s",
        source,
        _gib(est.peak),
        _gib(est.per_image),
        size,
        batch,
        f"{_gib(room)} {what}" if room is not None else "available memory unknown",
    )
    if room is None or est.needed <= WARN_FRACTION * room:
        return est
    img = f"--img {imgsz}" + (" (--multi-scale: up to 1.5x)" if multi_scale else "")
    wm = getattr(model, "yaml", {}).get("width_multiple", 1.0)
    what_needs = (
        f"--batch-size {batch} {img} with {source} (width_multiple {wm}) needs an estimated "
        f"{_gib(est.needed)} to train ({_gib(est.per_image)} of activations per image x {batch}, "
        f"{_gib(est.state)} of gradients, optimizer state and EMA)"
    )
    if est.needed <= room:
        LOGGER.warning("%s: %.0f%% of the %s %s", what_needs, 100 * est.needed / room, _gib(room), what)
        return est
    spare = WARN_FRACTION * room - est.state - est.fixed  # sized to fit without the warning
    fits = int(spare // est.per_image) if est.per_image > 0 else 0
    if fits >= 1:
        fix = f"try --batch-size {fits}, a smaller --img or a smaller width_multiple"
    else:
        grid = int(max(float(getattr(model, "stride", torch.tensor([32.0])).max()), 32))
        side = int(imgsz * (max(spare, 0) / max(est.per_image, 1)) ** 0.5) // grid * grid
        fix = (
            f"even --batch-size 1 does not fit: try --batch-size 1 --img {side} or a smaller width_multiple"
            if side >= grid
            else "even --batch-size 1 at the smallest --img does not fit: try a smaller width_multiple"
        )
    raise MemoryBudgetError(
        f"{what_needs}, but only {_gib(room)} {what}; {fix} (MODYOLO_MEMORY_LIMIT=<size> overrides the "
        "available figure)"
    )
