"""``--precision auto|fp32|bf16|fp16``: the arithmetic a training step runs in, chosen once per run.

``auto`` picks what is fast and trains as well on the machine at hand:

- CUDA: fp16 autocast with a GradScaler (yolov5's AMP); bf16 when SAM is on, because SAM's two
  backward passes cannot share one GradScaler;
- a CPU with native bf16 (AVX512-BF16 or AMX, seen by oneDNN): bf16 autocast. Measured on such a
  CPU: 1.3x the fp32 step, and the 30-epoch run reached the best mAP we measured (README);
- any other CPU: fp32 (bf16 is emulated there and slower than fp32).

``--bf16`` (and ``TrainConfig(bf16=True)``) is an alias of ``--precision bf16``. The choice and the
memory format are logged once when training starts.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

LOGGER = logging.getLogger("modyolo.train")

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 / AMX), as oneDNN reports it.

    Falls back to /proc/cpuinfo's flags when torch's probe is missing (other builds).
    """
    if not torch.backends.mkldnn.is_available():
        return False
    probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    if probe is not None:
        try:
            # True also on plain AVX512 (emulated, slower); require the native instructions too.
            if not probe():
                return False
        except RuntimeError:
            pass
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@dataclass(frozen=True)
class Precision:
    name: str  # fp32 | bf16 | fp16
    device_type: str  # cpu | cuda
    reason: str

    @property
    def dtype(self) -> torch.dtype | None:
        return _DTYPES.get(self.name)

    def autocast(self) -> Callable[[], Any]:
        """A factory of the context each forward pass runs in."""
        if self.dtype is None:
            return contextlib.nullcontext
        device_type, dtype = self.device_type, self.dtype
        return lambda: torch.autocast(device_type, dtype=dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """fp16 needs loss scaling (small gradients underflow); bf16 and fp32 do not."""
        return torch.amp.GradScaler("cuda", enabled=self.name == "fp16" and self.device_type == "cuda")


def resolve_precision(requested: str, device: torch.device, sam: bool = False, bf16_alias: bool = False) -> Precision:
    """The precision to train in; ``requested`` is the ``--precision`` value, ``bf16_alias`` ``--bf16``.

    Raises ValueError naming the flag for a choice the device cannot run (fp16 on a CPU, fp16
    with SAM).
    """
    requested = (requested or "auto").lower()
    if requested not in PRECISIONS:
        raise ValueError(f"--precision {requested!r}: choose one of {', '.join(PRECISIONS)}")
    if bf16_alias:
        if requested not in ("auto", "bf16"):
            raise ValueError(f"--bf16 and --precision {requested} disagree; pass only one of them")
        requested = "bf16"
    kind = device.type
    if requested == "fp16":
        if kind != "cuda":
            raise ValueError("--precision fp16 needs a CUDA device; on a CPU use --precision bf16 (or fp32)")
        if sam:
            raise ValueError(
                "--precision fp16 cannot be used with --sam (two backward passes, one GradScaler); use --precision bf16"
            )
    if requested != "auto":
        return Precision(requested, kind, "as given")
    if kind == "cuda":
        if sam:
            return Precision("bf16", kind, "CUDA with --sam (fp16 would need a GradScaler per pass)")
        return Precision("fp16", kind, "CUDA: fp16 AMP")
    if kind == "cpu" and cpu_has_native_bf16():
        return Precision("bf16", kind, "this CPU computes bf16 natively (AVX512-BF16/AMX)")
    return Precision("fp32", kind, f"no native bf16 on this {kind}")


def describe(precision: Precision, channels_last: bool) -> str:
    """The one line logged at the start of training."""
    layout = "channels_last" if channels_last else "NCHW (--no-channels-last)"
    off = " (--precision fp32 to turn autocast off)" if precision.name != "fp32" else ""
    return f"precision: {precision.name} on {precision.device_type} ({precision.reason}){off}; memory format {layout}"


__all__ = ["PRECISIONS", "Precision", "cpu_has_native_bf16", "describe", "resolve_precision"]
