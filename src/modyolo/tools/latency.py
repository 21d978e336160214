"""One fixed, printed protocol for CPU latency, applied to every variant of a comparison.

Speed figures from different tools disagree mostly because the protocol differs (batch, threads,
fused or not, warm-up, mean vs median, memory layout). Here it is a value
(:class:`LatencyProtocol`) that is printed with the table, and the variants are timed
**round-robin** — one forward of each variant in turn, repeated ``runs`` times — so a burst of
load on a shared machine slows every variant alike instead of penalising whichever happened to
be timed at that moment.

PyTorch: a fused (Conv+BN folded) fp32 copy, ``torch.inference_mode``, batch 1, square
``imgsz`` input; with ``layout="auto"`` both NCHW and channels_last are timed and the faster is
reported (channels_last is usually faster on CPU convs, see benchmarks/bench_inference.py, but not for every
block). ONNX Runtime: the model exported by ``modyolo.deploy.export`` at the same size, run by
the CPU execution provider with the same number of intra-op threads.
"""

from __future__ import annotations

import copy
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

LAYOUTS = ("auto", "nchw", "channels_last")
MIN_PROTOCOL_RUNS = 20  # the protocol's floor; fewer runs are allowed (tests) but flagged


@dataclass(frozen=True)
class LatencyProtocol:
    """How every variant is timed. ``threads=0`` means ``torch.get_num_threads()`` at run time."""

    imgsz: int = 640
    batch: int = 1
    threads: int = 0
    warmup: int = 10
    runs: int = 30
    layout: str = "auto"  # auto | nchw | channels_last (PyTorch only)
    device: str = "cpu"
    # Untimed calls of the same path right before each timed one. Without them a path timed right
    # after another pays for it: PyTorch's OpenMP threads spin for a while after each op and take the
    # cores from the next runtime, whose own threads have gone to sleep (OpenVINO bf16 yolov5n@320:
    # 7.3 ms right after a PyTorch forward, 4.6 ms called twice in a row). A deployed model runs
    # back to back; interleaving is kept for what it is for, spreading bursts of load over every path.
    settle: int = 1

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"latency layout {self.layout!r} unknown; choose one of {LAYOUTS}")
        if self.runs < 1 or self.warmup < 0 or self.settle < 0 or self.batch < 1 or self.imgsz < 32:
            raise ValueError(
                f"latency protocol needs runs >= 1, warmup >= 0, settle >= 0, batch >= 1, imgsz >= 32; got {self}"
            )

    def resolved_threads(self) -> int:
        return int(self.threads or torch.get_num_threads())

    def describe(self) -> str:
        """The one line printed above every table: enough to reproduce the figures."""
        cpu = platform.processor() or platform.machine()
        note = "" if self.runs >= MIN_PROTOCOL_RUNS else f" (below the protocol's {MIN_PROTOCOL_RUNS}: indicative only)"
        try:
            import onnxruntime

            ort = f", onnxruntime {onnxruntime.__version__}"
        except ImportError:
            ort = ""
        return (
            f"latency protocol: device {self.device} ({cpu}), {self.resolved_threads()} threads, batch {self.batch}, "
            f"image {self.imgsz}x{self.imgsz}, fp32, Conv+BN fused, inference_mode, layout {self.layout}, "
            f"every figure includes NMS (conf {NMS_CONF}, iou {NMS_IOU}) for heads that need it, "
            f"warm-up {self.warmup}, median of {self.runs} runs{note}, variants timed round-robin, each "
            f"timed run after {self.settle} untimed run(s) of the same path; "
            f"torch {torch.__version__}{ort}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "threads": self.resolved_threads()}


@dataclass
class Latency:
    """Milliseconds per batch of one variant on one backend: median, 10th and 90th percentile."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    runs: int
    layout: str = ""  # the memory layout reported (PyTorch)
    all_layouts: dict[str, float] = field(default_factory=dict)  # median per layout tried

    @classmethod
    def from_times(cls, times_ms: list[float], layout: str = "") -> Latency:
        arr = np.asarray(times_ms, dtype=np.float64)
        return cls(
            float(statistics.median(times_ms)),
            float(np.percentile(arr, 10)),
            float(np.percentile(arr, 90)),
            len(times_ms),
            layout,
        )


def _round_robin(runners: dict[str, Callable[[], Any]], protocol: LatencyProtocol) -> dict[str, list[float]]:
    """Times (ms) of ``protocol.runs`` calls of each runner, interleaved; ``warmup`` untimed calls
    first, and ``settle`` untimed calls before each timed one when there is another runner to follow."""
    for fn in runners.values():
        for _ in range(protocol.warmup):
            fn()
    settle = protocol.settle if len(runners) > 1 else 0
    times: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(protocol.runs):
        for key, fn in runners.items():
            for _ in range(settle):
                fn()
            t0 = time.perf_counter()
            fn()
            times[key].append((time.perf_counter() - t0) * 1e3)
    return times


class _Threads:
    """Set torch's intra-op threads for a block and restore them (the protocol owns the count)."""

    def __init__(self, n: int) -> None:
        self.n, self.old = n, torch.get_num_threads()

    def __enter__(self) -> None:
        torch.set_num_threads(self.n)

    def __exit__(self, *exc: Any) -> None:
        torch.set_num_threads(self.old)


# detect's settings: what a deployed detector pays for NMS on every image
NMS_CONF, NMS_IOU = 0.25, 0.45


def _torch_runner(model: nn.Module, x: torch.Tensor) -> Callable[[], Any]:
    """One forward, plus NMS when the model's head needs it (an NMS-free head's output is final)."""
    from modyolo.eval.nms import non_max_suppression

    head = getattr(model, "head", None)
    needs_nms = head is not None and bool(getattr(head, "needs_nms", True))

    def run() -> Any:
        with torch.inference_mode():
            out = model(x)
            if needs_nms:
                pred = out[0] if isinstance(out, (tuple, list)) else out
                return non_max_suppression(pred.float(), NMS_CONF, NMS_IOU)
            return out

    return run


def fused_copy(model: nn.Module) -> nn.Module:
    """A float32, eval-mode, BN-folded copy (the caller's model is left as it was)."""
    m = copy.deepcopy(model).float().eval()
    if hasattr(m, "fuse") and not getattr(m, "fused", False):
        m.fuse()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def measure_torch(models: dict[str, nn.Module], protocol: LatencyProtocol) -> dict[str, Latency]:
    """PyTorch latency of each model (fused copies), round-robin, under ``protocol``.

    models: name -> DetectionModel (not modified). Returns name -> :class:`Latency`; with
    ``layout="auto"`` the faster layout's figures, the other layout's median in ``all_layouts``.
    """
    layouts = ("nchw", "channels_last") if protocol.layout == "auto" else (protocol.layout,)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(protocol.batch, 3, protocol.imgsz, protocol.imgsz, generator=gen)
    runners: dict[str, Callable[[], Any]] = {}
    for name, model in models.items():
        base = fused_copy(model)
        for layout in layouts:
            if layout == "channels_last":
                m = copy.deepcopy(base).to(memory_format=torch.channels_last)
                inp = x.contiguous(memory_format=torch.channels_last)
            else:
                m, inp = base, x
            runners[f"{name}\0{layout}"] = _torch_runner(m, inp)
    with _Threads(protocol.resolved_threads()):
        times = _round_robin(runners, protocol)
    out: dict[str, Latency] = {}
    for name in models:
        per = {layout: Latency.from_times(times[f"{name}\0{layout}"], layout) for layout in layouts}
        best = min(per.values(), key=lambda lat: lat.median_ms)
        best.all_layouts = {layout: lat.median_ms for layout, lat in per.items()}
        out[name] = best
    return out


def measure_runners(runners: dict[str, Callable[[], Any]], protocol: LatencyProtocol) -> dict[str, Latency]:
    """Latency of arbitrary zero-argument callables (one forward each), round-robin, under ``protocol``.

    The hook ``modyolo benchmark`` and ``compare --format`` (:mod:`modyolo.tools.compare_formats`)
    use to time every format (PyTorch variants, TorchScript, ONNX Runtime, OpenVINO fp32/bf16/INT8)
    in one interleaved loop, with torch's threads set to the protocol's count for the whole loop.
    """
    with _Threads(protocol.resolved_threads()):
        times = _round_robin(runners, protocol)
    return {name: Latency.from_times(t, name) for name, t in times.items()}


__all__ = [
    "Latency",
    "LatencyProtocol",
    "fused_copy",
    "measure_runners",
    "measure_torch",
]
