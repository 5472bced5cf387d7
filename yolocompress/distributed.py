"""torchrun + DistributedDataParallel plumbing for ``train()``; a no-op in a single process.

``train()`` calls these few functions so that the same loop runs alone or under
``torchrun --nproc_per_node N -m yolocompress train ...``: the process group comes from the
environment torchrun sets (nccl on CUDA, gloo on CPU), each rank sees its own shard of every epoch
(DistributedSampler, reseeded per epoch), and only rank 0 evaluates, logs and writes files.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler

_CREATED = False


def launched() -> bool:
    """True when started by torchrun (or another launcher) with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup() -> bool:
    """Join the process group torchrun describes; returns whether training is distributed."""
    global _CREATED
    if not launched():
        return False
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
        _CREATED = True
    return True


def cleanup(ddp: bool) -> None:
    global _CREATED
    if ddp and _CREATED and dist.is_initialized():
        dist.destroy_process_group()
        _CREATED = False


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def device_for(device: torch.device) -> torch.device:
    """On CUDA each process takes the GPU of its LOCAL_RANK."""
    if device.type == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def per_rank_batch(global_batch: int) -> int:
    """Split the global batch over the processes (it must divide evenly)."""
    n = world()
    if global_batch % n:
        raise ValueError(f"batch size {global_batch} is not divisible by the {n} processes")
    return global_batch // n


def make_sampler(dataset, seed: int) -> DistributedSampler:
    return DistributedSampler(dataset, num_replicas=world(), rank=rank(), shuffle=True, seed=seed,
                              drop_last=True)


def wrap(model: torch.nn.Module, device: torch.device) -> DistributedDataParallel:
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    """Mean of a tensor over processes (identity when alone)."""
    if dist.is_initialized():
        t = t.clone()
        dist.all_reduce(t)
        t /= world()
    return t
