"""Run a detector from ``.pt``, ``.torchscript``, ``.onnx`` or OpenVINO ``.xml`` behind one interface.

``load_backend(path)`` returns a :class:`Backend`: callable on ``Tensor[B, 3, H, W]`` float 0-1
(RGB, letterboxed) and returning ``pred: Tensor[B, N, 5+nc]`` (``cx, cy, w, h`` in input pixels,
sigmoid objectness, class scores) on the input's device — what ``DetectionModel`` returns in
eval mode, so ``validate``, ``detect`` and the API use any of them unchanged. Class names,
stride and input size come from the file's metadata (:mod:`modyolo.deploy.metadata`).

A model exported with ``--nms`` (``metadata.nms``) has ``end2end = True``: called as
``backend(x, conf_thres, iou_thres, multi_label)`` it returns ``(detections [B, max_det, 6],
num_dets [B])`` (see :mod:`modyolo.deploy.nms_graph`) and ``val`` / ``detect`` skip Python NMS;
``agnostic`` says whether that NMS suppresses across classes (``export --agnostic-nms``).

A model exported with a fixed batch runs any batch: the batch is split into chunks of that size
(the last one padded), because validation batches rarely match the export batch. A model
exported at a fixed size takes only that size, and says so with the fix.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from modyolo.deploy.metadata import TORCHSCRIPT_FILE, ExportMetadata, MetadataError

SUFFIXES = {".onnx": "onnx", ".torchscript": "torchscript", ".xml": "openvino", ".pt": "torch", ".pth": "torch"}


class Backend:
    """An inference engine plus the metadata needed to feed it and read its output.

    names: class names (index -> name). stride: the largest level stride. imgsz: ``(h, w)`` it
    was exported at (or trained at, for ``.pt``). batch_size: the fixed batch, None if dynamic.
    dynamic: whether H and W (and the batch) may vary. kind: ``onnx`` / ``torchscript`` / ``torch``.
    """

    kind = "?"
    fp16 = False

    def __init__(self, path: Path, meta: ExportMetadata, device: torch.device) -> None:
        self.path, self.metadata, self.device = path, meta, device
        self.names: list[str] = list(meta.names)
        self.nc = meta.nc
        self.stride = int(meta.stride)
        self.imgsz: tuple[int, int] = tuple(meta.imgsz)  # type: ignore[assignment]
        self.batch_size: int | None = meta.batch
        self.dynamic = bool(meta.dynamic)
        self.end2end = bool(meta.nms)
        self.max_det = int(meta.max_det)
        self.agnostic = bool(meta.agnostic)  # an NMS graph that suppresses across classes

    def __call__(self, x: torch.Tensor, conf_thres: float = 0.25, iou_thres: float = 0.45, multi_label: bool = False):
        """``pred [B, N, 5+nc]``; for an NMS graph ``(detections [B, max_det, 6], num_dets [B])``
        at the given thresholds (ignored by plain models)."""
        self.check_input(x)
        if self.end2end:
            from modyolo.deploy.nms_graph import threshold_inputs

            extra = threshold_inputs(conf_thres, iou_thres, multi_label)
            forward = lambda chunk: self._forward(chunk, *extra)  # noqa: E731
        else:
            forward = self._forward
        b = x.shape[0]
        n = self.batch_size
        if n is None or b == n:
            return forward(x)
        outs = []
        for start in range(0, b, n):
            chunk = x[start : start + n]
            k = chunk.shape[0]
            if k < n:  # pad with copies of the last image: the outputs for them are dropped
                chunk = torch.cat((chunk, chunk[-1:].expand(n - k, *chunk.shape[1:])))
            out = forward(chunk)
            outs.append(tuple(o[:k] for o in out) if isinstance(out, tuple) else out[:k])
        if isinstance(outs[0], tuple):
            return tuple(torch.cat(parts) for parts in zip(*outs))
        return torch.cat(outs)

    def run_end_to_end(self, x: torch.Tensor, conf_thres: float, iou_thres: float, multi_label: bool):
        return self(x, conf_thres, iou_thres, multi_label)

    def _forward(self, x: torch.Tensor, *thresholds: torch.Tensor):
        raise NotImplementedError

    def check_file_shape(self, found: list) -> None:
        """Refuse a file whose input shape disagrees with its metadata (a swapped or edited file).

        found: the graph input's dims as ints, or None / strings where dynamic.
        """
        expected = [self.batch_size, 3, *self.imgsz] if not self.dynamic else [None, 3, None, None]
        fixed = [f if isinstance(f, int) and f > 0 else None for f in found]
        if (
            len(fixed) != 4
            or any(e is not None and f is not None and e != f for e, f in zip(expected, fixed))
            or (not self.dynamic and fixed[2:] != expected[2:])
        ):
            show = lambda dims: "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"  # noqa: E731
            raise ValueError(
                f"{self.path}: the graph's input has shape {show(fixed)} but its metadata says "
                f"{show(expected)} (B, 3, H, W); the file was changed after export — re-export it "
                "with `modyolo export`"
            )

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError saying how to fix a batch the model cannot take."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"{self.path.name}: expected images as Tensor[B, 3, H, W], got shape {tuple(x.shape)}")
        h, w = int(x.shape[2]), int(x.shape[3])
        if not self.dynamic and (h, w) != self.imgsz:
            raise ValueError(
                f"{self.path.name} was exported for a fixed input of {self.imgsz[0]}x{self.imgsz[1]} (HxW) but got "
                f"{h}x{w}; letterbox images to that size (val/detect: --img {self.imgsz[1]} without rectangular "
                "batches) or re-export with --dynamic"
            )
        if h % self.stride or w % self.stride:
            raise ValueError(
                f"{self.path.name}: input {h}x{w} is not a multiple of the model stride {self.stride}; "
                "letterbox to a multiple of it"
            )

    def warmup(self, imgsz: tuple[int, int] | None = None) -> None:
        """One forward on a blank image (first runs allocate and pick kernels)."""
        h, w = imgsz or self.imgsz
        self(torch.zeros(self.batch_size or 1, 3, h, w, device=self.device))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.path}, nc={self.nc}, imgsz={self.imgsz}, stride={self.stride}, "
            f"batch={self.batch_size}, dynamic={self.dynamic})"
        )


# ----------------------------------------------------------------------------------- ONNX


def ort_session(model: bytes | str | Path, threads: int | None = None, device: torch.device | str = "cpu"):
    """An onnxruntime session: CPU provider (CUDA for a cuda device), ``threads`` intra-op threads.

    threads: default ``torch.get_num_threads()`` so the ONNX path uses the same cores as PyTorch.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads or torch.get_num_threads())
    opts.inter_op_num_threads = 1  # one graph branch at a time: detectors are chains of convs
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors only; ORT warns about every unused initializer otherwise
    providers = ["CPUExecutionProvider"]
    if torch.device(device).type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ValueError(
                "device cuda needs onnxruntime-gpu (CUDAExecutionProvider is not available); "
                "use device='cpu' or install onnxruntime-gpu"
            )
        providers.insert(0, "CUDAExecutionProvider")
    data = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(data, sess_options=opts, providers=providers)


class OnnxBackend(Backend):
    kind = "onnx"

    def __init__(self, path: Path, device: torch.device, threads: int | None = None) -> None:
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
        props = {p.key: p.value for p in proto.metadata_props}
        super().__init__(path, ExportMetadata.from_onnx_props(props, str(path)), device)
        self.threads = int(threads or torch.get_num_threads())
        dims = proto.graph.input[0].type.tensor_type.shape.dim
        self.check_file_shape([d.dim_value if d.HasField("dim_value") else None for d in dims])
        self.session = ort_session(proto.SerializeToString(), self.threads, device)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.input_name = self.input_names[0]

    def _forward(self, x: torch.Tensor, *thresholds: torch.Tensor):
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        feed = dict(zip(self.input_names, (array, *(t.numpy() for t in thresholds))))
        outs = self.session.run(None, feed)
        if self.end2end:
            return tuple(torch.from_numpy(o).to(x.device) for o in outs[:2])
        return torch.from_numpy(outs[0]).to(x.device)


# -------------------------------------------------------------------------------- OpenVINO


class OpenVinoBackend(Backend):
    """An OpenVINO IR (``.xml`` + ``.bin``) compiled for the CPU plugin, latency hint, ``threads``.

    precision: the CPU plugin's ``INFERENCE_PRECISION_HINT``. ``"f32"`` (default) computes in fp32
    so outputs match PyTorch to 1e-4; the plugin's own default on CPUs with AMX / avx512_bf16 is
    bf16 (faster, boxes off by ~0.1 px), which ``precision="bf16"`` (``modyolo benchmark``) selects.
    INT8 models run their quantised convolutions in INT8 either way.
    """

    kind = "openvino"

    def __init__(self, path: Path, device: torch.device, threads: int | None = None, precision: str = "f32") -> None:
        from modyolo.deploy.openvino_export import get_metadata, read_ir, require_openvino
        from modyolo.deploy.signal_stack import keep_signal_stack

        if device.type != "cpu":
            raise ValueError(f"{path}: OpenVINO models run on the CPU here; pass --device cpu")
        ov = require_openvino()
        model = read_ir(path)
        super().__init__(path, get_metadata(model, str(path)), device)
        self.kind = "openvino_int8" if self.metadata.precision == "int8" else "openvino"
        shape = model.inputs[0].get_partial_shape()
        self.check_file_shape([d.get_length() if d.is_static else None for d in shape])
        self.threads = int(threads or torch.get_num_threads())
        self.precision = precision
        config = {
            "INFERENCE_NUM_THREADS": self.threads,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": precision,
        }
        try:
            with keep_signal_stack():  # the CPU plugin swaps it; see signal_stack.py
                self.compiled = ov.Core().compile_model(model, "CPU", config)
        except Exception as e:
            raise ValueError(
                f"{path}: OpenVINO cannot compile this model ({str(e).splitlines()[0][:200]}); the "
                ".xml/.bin pair is corrupt or mismatched — re-export with `modyolo export --include "
                "openvino`"
            ) from e
        self.request = self.compiled.create_infer_request()

    def _forward(self, x: torch.Tensor, *thresholds: torch.Tensor):
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        outs = self.request.infer([array, *(t.numpy() for t in thresholds)], share_inputs=True)
        if self.end2end:
            return tuple(torch.from_numpy(outs[self.compiled.output(i)].copy()).to(x.device) for i in range(2))
        return torch.from_numpy(outs[self.compiled.output(0)].copy()).to(x.device)


# ----------------------------------------------------------------------------- TorchScript


class TorchScriptBackend(Backend):
    kind = "torchscript"

    def __init__(self, path: Path, device: torch.device) -> None:
        extra = {TORCHSCRIPT_FILE: ""}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # "torch.jit is deprecated": it still loads
                self.module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
        except RuntimeError as e:
            raise ValueError(
                f"{path} is not a TorchScript archive ({str(e).splitlines()[0]}); "
                "export one with `modyolo export --include torchscript`"
            ) from e
        if not extra[TORCHSCRIPT_FILE]:
            raise MetadataError(
                f"{path} has no {TORCHSCRIPT_FILE} metadata; it was not exported by `modyolo "
                "export`. Re-export it from the .pt with --include torchscript"
            )
        super().__init__(path, ExportMetadata.from_json(extra[TORCHSCRIPT_FILE], str(path)), device)
        self.module.eval()

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.module(x.to(self.device, torch.float32))


# --------------------------------------------------------------------------------- PyTorch


class TorchBackend(Backend):
    """A ``.pt`` checkpoint in eager PyTorch, fused: the reference the exports are checked against."""

    kind = "torch"

    def __init__(self, path: Path, device: torch.device, cfg: str | Path | dict | None = None) -> None:
        from modyolo import __version__
        from modyolo.deploy.prepare import load_model, prepare_for_export

        model = load_model(path, cfg)
        meta = ExportMetadata(
            names=model.names,
            stride=int(model.stride.max()),
            strides=[int(s) for s in model.stride.tolist()],
            imgsz=(640, 640),
            batch=None,
            dynamic=True,
            nc=model.nc,
            model=str(model.yaml.get("yaml_file", model.source)),
            version=__version__,
            exporter="",
        )
        super().__init__(path, meta, device)
        self.model = prepare_for_export(model).to(device)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.model(x.to(self.device, torch.float32))


def load_backend(
    path: str | Path,
    device: str | torch.device = "cpu",
    threads: int | None = None,
    cfg: str | Path | dict | None = None,
) -> Backend:
    """The backend for ``path`` by its suffix: ``.onnx``, ``.torchscript``, ``.pt`` / ``.pth``.

    threads: onnxruntime / OpenVINO inference threads (default ``torch.get_num_threads()``); the
        PyTorch backends use PyTorch's own thread setting. cfg: model YAML for a bare ``.pt`` state_dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights {path} not found")
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ValueError(
            f"{path}: unknown weights format {path.suffix!r}; modyolo runs "
            f"{', '.join(sorted(SUFFIXES))} files (export with `modyolo export`)"
        )
    dev = torch.device(device)
    if kind == "onnx":
        return OnnxBackend(path, dev, threads)
    if kind == "openvino":
        return OpenVinoBackend(path, dev, threads)
    if kind == "torchscript":
        return TorchScriptBackend(path, dev)
    return TorchBackend(path, dev, cfg)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of an exported file as a dict, without building an inference session."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        import onnx

        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        return ExportMetadata.from_onnx_props(props, str(path)).to_dict()
    if path.suffix.lower() == ".xml":
        from modyolo.deploy.openvino_export import get_metadata, read_ir

        return get_metadata(read_ir(path), str(path)).to_dict()
    return TorchScriptBackend(path, torch.device("cpu")).metadata.to_dict()
