"""Multi-GPU / multi-node helpers for ``torchrun`` (DistributedDataParallel).

Launch (one node, 4 GPUs)::

    torchrun --nproc_per_node=4 -m plan_lite.cli train DATA --preset paper --out runs/paper

Several nodes: add ``--nnodes=N --node_rank=R --rdzv_backend=c10d --rdzv_endpoint=HOST:29500`` on every node.
``torchrun`` sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; ``init_distributed``
reads them (NCCL on GPU, gloo on CPU). Rank 0 alone writes logs and checkpoints; every rank samples different
patches (rank-offset generators, ``plan_lite.engine.sampler``). The effective batch is
``world_size * cfg.train.batch_size`` (the paper's batch 2 = 1 GPU with batch 2, or 2 GPUs with batch 1).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(device: str | None = None) -> DistInfo:
    """Initialise the process group from torchrun's env vars when ``WORLD_SIZE > 1``; pick this rank's device."""
    world = env_world_size()
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    want_cuda = (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    if want_cuda and not torch.cuda.is_available():
        from plan_lite.errors import PlanLiteError

        raise PlanLiteError("train: --device cuda requested but CUDA is not available")
    if want_cuda:
        dev = torch.device("cuda", local_rank if world > 1 else torch.cuda.current_device())
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if want_cuda else "gloo", init_method="env://")
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=dev)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def broadcast_flag(flag: bool, info: DistInfo) -> bool:
    """Rank 0's decision (e.g. the time budget ran out) for every rank, so all ranks stop at the same step."""
    if not info.enabled:
        return flag
    t = torch.tensor([1 if flag else 0], device=info.device if info.device.type == "cuda" else "cpu")
    dist.broadcast(t, src=0)
    return bool(t.item())


def wrap_model(model: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    """DDP with ``find_unused_parameters=True``: stage 1 leaves the lesion and patient branches unused."""
    if not info.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [info.device.index] if info.device.type == "cuda" else None
    return DDP(model, device_ids=ids, find_unused_parameters=True)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


__all__ = ["DistInfo", "init_distributed", "cleanup_distributed", "barrier", "broadcast_flag", "wrap_model",
           "unwrap", "env_world_size"]
