"""Export a detector to ONNX, TorchScript and OpenVINO, with its metadata, checked against PyTorch.

``export(weights_or_model, include=("onnx", "torchscript", "openvino"), imgsz=640)`` writes
``<stem>.onnx``, ``<stem>.torchscript`` and ``<stem>.xml`` + ``<stem>.bin`` (OpenVINO IR, converted
from the ONNX graph, fp32 weights) next to the weights (or in ``out_dir``). Both hold the fused model
with Detect in export mode: one input ``images: float32[B, 3, H, W]`` (0-1, RGB, letterboxed)
and one output ``output0: float32[B, N, 5+nc]`` (yolov5's inference contract), plus
:class:`ExportMetadata` (names, stride, imgsz, batch, ...). With ``nms=True`` the ONNX / OpenVINO graph ends in
class-aware NMS (class-agnostic with ``agnostic_nms=True``, and for one-class models, where the two are
the same) and returns final detections (:mod:`modyolo.deploy.nms_graph`); with
``int8=True`` an OpenVINO INT8 model is added, calibrated and checked by mAP
(:mod:`modyolo.deploy.quantize`).

ONNX goes through ``torch.onnx.export(dynamo=False)`` (the TorchScript-based exporter) by
default: on torch 2.14 it exports every shipped config in < 1 s where the dynamo exporter takes
7–15 s per model and needs onnxscript, and its graphs run as fast in onnxruntime. ``dynamo=True``
selects the other one. Every file is run once after writing and compared with PyTorch (boxes to
1e-3 px + 1e-4 relative, scores to 1e-4); a dynamic export is also checked at another batch and
size, because a block can export "successfully" with a shape baked in. A failure names the layer
(see :mod:`modyolo.deploy.diagnose`).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import nn

from modyolo import __version__
from modyolo.deploy.diagnose import Attempt, ExportError, explain_failure, quiet_exporter, short_reason
from modyolo.deploy.metadata import TORCHSCRIPT_FILE, ExportMetadata
from modyolo.deploy.prepare import load_model, prepare_for_export
from modyolo.nn.heads import needs_nms
from modyolo.nn.model import DetectionModel

LOGGER = logging.getLogger("modyolo")
FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript", "openvino": ".xml"}
DEFAULT_OPSET = 17  # ONNX Runtime >= 1.12 runs it; Detect needs nothing newer
BOX_ATOL, BOX_RTOL, SCORE_ATOL = 1e-3, 1e-4, 1e-4


def export(
    weights_or_model: str | Path | DetectionModel,
    include: Iterable[str] = ("onnx",),
    imgsz: int | Sequence[int] = 640,
    batch_size: int = 1,
    dynamic: bool = False,
    simplify: bool = False,
    opset: int | None = None,
    nms: bool = False,
    out_dir: str | Path | None = None,
    cfg: str | Path | dict | None = None,
    dynamo: bool = False,
    verify: bool = True,
    max_det: int = 300,
    int8: bool = False,
    data: str | Path | None = None,
    fraction: float = 1.0,
    int8_max_drop: float = 1.0,
    int8_allow_drop: bool = False,
    workers: int = 0,
    agnostic_nms: bool = False,
) -> dict[str, Path]:
    """Write the requested formats; returns ``{format: path}``.

    weights_or_model: a ``.pt`` (modyolo checkpoint or state_dict + ``cfg``) or a DetectionModel
        (left untouched: a fused copy is exported). imgsz: ``640`` or ``(h, w)``, multiples of
        the model's stride. batch_size: the fixed batch (ignored in shape when ``dynamic``).
    dynamic: batch, height and width free (H, W still multiples of the stride).
    simplify: run onnxslim on the ONNX graph. nms: end the ONNX / OpenVINO graph in NMS (thresholds
        are graph inputs, ``max_det`` is baked in); not for TorchScript. agnostic_nms: with ``nms``,
        suppress across classes (what ``val --single-cls`` and ``detect --agnostic-nms`` need);
        recorded as ``agnostic`` in the metadata, which is also True for a one-class model.
    int8: also write ``<stem>_int8.xml`` (OpenVINO, NNCF post-training quantisation calibrated on
        ``fraction`` of ``data``'s train images) and validate it beside the float model on the val
        split; refused (ExportError) when mAP50-95 drops by more than ``int8_max_drop`` points
        unless ``int8_allow_drop`` (then a warning). The key is ``"openvino_int8"``.
    """
    include = [f.lower() for f in include]
    unknown = [f for f in include if f not in FORMATS]
    if unknown or not include:
        raise ValueError(f"unknown export format(s) {unknown or include}; choose from {list(FORMATS)}")
    if agnostic_nms and not nms:
        raise ValueError("--agnostic-nms chooses how the NMS inside the graph suppresses; add --nms (or drop it)")
    if nms and "torchscript" in include:
        raise ValueError(
            "--nms puts NMS inside ONNX / OpenVINO graphs only; export TorchScript in a separate "
            "run without --nms (its NMS runs in Python after the model)"
        )
    if int8:
        from modyolo.deploy.quantize import check_int8_request

        check_int8_request(data, fraction)
        if "openvino" not in include:
            include.append("openvino")  # INT8 is quantised from the OpenVINO float model, checked beside it
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(weights_or_model, DetectionModel):
        source_model, stem = weights_or_model, Path(weights_or_model.source).stem
        default_dir = Path(".")
    else:
        source_model, stem = load_model(weights_or_model, cfg), Path(weights_or_model).stem
        default_dir = Path(weights_or_model).parent
    out = Path(out_dir) if out_dir is not None else default_dir
    out.mkdir(parents=True, exist_ok=True)

    model = prepare_for_export(source_model)
    if nms:
        _check_nms_head(model)
        if model.nc == 1:  # one class: per-class NMS is class-agnostic NMS; say so in the metadata
            agnostic_nms = True
    if not needs_nms(model.head):  # an NMS-free head: the graph ends in final detections anyway
        if "torchscript" in include:
            raise ValueError(
                f"{model.source}: the NMS-free head exports to ONNX / OpenVINO graphs that output "
                "final detections; export TorchScript from a model with an NMS head"
            )
        nms, max_det = True, int(model.head.max_det)
    size = check_imgsz(imgsz, model)
    x = _example(batch_size, size, seed=0)
    check_x = _example(2, (size[0] + int(model.stride.max()), size[1]), seed=1) if dynamic else x
    meta = ExportMetadata(
        names=list(getattr(source_model, "names", [])) or [str(i) for i in range(model.nc)],
        stride=int(model.stride.max()),
        strides=[int(s) for s in model.stride.tolist()],
        imgsz=size,
        batch=None if dynamic else batch_size,
        dynamic=dynamic,
        nc=model.nc,
        model=str(model.yaml.get("yaml_file", model.source)),
        version=__version__,
        nms=nms,
        max_det=max_det if nms else 0,
        agnostic=bool(agnostic_nms and nms),
    )
    if nms:
        from modyolo.deploy.nms_graph import NMS_LAYOUT

        meta.output = NMS_LAYOUT
    written: dict[str, Path] = {}
    for fmt in include:
        path = out / f"{stem}{FORMATS[fmt]}"
        if fmt == "onnx":
            written[fmt] = export_onnx(
                model,
                x,
                check_x,
                path,
                meta,
                opset=opset,
                dynamic=dynamic,
                simplify=simplify,
                dynamo=dynamo,
                verify=verify,
            )
        elif fmt == "openvino":
            written[fmt] = _export_openvino(
                model,
                x,
                check_x,
                path,
                meta,
                onnx_path=written.get("onnx"),
                opset=opset,
                dynamic=dynamic,
                verify=verify,
            )
        else:
            written[fmt] = export_torchscript(model, x, check_x, path, meta, dynamic=dynamic, verify=verify)
        LOGGER.info("%s export: %s (%.1f MB)", fmt, path, path.stat().st_size / 1e6)
    if int8:
        from modyolo.deploy.quantize import quantize_openvino

        written["openvino_int8"] = quantize_openvino(
            written["openvino"],
            model,
            data,
            fraction=fraction,
            max_drop=int8_max_drop,
            allow_drop=int8_allow_drop,
            workers=workers,
        )
    return written


def _export_openvino(
    model: DetectionModel,
    x: torch.Tensor,
    check_x: torch.Tensor,
    path: Path,
    meta: ExportMetadata,
    *,
    onnx_path: Path | None = None,
    opset: int | None = None,
    dynamic: bool = False,
    verify: bool = True,
) -> Path:
    """Write ``path`` (.xml) and its ``.bin``; check them against PyTorch like the ONNX file.

    onnx_path: an ONNX file this export already wrote for the same model and settings (reused);
    otherwise one is written to a temporary folder and checked there, so an ONNX-level failure
    is reported with its layer before OpenVINO is involved.
    """
    from modyolo.deploy.openvino_export import export_openvino, remove_ir

    with tempfile.TemporaryDirectory(prefix="modyolo-ov-") as tmp:
        if onnx_path is None:
            onnx_meta = ExportMetadata(**{**meta.to_dict(), "imgsz": meta.imgsz})
            onnx_path = export_onnx(
                model, x, check_x, Path(tmp) / "model.onnx", onnx_meta, opset=opset, dynamic=dynamic, verify=verify
            )
        export_openvino(onnx_path, path, meta)
    if verify:
        try:
            verify_backend(model, [x] if check_x is x else [x, check_x], path, meta)
        except Exception:
            remove_ir(path)
            raise
    return path


def verify_backend(model: DetectionModel, inputs: list[torch.Tensor], path: Path, meta: ExportMetadata) -> None:
    """Run the written IR through :class:`~modyolo.deploy.backends.OpenVinoBackend` and compare."""
    from modyolo.deploy.backends import OpenVinoBackend

    backend = OpenVinoBackend(path, torch.device("cpu"), threads=None)
    if meta.nms:
        verify_end_to_end(
            model, inputs, lambda x, c, i, m: backend.run_end_to_end(x, c, i, m), meta.max_det, meta.agnostic
        )
    else:
        _verify(model, inputs, backend)


def _check_nms_head(model: DetectionModel) -> None:
    """--nms needs a head whose output goes through NMS (``[B, N, 5+nc]``); say so for NMS-free heads."""
    from modyolo.nn.heads import needs_nms

    if not needs_nms(model.head):
        i = len(model.model) - 1
        raise ValueError(
            f"--nms: layer {i} ({type(model.head).__name__}) of {model.source} is an NMS-free head whose "
            "export already outputs final detections; export without --nms"
        )


def check_imgsz(imgsz: int | Sequence[int], model: DetectionModel) -> tuple[int, int]:
    """``(h, w)``; an error suggesting the next valid size when not a multiple of the stride."""
    h, w = (imgsz, imgsz) if isinstance(imgsz, int) else tuple(imgsz) * (2 if len(imgsz) == 1 else 1)
    s = int(model.stride.max())
    bad = [v for v in (h, w) if v % s or v <= 0]
    if bad:
        ok = [max(s, -(-v // s) * s) for v in (h, w)]
        raise ValueError(
            f"--img {h} {w}: every side must be a positive multiple of the model's stride {s}; "
            f"use --img {ok[0]} {ok[1]}"
        )
    return int(h), int(w)


def _example(batch: int, size: tuple[int, int], seed: int) -> torch.Tensor:
    """A deterministic 0-1 image batch: random values exercise every path, zeros would not."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, *size, generator=g)


def compare_pred(ref: torch.Tensor, out: torch.Tensor) -> str | None:
    """None when ``out`` matches ``ref`` (``[B, N, 5+nc]``), else a sentence saying by how much."""
    if ref.shape != out.shape:
        return f"output shape {tuple(out.shape)} differs from PyTorch's {tuple(ref.shape)}"
    box_err = (out[..., :4] - ref[..., :4]).abs()
    box_tol = BOX_ATOL + BOX_RTOL * ref[..., :4].abs()
    score_err = (out[..., 4:] - ref[..., 4:]).abs()
    if bool((box_err > box_tol).any()) or bool((score_err > SCORE_ATOL).any()) or not bool(out.isfinite().all()):
        return (
            f"output differs from PyTorch's: boxes by up to {float(box_err.max()):.3g} px, scores by up to "
            f"{float(score_err.max()):.3g}"
        )
    return None


def _compare_any(ref, out) -> str | None:
    """compare_pred for one tensor or a tuple of them (layers may return several maps)."""
    refs = ref if isinstance(ref, (tuple, list)) else (ref,)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    if len(refs) != len(outs):
        return f"{len(outs)} outputs where PyTorch gives {len(refs)}"
    for r, o in zip(refs, outs):
        if r.shape != o.shape:
            return f"output shape {tuple(o.shape)} differs from PyTorch's {tuple(r.shape)}"
        if not torch.allclose(o, r, rtol=BOX_RTOL, atol=SCORE_ATOL):
            return f"output differs from PyTorch's by up to {float((o - r).abs().max()):.3g}"
    return None


# ----------------------------------------------------------------------------------- ONNX


def _onnx_attempt(opset: int, dynamic: bool, dynamo: bool) -> Attempt:
    """Export one module to memory, run it in onnxruntime on the check inputs, compare."""

    def attempt(
        module: torch.nn.Module, trace_in: tuple[torch.Tensor, ...], check_in: tuple[torch.Tensor, ...]
    ) -> None:
        import io

        from modyolo.deploy.backends import ort_session

        names = [f"x{i}" for i in range(len(trace_in))]
        axes = (
            {n: {0: "batch", 2: "height", 3: "width"} for n, t in zip(names, trace_in) if t.dim() == 4}
            if dynamic
            else None
        )
        buf = io.BytesIO()
        torch.onnx.export(
            module,
            trace_in,
            buf,
            dynamo=dynamo,
            opset_version=opset,
            input_names=names,
            dynamic_axes=axes,
            do_constant_folding=True,
        )
        session = ort_session(buf.getvalue(), threads=1)
        outs = session.run(None, {n: t.numpy() for n, t in zip(names, check_in)})
        problem = _compare_any(module(*check_in), tuple(torch.from_numpy(o) for o in outs))
        if problem:
            raise ExportError(problem)

    return attempt


def export_onnx(
    model: DetectionModel,
    x: torch.Tensor,
    check_x: torch.Tensor,
    path: Path,
    meta: ExportMetadata,
    *,
    opset: int | None = None,
    dynamic: bool = False,
    simplify: bool = False,
    dynamo: bool = False,
    verify: bool = True,
) -> Path:
    """Write ``path`` (.onnx): export, ``onnx.checker``, optional onnxslim, metadata, parity check."""
    import onnx

    opset = opset or (18 if dynamo else DEFAULT_OPSET)
    if simplify:
        _require_onnxslim()  # before exporting: a missing package is not a layer's fault
    meta.opset, meta.exporter = opset, f"torch.onnx ({'dynamo' if dynamo else 'torchscript'})"
    net, args, in_names, out_names, axes = _graph_io(model, x, meta, dynamic)
    try:
        with quiet_exporter():
            torch.onnx.export(
                net,
                args,
                str(path),
                dynamo=dynamo,
                opset_version=opset,
                input_names=in_names,
                output_names=out_names,
                dynamic_axes=axes,
                do_constant_folding=True,
            )
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto)
        if simplify:
            proto = _slim(proto)
        _set_props(proto, meta.to_onnx_props())
        onnx.save(proto, str(path))
        if verify:
            inputs = [x] if check_x is x else [x, check_x]
            if meta.nms:
                verify_end_to_end(model, inputs, _run_onnx_nms(path), meta.max_det, meta.agnostic)
            else:
                _verify(model, inputs, _run_onnx(path))
    except Exception as e:
        path.unlink(missing_ok=True)  # never leave a file that does not match the model
        raise explain_failure("ONNX", model, x, check_x, _onnx_attempt(opset, dynamic, dynamo), e, dynamic) from e
    return path


def _graph_io(model: DetectionModel, x: torch.Tensor, meta: ExportMetadata, dynamic: bool):
    """(module, example args, input names, output names, dynamic axes) for a plain or an NMS graph."""
    if not meta.nms:
        axes = {"images": {0: "batch", 2: "height", 3: "width"}, "output0": {0: "batch", 1: "anchors"}}
        return model, (x,), ["images"], ["output0"], axes if dynamic else None
    from modyolo.deploy.nms_graph import INPUTS, OUTPUTS, EndToEnd, threshold_inputs

    axes = {"images": {0: "batch", 2: "height", 3: "width"}, "detections": {0: "batch"}, "num_dets": {0: "batch"}}
    if not needs_nms(model.head):
        from modyolo.deploy.nms_free_graph import NmsFreeGraph

        net: nn.Module = NmsFreeGraph(model)
    else:
        net = EndToEnd(model, meta.max_det, agnostic=meta.agnostic)
    return (
        net.eval(),
        (x, *threshold_inputs(0.25, 0.45, False)),
        list(INPUTS),
        list(OUTPUTS),
        axes if dynamic else None,
    )


# (conf, iou, multi_label) an NMS graph is checked at: validation's and detection's settings
NMS_CHECKS = ((0.001, 0.6, True), (0.25, 0.45, False))


def verify_end_to_end(
    model: DetectionModel, inputs: list[torch.Tensor], run, max_det: int, agnostic: bool = False
) -> None:
    """Raise :class:`ExportError` unless the NMS graph ``run(x, conf, iou, multi_label) -> (dets, num)``
    keeps the same detections as ``non_max_suppression(model(x), agnostic=agnostic)`` at val's and
    detect's settings."""
    from modyolo.deploy.nms_graph import compare_detections, split_detections
    from modyolo.eval.nms import non_max_suppression

    if not needs_nms(model.head):  # NMS-free: the reference is the model's own top-k detections
        from modyolo.deploy.nms_free_graph import verify_nms_free

        problem = verify_nms_free(model, inputs, run, NMS_CHECKS)
        if problem:
            raise ExportError(f"the exported NMS-free graph's {problem}")
        return

    for x in inputs:
        with torch.no_grad():
            pred = model(x)
        for conf, iou, multi in NMS_CHECKS:
            ref = non_max_suppression(
                pred, conf, iou, multi_label=multi, agnostic=agnostic, max_det=max_det, max_nms=10**9
            )
            try:
                out = split_detections(*run(x, conf, iou, multi))
            except Exception as e:
                raise ExportError(
                    f"the exported NMS graph fails on an input of shape {tuple(x.shape)}: {short_reason(e)}"
                ) from e
            problem = compare_detections(ref, out, slack=0.02)  # near-ties: see compare_detections
            if problem:
                raise ExportError(
                    f"on an input of shape {tuple(x.shape)} at conf {conf}, iou {iou}, "
                    f"multi_label {multi} the exported NMS graph's {problem}"
                )


def _run_onnx_nms(path: Path):
    from modyolo.deploy.backends import ort_session
    from modyolo.deploy.nms_graph import INPUTS, threshold_inputs

    session = ort_session(path.read_bytes(), threads=None)

    def run(x: torch.Tensor, conf: float, iou: float, multi: bool):
        feed = dict(zip(INPUTS, (x.numpy(), *(t.numpy() for t in threshold_inputs(conf, iou, multi)))))
        dets, num = session.run(None, feed)
        return torch.from_numpy(dets), torch.from_numpy(num)

    return run


def _require_onnxslim():
    try:
        import onnxslim
    except ImportError as e:
        raise ExportError("--simplify needs onnxslim: pip install onnxslim (or export without --simplify)") from e
    return onnxslim


def _slim(proto):
    import onnx

    slim = _require_onnxslim().slim(proto)
    onnx.checker.check_model(slim)
    return slim


def _set_props(proto, props: dict[str, str]) -> None:
    existing = {p.key: p for p in proto.metadata_props}
    for k, v in props.items():
        entry = existing.get(k) or proto.metadata_props.add()
        entry.key, entry.value = k, v


def _run_onnx(path: Path):
    from modyolo.deploy.backends import ort_session

    session = ort_session(path.read_bytes(), threads=None)
    return lambda x: torch.from_numpy(session.run(None, {"images": x.numpy()})[0])


def _verify(model: DetectionModel, inputs: list[torch.Tensor], run) -> None:
    """Raise :class:`ExportError` unless ``run(x)`` matches ``model(x)`` on every input."""
    for x in inputs:
        with torch.no_grad():
            ref = model(x)
        try:
            out = run(x)
        except Exception as e:
            raise ExportError(
                f"the exported file fails on an input of shape {tuple(x.shape)}: {short_reason(e)}"
            ) from e
        problem = compare_pred(ref, out)
        if problem:
            raise ExportError(f"on an input of shape {tuple(x.shape)} the exported {problem}")


# ----------------------------------------------------------------------------- TorchScript


def _torchscript_attempt(
    module: torch.nn.Module, trace_in: tuple[torch.Tensor, ...], check_in: tuple[torch.Tensor, ...]
) -> None:
    import io

    buf = io.BytesIO()
    torch.jit.save(torch.jit.trace(module, trace_in, check_trace=False), buf)  # saving is where Python ops fail
    buf.seek(0)
    problem = _compare_any(module(*check_in), torch.jit.load(buf)(*check_in))
    if problem:
        raise ExportError(problem)


def export_torchscript(
    model: DetectionModel,
    x: torch.Tensor,
    check_x: torch.Tensor,
    path: Path,
    meta: ExportMetadata,
    *,
    dynamic: bool = False,
    verify: bool = True,
) -> Path:
    """Write ``path`` (.torchscript) by ``torch.jit.trace``; metadata in the ``config.txt`` extra file."""
    meta.exporter, meta.opset = "torch.jit.trace", None
    try:
        with quiet_exporter(), torch.no_grad():
            traced = torch.jit.trace(model, x, check_trace=False)
            torch.jit.save(traced, str(path), _extra_files={TORCHSCRIPT_FILE: meta.to_json()})
            if verify:
                loaded = torch.jit.load(str(path), map_location="cpu")
                _verify(model, [x] if check_x is x else [x, check_x], loaded)
    except Exception as e:
        path.unlink(missing_ok=True)
        raise explain_failure("TorchScript", model, x, check_x, _torchscript_attempt, e, dynamic) from e
    return path
