"""Device selection, one rule for training, validation, detection, export and the API."""

from __future__ import annotations

import torch


def select_device(spec: str | torch.device = "", local_rank: int | None = None) -> torch.device:
    """``''`` -> cuda:0 when CUDA is available, else CPU; ``'cpu'``; ``'0'`` / ``'0,1'`` (the first) /
    ``'cuda:1'``; another torch device name (``'mps'``) or a ``torch.device`` as it is. Under DDP
    (``local_rank`` given) a CUDA request means ``cuda:<local_rank>``.

    Raises ``ValueError`` naming the flag's fix when CUDA is asked for but not available.
    """
    if isinstance(spec, torch.device):
        return spec
    text = str(spec).strip().lower()
    if text == "cpu" or (not text and not torch.cuda.is_available()):
        return torch.device("cpu")
    cuda = not text or text.startswith("cuda") or text.replace(",", "").isdigit()
    if not cuda:
        return torch.device(text)
    if not torch.cuda.is_available():
        raise ValueError(f"device {spec!r} asks for CUDA but torch.cuda.is_available() is False here; use --device cpu")
    if local_rank is not None:
        return torch.device("cuda", local_rank)
    index = text.removeprefix("cuda").removeprefix(":").split(",")[0] or "0"
    return torch.device("cuda", int(index))
