"""INT8 post-training quantisation of an OpenVINO model (NNCF), checked by mAP, not by tensor.

``quantize_openvino(xml, model, data)`` calibrates on the user's own train images, read through
modyolo's data loader with the exact letterbox validation uses (so the activation ranges NNCF
measures are the ones the model sees), and writes ``<stem>_int8.xml`` + ``.bin``.

What stays float, and why: the convolutions (and the element-wise ops NNCF fuses with them) are
INT8; the Detect head's decode — sigmoid, ``(2σ - 0.5 + grid) * stride``, ``(2σ)² * anchor`` —
and, with ``--nms``, the whole NMS tail are in NNCF's ignored scope. Quantising the decode puts
box coordinates (0..640 px) and scores (0..1) on one 256-step grid each, which is what collapses
a naively quantised yolov5s to 0 mAP (onnxruntime #10787); the decode costs < 1 % of the time.

The INT8 model is then validated on the val split beside the float model; the export fails
(and deletes the INT8 files) when mAP50-95 drops by more than ``max_drop`` points, unless
``allow_drop`` turns that into a warning.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from modyolo.deploy.diagnose import ExportError
from modyolo.nn.model import DetectionModel
from modyolo.structures import MAP50_95

LOGGER = logging.getLogger("modyolo.deploy")
MAX_CALIBRATION = 300  # NNCF's default subset: more images move the ranges very little


def check_int8_request(data: str | Path | None, fraction: float) -> None:
    """Fail before any work when INT8 cannot be calibrated or checked."""
    if not data:
        raise ValueError(
            "--int8 needs calibration images: pass --data my.yaml (its train images calibrate the INT8 "
            "ranges, its val split checks mAP50-95), e.g. `modyolo export --weights best.pt --int8 "
            "--data my.yaml --fraction 0.5`"
        )
    if not 0 < fraction <= 1:
        raise ValueError(f"--fraction {fraction}: the share of train images used to calibrate must be in (0, 1]")
    _require_nncf()


def _require_nncf():
    try:
        import nncf
    except ImportError as e:
        raise ValueError("--int8 needs NNCF: pip install 'modyolo[openvino]' (or pip install nncf)") from e
    return nncf


def ignored_patterns(model: DetectionModel, nms: bool) -> list[str]:
    """Node-name regexes kept in float: the head's decode (all of the last layer but its ``m.i`` convs)
    and, for an NMS graph, everything outside the wrapped model."""
    head = len(model.model) - 1
    patterns = [rf"(.*/)?model\.{head}/(?!m\.\d+/).*"]
    if nms:
        patterns.append(r"(?!/model/).*")
    return patterns


def _loader(data_cfg, split: str, imgsz: int, batch: int, workers: int):
    from modyolo.data.loader import create_dataloader

    sources = getattr(data_cfg, split) or data_cfg.val
    return create_dataloader(
        sources,
        imgsz,
        batch,
        32,
        augment=False,
        rect=False,
        workers=workers,
        shuffle=False,
        prefix=f"{split}: ",
        names=data_cfg.names,
        nc=data_cfg.nc,
        persistent=False,
        progress=False,
    )


def quantize_openvino(
    xml: Path,
    model: DetectionModel,
    data: str | Path,
    *,
    fraction: float = 1.0,
    max_drop: float = 1.0,
    allow_drop: bool = False,
    workers: int = 0,
) -> Path:
    """Write ``<stem>_int8.xml`` next to ``xml`` and return it, or raise when it loses too much mAP."""
    from modyolo.data.dataset_yaml import load_data_config
    from modyolo.deploy.backends import OpenVinoBackend
    from modyolo.deploy.nms_graph import threshold_inputs
    from modyolo.deploy.openvino_export import get_metadata, read_ir, remove_ir, require_openvino, set_metadata
    from modyolo.deploy.signal_stack import keep_signal_stack

    nncf, ov = _require_nncf(), require_openvino()
    float_ir = read_ir(xml)
    meta = get_metadata(float_ir, str(xml))
    h, w = meta.imgsz
    if h != w:
        raise ValueError(
            f"--int8 calibrates and validates on square letterboxed images; export with a square --img (got {h}x{w})"
        )
    data_cfg = load_data_config(data)
    batch = meta.batch or 1
    loader, dataset = _loader(data_cfg, "train", h, batch, workers)
    n_batches = max(1, min(MAX_CALIBRATION // batch, round(fraction * len(dataset) / batch)))
    extra = [t.numpy() for t in threshold_inputs(0.001, 0.6, True)] if meta.nms else []

    def transform(item):
        imgs = item[0].float().div(255)
        if imgs.shape[0] < batch:  # a fixed-batch model: pad the last batch with its last image
            imgs = torch.cat((imgs, imgs[-1:].expand(batch - imgs.shape[0], *imgs.shape[1:])))
        return [imgs.numpy(), *extra] if extra else imgs.numpy()

    LOGGER.info("INT8: calibrating on %d batch(es) of %d train images", n_batches, batch)
    nncf_log = logging.getLogger("nncf")
    level = nncf_log.level
    nncf_log.setLevel(max(level, logging.WARNING))  # NNCF logs one INFO line per node it leaves float
    try:
        with keep_signal_stack():  # NNCF compiles models with OpenVINO's CPU plugin; see signal_stack.py
            quantized = nncf.quantize(
                float_ir,
                nncf.Dataset(loader, transform),
                subset_size=n_batches * batch,
                preset=nncf.QuantizationPreset.MIXED,
                ignored_scope=nncf.IgnoredScope(patterns=ignored_patterns(model, meta.nms), validate=False),
            )
    except Exception as e:
        raise ExportError(
            f"NNCF could not quantise {meta.model}: {str(e).splitlines()[0][:300]}; the node named in "
            "the message starts with its modyolo layer (/model.<index>/...); export without --int8 "
            "or replace that block"
        ) from e
    finally:
        nncf_log.setLevel(level)
    out = xml.with_name(f"{xml.stem}_int8.xml")
    meta.precision, meta.exporter = "int8", f"{meta.exporter}; nncf {nncf.__version__} INT8 (MIXED preset)"
    set_metadata(quantized, meta)
    ov.save_model(quantized, str(out), compress_to_fp16=False)  # validated from the file, as it will be run

    fp32_map, int8_map = (
        _map50_95(OpenVinoBackend(p, torch.device("cpu")), data_cfg, h, batch, workers) for p in (xml, out)
    )
    drop = (fp32_map - int8_map) * 100
    report = (
        f"INT8 check on the val split: mAP50-95 fp32 {fp32_map:.4f}, int8 {int8_map:.4f} "
        f"(drop {drop:.2f} points, limit {max_drop:g})"
    )
    LOGGER.info(report)
    if drop > max_drop:
        if not allow_drop:
            remove_ir(out)
            raise ExportError(
                f"{report}: INT8 model refused and deleted. Calibrate on more or more typical images "
                "(--fraction 1, a --data whose train split looks like deployment), raise "
                "--int8-max-drop, or keep it anyway with --int8-allow-drop"
            )
        LOGGER.warning("%s — kept because of --int8-allow-drop", report)
    # the check travels with the file: `modyolo export` prints it, read_metadata shows it later
    meta.calibration = f"{n_batches * batch} images of {data_cfg.source}; {report}"
    set_metadata(quantized, meta)
    ov.save_model(quantized, str(out), compress_to_fp16=False)
    return out


def _map50_95(backend, data_cfg, imgsz: int, batch: int, workers: int) -> float:
    from modyolo.eval.validator import validate

    loader, _ = _loader(data_cfg, "val", imgsz, batch, workers)
    names = list(data_cfg.names.values()) if isinstance(data_cfg.names, dict) else list(data_cfg.names)
    result = validate(backend, loader, names=names, progress=False)
    return float(np.mean(np.asarray(result.metrics[MAP50_95], dtype=np.float64)))
