"""torchrun + DistributedDataParallel plumbing for ``train()``; a no-op in a single process.

``train()`` calls these few functions so that the same loop runs alone or under
``torchrun --nproc_per_node N -m yolocompress train ...``: the process group comes from the
environment torchrun sets (nccl on CUDA, gloo on CPU), each rank sees its own shard of every epoch
(``GlobalBatchSampler``, reseeded per epoch), and only rank 0 evaluates, logs and writes files.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

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


class GlobalBatchSampler(torch.utils.data.Sampler):
    """Shuffled global batches, each split into ``world`` equal contiguous slices; this process
    gets slice ``rank``. The global batches depend only on (seed, epoch), never on the number of
    processes - so 1 process and N processes see the same data, which is what makes runs
    comparable (and a resumed run, on any number of processes, continue the same sequence).
    Incomplete final global batches are dropped."""

    def __init__(self, n: int, global_batch: int, seed: int = 0, rank_: int = 0, world_: int = 1):
        if global_batch % world_:
            raise ValueError(f"batch size {global_batch} is not divisible by the {world_} processes")
        self.n, self.global_batch, self.seed, self.rank, self.world = n, global_batch, seed, rank_, world_
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n // self.global_batch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(self.n, generator=g).tolist()
        per = self.global_batch // self.world
        for b in range(len(self)):
            start = b * self.global_batch + self.rank * per
            yield perm[start:start + per]


def make_sampler(dataset, global_batch: int, seed: int) -> GlobalBatchSampler:
    """This process's batch sampler (one process: the whole global batch)."""
    return GlobalBatchSampler(len(dataset), global_batch, seed, rank(), world())


def sync_bn(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Convert BatchNorm2d to SyncBatchNorm (statistics over all processes). torch runs it on GPUs
    only, so on CPU this refuses with a clear message instead of failing inside the first forward."""
    if device.type != "cuda":
        raise ValueError("--sync-bn needs CUDA: torch's SyncBatchNorm runs on GPUs only "
                         "(on CPU, run without it; pruning works either way)")
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)


def revert_sync_bn(module: torch.nn.Module) -> torch.nn.Module:
    """SyncBatchNorm -> BatchNorm2d in place (same parameters and statistics), for pruning, export
    and single-process use after a --sync-bn run."""
    for name, child in module.named_children():
        if isinstance(child, torch.nn.SyncBatchNorm):
            bn = torch.nn.BatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                      child.track_running_stats).to(child.weight.device)
            bn.load_state_dict(child.state_dict())
            setattr(module, name, bn)
        else:
            revert_sync_bn(child)
    return module


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
