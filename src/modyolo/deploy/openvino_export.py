"""OpenVINO IR export: ``<stem>.xml`` (graph) + ``<stem>.bin`` (fp32 weights), from the ONNX graph.

The IR is converted from the ONNX file modyolo writes (an existing one from the same run, or a
temporary one), so the OpenVINO model has exactly the ONNX graph's inputs and outputs — plain
``pred [B, N, 5+nc]`` or, with ``--nms``, the end-to-end detections — and the same parity check
against PyTorch. Weights stay fp32 (``compress_to_fp16=False``): on CPU the plugin runs fp32 (or
bf16 by its own choice) either way, and fp16 storage would make the parity check a tolerance
game. The :class:`~modyolo.deploy.metadata.ExportMetadata` fields go into the model's ``rt_info``
under ``modyolo/<field>`` as JSON text, readable with ``Core().read_model(xml).get_rt_info()``.
"""

from __future__ import annotations

import json
from pathlib import Path

from modyolo.deploy.diagnose import ExportError, short_reason
from modyolo.deploy.metadata import ExportMetadata, MetadataError

RT_KEY = "modyolo"


def require_openvino():
    """The ``openvino`` module, or an error saying how to install it."""
    try:
        import openvino
    except ImportError as e:
        raise ExportError(
            "OpenVINO export and inference need the openvino package: pip install 'modyolo[openvino]' "
            "(or pip install openvino)"
        ) from e
    return openvino


def set_metadata(ov_model, meta: ExportMetadata) -> None:
    for key, value in meta.to_dict().items():
        ov_model.set_rt_info(json.dumps(value), [RT_KEY, key])


def get_metadata(ov_model, source: str) -> ExportMetadata:
    """The ExportMetadata stored in ``rt_info`` (MetadataError when it was not written by modyolo)."""
    from dataclasses import fields

    data = {}
    for f in fields(ExportMetadata):
        if ov_model.has_rt_info([RT_KEY, f.name]):
            text = ov_model.get_rt_info([RT_KEY, f.name]).astype(str)
            try:
                data[f.name] = json.loads(text)
            except json.JSONDecodeError as e:
                raise MetadataError(
                    f"{source}: metadata field {f.name} is not JSON ({text[:40]!r}); re-export the model"
                ) from e
    return ExportMetadata.from_dict(data, source)


def export_openvino(onnx_path: Path, path: Path, meta: ExportMetadata) -> Path:
    """Convert the checked ONNX graph at ``onnx_path`` to ``path`` (.xml) and its ``.bin``, with ``meta``.

    :func:`modyolo.deploy.export.export` writes (and checks) the ONNX graph first, so an ONNX-level
    failure is reported with its layer before OpenVINO is involved, and checks the IR afterwards.
    """
    ov = require_openvino()
    meta.exporter, meta.opset = f"openvino {ov.__version__} (from ONNX)", None
    try:
        ov_model = ov.convert_model(str(onnx_path))
    except Exception as e:
        raise ExportError(
            f"OpenVINO cannot convert the ONNX graph of {meta.model}: {short_reason(e)}; "
            f"{unsupported_ops_hint(onnx_path)}"
        ) from e
    set_metadata(ov_model, meta)
    ov.save_model(ov_model, str(path), compress_to_fp16=False)
    return path


def unsupported_ops_hint(onnx_path: Path) -> str:
    """The op types of ``onnx_path`` OpenVINO's ONNX frontend cannot convert, naming their layers."""
    try:
        import onnx
        from openvino.frontend import FrontEndManager

        fe = FrontEndManager().load_by_framework("onnx")
        partial = fe.convert_partially(fe.load(str(onnx_path)))
        bad = sorted(
            {
                op.get_type_name() + ": " + op.get_friendly_name()
                for op in partial.get_ordered_ops()
                if op.get_type_name() == "FrameworkNode"
            }
        )
        del onnx
    except Exception:  # noqa: BLE001 — the hint is best effort; the converter's message stands
        bad = []
    where = f"unconverted nodes: {', '.join(bad[:5])}; " if bad else ""
    return (
        f"{where}ONNX node names start with the modyolo layer (/model.<index>/...): replace that block, or "
        "export --include onnx and run it in ONNX Runtime"
    )


def remove_ir(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.with_suffix(".bin").unlink(missing_ok=True)


def read_ir(path: Path):
    """``Core().read_model`` with the failures a user can fix said plainly (missing/corrupt .bin/.xml)."""
    ov = require_openvino()
    weights = path.with_suffix(".bin")
    if not weights.is_file():
        raise ValueError(
            f"{path}: its weights file {weights.name} is missing; an OpenVINO model is an .xml + .bin "
            "pair written by `modyolo export --include openvino` — copy both"
        )
    try:
        return ov.Core().read_model(str(path), str(weights))
    except Exception as e:
        raise ValueError(
            f"{path} / {weights.name} is not a readable OpenVINO IR pair ({short_reason(e)}); the files are "
            "corrupt or truncated — re-export with `modyolo export --include openvino`"
        ) from e


__all__ = ["MetadataError", "export_openvino", "get_metadata", "read_ir", "require_openvino", "set_metadata"]
