"""torchrun support: process-group set-up, deterministic sharding, small collectives.

Without torchrun (no WORLD_SIZE in the environment, or 1) everything here is a no-op
for one rank. With it: Gloo on CPU, NCCL when the ranks use CUDA. Chunk k belongs to
rank k mod world_size, so the split depends only on the chunk count and the world
size, never on timing, and a resumed job may use a different number of ranks.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, List

import torch


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialised: bool = False

    def barrier(self) -> None:
        if self.initialised:
            torch.distributed.barrier()

    def broadcast(self, obj: Any) -> Any:
        """rank 0's `obj` on every rank."""
        if not self.initialised:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def close(self) -> None:
        if self.initialised:
            torch.distributed.destroy_process_group()
            self.initialised = False


def setup(use_cuda: bool) -> Dist:
    """Join the process group torchrun describes in the environment (if any)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(local)
    # Long timeout: ranks meet only at the start and at the end, and may finish their
    # shares far apart in time.
    torch.distributed.init_process_group(backend=backend, timeout=datetime.timedelta(hours=12))
    return Dist(rank=rank, world_size=world, local_rank=local, initialised=True)


def shard(n_chunks: int, rank: int, world_size: int) -> List[int]:
    """The chunks rank `rank` owns: k with k mod world_size == rank."""
    return list(range(rank, n_chunks, world_size))
