"""Runs over several processes with torch.distributed: prompts sharded, results gathered.

What and why
------------
Recording dominates a large run, and prompts are independent, so the natural split is by
prompt. Every function here works inside an initialised ``torch.distributed`` process group
(``torchrun --nproc-per-node N ...``, SLURM with torchrun; gloo on CPUs, NCCL on GPUs) and
falls back to plain single-process calls when there is none, so the same script runs
either way:

- :func:`shard` gives each rank its prompts (round robin, so categories and lengths mix);
- :func:`record_sharded` records a rank's prompts on its own device, with a checkpoint per
  rank (``NAME.rank1of4.pt``): a rank that dies loses only its unfinished batch, and the
  relaunched job resumes every rank where it stopped; rank 0 receives the whole recording
  in the original prompt order;
- :func:`decompose_sharded` runs PhiID of each rank's prompts on that rank and merges the
  per-prompt mean exactly as :func:`~synergy_lens.phiid.decompose` forms it (the sum over
  prompts of each pair's defined atoms divided by their count); only rank 0 gets the result.

Rank 0 then finishes the analysis as usual. The merged result equals the single-process one
to float rounding of the summation order (atoms within 1e-12, tested with 2 gloo ranks).

The expensive tests after that split the same way when called with ``distributed=True`` on
every rank (same arguments everywhere; every rank returns the whole result):

- :func:`~synergy_lens.analysis.surrogate_test` (and ``headline``/``robustness``, which call
  it) spreads its surrogate replicates over the ranks (the batches, in rounds) and
  adds the gathered per-batch sums in the single process's order, so the result is the
  single-process one bit for bit at the same threads per process (every replicate is
  seeded by its own index; CPU kernels may round differently with another thread count);
- :func:`~synergy_lens.intervene.ablation_curve` (and ``behaviour_divergence``) gives each rank
  a contiguous block of the forward passes and sums the divergence table over the ranks
  (each cell is computed by exactly one rank, so the sum is that cell).

Objects travel with ``gather_object`` (pickled by torch.distributed between the processes of
one job, as for any collective); results are moved to the CPU first.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from synergy_lens._collective import (
    all_gather,
    broadcast_from_main,
    gather_to_main,
    is_main,
    my_share,
    shard,
    sum_over_ranks,
    world,
)

__all__ = [
    "all_gather",
    "broadcast_from_main",
    "decompose_sharded",
    "gather_to_main",
    "init_from_env",
    "is_main",
    "my_share",
    "rank_checkpoint",
    "record_sharded",
    "shard",
    "sum_over_ranks",
    "world",
]





















def init_from_env(device: str | None = None) -> str | None:
    """Join the process group that torchrun (or SLURM + torchrun) describes, if any.

    Does nothing outside torchrun. Inside it, initialises the default group once (NCCL when
    ``device`` is CUDA, else gloo) and returns this rank's device: ``"cuda"`` becomes
    ``"cuda:LOCAL_RANK"``, so each process of a node drives its own GPU.
    """
    if not launched_by_torchrun():
        return device
    dist = torch.distributed
    cuda = device is not None and device.startswith("cuda")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    if cuda and ":" not in str(device):
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    return device


def rank_checkpoint(path: str | Path | None) -> Path | None:
    """This rank's own checkpoint file: ``run.pt`` -> ``run.rank1of4.pt`` (same in 1 process)."""
    if path is None:
        return None
    rank, size = world()
    path = Path(path).expanduser()
    if size == 1:
        return path
    return path.with_name(f"{path.stem}.rank{rank}of{size}{path.suffix}")


def record_sharded(
    model: Any,
    prompts: Sequence[Any] | Iterable[Any],
    *,
    checkpoint: str | Path | None = None,
    **record_kwargs: Any,
) -> Any:
    """:func:`~synergy_lens.record_activity` (any units) with the prompts sharded over the ranks.

    Each rank records ``shard(len(prompts))`` with its own checkpoint
    (:func:`rank_checkpoint`). Returns the whole ``HeadActivity`` on rank 0, in the order
    of ``prompts``, and ``None`` on the other ranks. Without a process group this is
    exactly ``record_activity(model, prompts, checkpoint=checkpoint, ...)``.

    Greedy decoding gives the same tokens as one process; the recorded values are the same
    bit for bit when the batches are (``batch_size=1``, same threads) and otherwise agree to
    float32 rounding of the batched matrix products. With ``do_sample=True`` each rank draws
    from its own seeded generators, so the samples differ from a single-process run.
    """
    from synergy_lens.record import record_activity
    from synergy_lens.record.prompts import as_prompts

    items = as_prompts(prompts)
    rank, size = world()
    if size == 1:
        return record_activity(model, items, checkpoint=checkpoint, **record_kwargs)
    mine = shard(len(items))
    if not mine:
        raise ValueError(
            f"{len(items)} prompts for {size} processes: rank {rank} would get none; "
            "use at most as many processes as prompts"
        )
    part = record_activity(
        model, [items[i] for i in mine], checkpoint=rank_checkpoint(checkpoint), **record_kwargs
    )
    parts = gather_to_main(part.to_dict())
    if parts is None:
        return None
    return _interleave(parts, len(items))


def _interleave(parts: list[dict[str, Any]], n: int) -> Any:
    """Rank-ordered round-robin shards back into one recording in the original order."""
    import json

    from synergy_lens.record.activity import HeadActivity

    size = len(parts)
    order = [i for r in range(size) for i in range(r, n, size)]  # position -> prompt index
    inverse = [0] * n
    for pos, i in enumerate(order):
        inverse[i] = pos
    metas = [json.loads(p["meta"]) for p in parts]
    values = torch.cat([p["values"] for p in parts])[inverse]
    lengths = torch.cat([p["lengths"] for p in parts])[inverse]
    meta: dict[str, Any] = dict(metas[0])
    for key in ("prompts", "prompt_ids", "generated_ids", "completions", "prompt_texts"):
        flat = [x for m in metas for x in m[key]]
        meta[key] = [flat[j] for j in inverse]
    if metas[0]["categories"] is not None:
        flat = [x for m in metas for x in m["categories"]]
        meta["categories"] = [flat[j] for j in inverse]
    return HeadActivity(values=values, lengths=lengths, **meta)


def decompose_sharded(activity: Any, **decompose_kwargs: Any) -> Any:
    """:func:`~synergy_lens.phiid.decompose` of every rank's prompts, merged on rank 0.

    ``activity`` is the whole recording on rank 0 (others may pass ``None``; rank 0 scatters
    each rank's prompts to it), so it composes with :func:`record_sharded`. Each rank
    decomposes its prompts; rank 0 merges the prompt mean exactly as ``decompose`` does and
    concatenates the per-prompt sts/rtr in prompt order. Supported for the dense,
    ``"mean_over_prompts"``, un-jittered decomposition; anything else (``aggregate="pooled"``,
    ``jitter``, streaming) is computed whole on rank 0. Returns the result on rank 0 and
    ``None`` elsewhere.
    """
    from synergy_lens.phiid import decompose

    rank, size = world()
    whole = (
        decompose_kwargs.get("aggregate", "mean_over_prompts") != "mean_over_prompts"
        or decompose_kwargs.get("jitter") is not None
        or decompose_kwargs.get("stream")
    )
    if size == 1 or whole:
        if rank != 0:
            return None
        return decompose(activity, **decompose_kwargs)
    n = torch.tensor([activity.n_prompts if rank == 0 else 0])
    torch.distributed.broadcast(n, src=0)
    if int(n) < size:
        raise ValueError(f"{int(n)} prompts for {size} processes: use at most as many processes")
    pieces: list[Any] = [activity.select(shard(int(n), r, size)) for r in range(size)] if rank == 0 else []
    mine: list[Any] = [None]
    torch.distributed.scatter_object_list(mine, pieces if rank == 0 else None, src=0)
    kwargs = {k: v for k, v in decompose_kwargs.items() if k != "stream"}
    result = decompose(mine[0], stream=False, **kwargs)
    parts = gather_to_main(_summable(result))
    if parts is None:
        return None
    return _merge(result, parts, int(n))


def _summable(result: Any) -> dict[str, Any]:
    """What rank 0 needs to merge: per-pair sums and counts of defined prompts."""
    count = (~torch.isnan(result.per_prompt_sts)).sum(0).to(torch.float64)
    total = torch.where(count > 0, result.atoms.nan_to_num(0.0) * count, 0.0)
    return {
        "total": total.cpu(),
        "count": count.cpu(),
        "per_sts": result.per_prompt_sts.cpu(),
        "per_rtr": result.per_prompt_rtr.cpu(),
        "lengths": list(result.meta["lengths"]),
    }


def _merge(template: Any, parts: list[dict[str, Any]], n: int) -> Any:
    import dataclasses
    import math

    size = len(parts)
    order = [i for r in range(size) for i in range(r, n, size)]
    inverse = [0] * n
    for pos, i in enumerate(order):
        inverse[i] = pos
    total = torch.stack([p["total"] for p in parts]).sum(0)
    count = torch.stack([p["count"] for p in parts]).sum(0)
    atoms = total / count
    atoms[:, count == 0] = math.nan
    lengths = [x for p in parts for x in p["lengths"]]
    meta = dict(template.meta, n_prompts=n, lengths=[lengths[j] for j in inverse])
    meta["distributed"] = {"world_size": size, "backend": torch.distributed.get_backend()}
    return dataclasses.replace(
        template,
        atoms=atoms,
        per_prompt_sts=torch.cat([p["per_sts"] for p in parts])[inverse],
        per_prompt_rtr=torch.cat([p["per_rtr"] for p in parts])[inverse],
        meta=meta,
    )


def launched_by_torchrun() -> bool:
    """True when the environment of a torchrun/SLURM-torchrun worker is present."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))
