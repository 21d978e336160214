"""Devices and DDP as ``torchrun`` starts it (nccl on GPU, gloo on CPU).

``torchrun --nproc_per_node 2 -m modyolo train ...`` sets RANK / LOCAL_RANK / WORLD_SIZE; each
process trains on its shard of every epoch (DistributedSampler), gradients are averaged by DDP,
and only rank 0 validates, logs and saves. No home-made process management.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = -1  # -1 = not distributed
    local_rank: int = -1
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.rank != -1

    @property
    def is_main(self) -> bool:
        return self.rank in (-1, 0)


def dist_info_from_env() -> DistInfo:
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return DistInfo()
    return DistInfo(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ["WORLD_SIZE"]))


def init_process_group(info: DistInfo, device: torch.device) -> None:
    if not info.enabled or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size)


def barrier(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.barrier()


def broadcast_flag(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """Rank 0's decision (e.g. early stop) for every rank."""
    if not info.enabled or not dist.is_initialized():
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.broadcast(t, 0)
    return bool(t.item())


def destroy(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
