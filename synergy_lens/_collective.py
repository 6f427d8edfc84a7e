"""Collectives every stage may use (a leaf module: it imports only torch).

The functions work inside an initialised ``torch.distributed`` process group and fall back to
single-process behaviour without one, so the same code runs under torchrun or alone. Objects
travel with the ``*_object`` collectives (pickled between the processes of one job); tensors
summed with :func:`sum_over_ranks` go through the GPU under NCCL. ``synergy_lens.distributed``
builds the sharded recording and PhiID on these.
"""

from __future__ import annotations

from typing import Any, TypeVar

import torch

__all__ = [
    "all_gather",
    "barrier",
    "broadcast_from_main",
    "check_collective",
    "gather_to_main",
    "is_main",
    "leave",
    "my_share",
    "shard",
    "sum_over_ranks",
    "world",
]

T = TypeVar("T")


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the current process group, ``(0, 1)`` without one."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """True on rank 0 (and in a single process): the rank that finishes and writes."""
    return world()[0] == 0


def shard(n: int, rank: int | None = None, size: int | None = None) -> list[int]:
    """Indices ``0..n-1`` of one rank, round robin: ``rank, rank + size, ...``."""
    r, s = world()
    rank = r if rank is None else rank
    size = s if size is None else size
    if not 0 <= rank < size:
        raise ValueError(f"rank {rank} is outside a world of {size} processes")
    return list(range(rank, n, size))


def gather_to_main(obj: T) -> list[T] | None:
    """Every rank's ``obj`` as a list on rank 0 (rank order); ``None`` on the others."""
    rank, size = world()
    if size == 1:
        return [obj]
    out: list[Any] | None = [None] * size if rank == 0 else None
    torch.distributed.gather_object(obj, out, dst=0)
    return out


def all_gather(obj: T) -> list[T]:
    """Every rank's ``obj`` on every rank, in rank order (``[obj]`` in a single process)."""
    size = world()[1]
    if size == 1:
        return [obj]
    out: list[Any] = [None] * size
    torch.distributed.all_gather_object(out, obj)
    return out


def my_share(n: int, *, blocks: bool = False) -> list[int]:
    """The items ``0..n-1`` this rank computes: round robin, or contiguous ``blocks`` (near
    equal; items next to each other share work, such as one prompt's clean pass)."""
    rank, size = world()
    if not blocks:
        return shard(n, rank, size)
    bounds = [round(r * n / size) for r in range(size + 1)]
    return list(range(bounds[rank], bounds[rank + 1]))


def sum_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """``t`` summed over the ranks (all_reduce), returned on ``t``'s device on every rank.

    NCCL reduces CUDA tensors only, so the sum travels through this rank's GPU there."""
    if world()[1] == 1:
        return t
    dist = torch.distributed
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else t.device
    work = t.to(device, copy=True)
    dist.all_reduce(work, op=dist.ReduceOp.SUM)
    return work.to(t.device)


def check_collective(distributed: bool) -> bool:
    """Whether a ``distributed=True`` call really splits: a process group with >1 rank."""
    return bool(distributed) and world()[1] > 1


def broadcast_from_main(obj: T) -> T:
    """Rank 0's ``obj`` on every rank (unchanged in a single process)."""
    rank, size = world()
    if size == 1:
        return obj
    box: list[Any] = [obj if rank == 0 else None]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    """Wait until every rank gets here (nothing without a process group)."""
    if world()[1] > 1:
        torch.distributed.barrier()


def leave(*, wait: bool = True) -> None:
    """End this process's part in the process group: with ``wait``, first wait for every rank
    (so that no rank exits while another is still inside a collective), then tear the group
    down. For the command line, after its last collective step; a no-op without a group."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return
    if wait:
        dist.barrier()
    dist.destroy_process_group()
