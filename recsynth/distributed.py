"""Multi-process training through torchrun: PyTorch's own launcher, rendezvous and DDP.

`torchrun --nproc-per-node=N -m recsynth fit …` (or `--nnodes/--rdzv-endpoint` across
machines) starts N copies of the same command with RANK/WORLD_SIZE in the environment;
`… -m recsynth sample …` likewise, each rank writing its share of the part files.
Every rank reads the log and computes the closed form (deterministic for the seed, so all
ranks agree without talking); training shards real users by rank and averages gradients
with DistributedDataParallel; only rank 0 reports progress and writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist

from recsynth.errors import UsageError

T = TypeVar("T")
TIMEOUT = timedelta(minutes=10)  # a rank that died must not leave the others waiting forever


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1

    def seed(self, seed: int) -> int:
        """Per-rank seed: rank 0 keeps the user's seed, so one process is the plain run."""
        return seed + 7919 * self.rank

    def any(self, flag: bool) -> bool:
        """True on every rank when it is True on one (stop decisions taken together)."""
        if not self.active:
            return flag
        t = torch.tensor([1 if flag else 0])
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def gather(self, obj: T) -> list[T]:
        """Every rank's `obj`, in rank order, on every rank (e.g. the RNG states a resumable
        checkpoint needs, or which part files each rank wrote)."""
        if not self.active:
            return [obj]
        out: list[T] = [obj] * self.size
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: T | None) -> T:
        """Rank 0's `obj` on every rank."""
        if not self.active:
            assert obj is not None
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


SINGLE = World()


def launched_world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise UsageError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number") from None


def start(device: str) -> World:
    """Join the process group torchrun set up (gloo on CPU); a plain run is a world of one."""
    size = launched_world_size()
    if size <= 1:
        return SINGLE
    if device == "cuda":  # one GPU per process on each machine
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        backend = "nccl" if device == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=TIMEOUT)
    return World(dist.get_rank(), dist.get_world_size())


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
