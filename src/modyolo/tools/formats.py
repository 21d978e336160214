"""Every inference format of one model as a runner: ``torch`` (eager fp32 NCHW), ``torch_cl``
(channels_last), ``torch_bf16``, ``torchscript``, ``onnx``, ``openvino``, ``openvino_bf16`` and
``openvino_int8``; what this machine can run (:func:`available_formats`) and the exports they need
(:func:`build_runners`). Used by ``modyolo benchmark`` and ``compare --format``
(:mod:`modyolo.tools.compare_formats`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch

LOGGER = logging.getLogger("modyolo.tools.benchmark")  # its messages read as the benchmark's
ALL_FORMATS = ("torch", "torch_cl", "torch_bf16", "torchscript", "onnx", "openvino", "openvino_bf16", "openvino_int8")


def cpu_has_bf16() -> bool:
    """True on CPUs with native bf16 arithmetic (avx512_bf16 or AMX); elsewhere bf16 is emulated and slow."""
    from modyolo.engine.precision import cpu_has_native_bf16

    return cpu_has_native_bf16()


class TorchVariant:
    """A fused DetectionModel run as ``layout`` (``nchw`` / ``channels_last``), optionally under bf16
    autocast; callable like a backend on ``[B, 3, H, W]`` float, returns fp32 ``pred [B, N, 5+nc]``."""

    def __init__(self, model: torch.nn.Module, channels_last: bool = False, bf16: bool = False) -> None:
        self.model = model.to(memory_format=torch.channels_last) if channels_last else model
        self.channels_last, self.bf16 = channels_last, bf16

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            out = self.model(x)
        return (out[0] if isinstance(out, (tuple, list)) else out).float()


def available_formats(requested: list[str] | None, int8: bool) -> list[str]:
    """``requested`` (default: all) minus formats this machine or installation cannot run, with the reason logged."""
    import importlib.util

    chosen = list(requested or ALL_FORMATS)
    unknown = [f for f in chosen if f not in ALL_FORMATS]
    if unknown:
        raise ValueError(f"--formats: unknown {unknown}; choose from {list(ALL_FORMATS)}")
    skip = {}
    if not cpu_has_bf16():
        skip.update({f: "this CPU has no native bf16 (avx512_bf16 / AMX)" for f in ("torch_bf16", "openvino_bf16")})
    if importlib.util.find_spec("onnxruntime") is None:
        skip["onnx"] = "onnxruntime is not installed (pip install 'modyolo[onnx]')"
    if importlib.util.find_spec("openvino") is None:
        skip.update(
            {
                f: "openvino is not installed (pip install 'modyolo[openvino]')"
                for f in ("openvino", "openvino_bf16", "openvino_int8")
            }
        )
    if not int8:
        skip.setdefault("openvino_int8", "needs --data (calibration images)")
    for f in chosen:
        if f in skip:
            LOGGER.warning("benchmark: skipping %s: %s", f, skip[f])
    return [f for f in chosen if f not in skip]


def build_runners(
    weights: Path,
    formats: list[str],
    imgsz: int,
    out_dir: Path,
    threads: int,
    data: str | None,
    fraction: float,
    workers: int,
) -> dict[str, tuple[Callable, Path]]:
    """format -> (callable on a batch, file it runs); exports what the formats need at ``imgsz``, batch 1."""
    from modyolo.deploy.backends import OpenVinoBackend, load_backend
    from modyolo.deploy.export import export
    from modyolo.deploy.prepare import load_model, prepare_for_export

    include = [f for f in ("torchscript", "onnx") if f in formats]
    if any(f.startswith("openvino") for f in formats):
        include.append("openvino")
    int8 = "openvino_int8" in formats
    files = (
        export(
            weights,
            include=include,
            imgsz=imgsz,
            out_dir=out_dir,
            int8=int8,
            data=data,
            fraction=fraction,
            int8_allow_drop=True,
            workers=workers,
        )
        if include
        else {}
    )
    fused = prepare_for_export(load_model(weights))
    runners: dict[str, tuple[Callable, Path]] = {}
    for f in formats:
        if f == "torch":
            runners[f] = (TorchVariant(fused), weights)
        elif f == "torch_cl":
            runners[f] = (TorchVariant(_copy(fused), channels_last=True), weights)
        elif f == "torch_bf16":
            runners[f] = (TorchVariant(_copy(fused), channels_last=True, bf16=True), weights)
        elif f in ("torchscript", "onnx", "openvino"):
            runners[f] = (load_backend(files[f], threads=threads), files[f])
        elif f == "openvino_bf16":
            runners[f] = (
                OpenVinoBackend(files["openvino"], torch.device("cpu"), threads, precision="bf16"),
                files["openvino"],
            )
        elif f == "openvino_int8":
            runners[f] = (load_backend(files["openvino_int8"], threads=threads), files["openvino_int8"])
    return runners


def _copy(model: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(model)
