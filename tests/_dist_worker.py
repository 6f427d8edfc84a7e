"""A torchrun worker for tests/test_distributed.py: sharded recording and PhiID, tiny model.

Usage: python -m torch.distributed.run --standalone --nproc-per-node N tests/_dist_worker.py
OUT CHECKPOINT. With SYNERGY_LENS_TEST_DIE_RANK=r, rank r exits hard right after its first
checkpoint save (a killed worker), once: a marker file beside OUT records that it happened.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

import synergy_lens as sl
from synergy_lens import distributed as D
from synergy_lens.record import checkpoint as C

PROMPTS = [
    "the cat sat on the mat",
    "a b c d",
    "one two three",
    "hello there",
    "dogs bark at night",
    "x y",
]
SETTINGS = {"max_new_tokens": 12, "batch_size": 1, "stop_at_eos": False, "progress": False}


def tiny():
    return sl.tiny_model("bridge", n_layers=2, n_heads=4, n_kv_heads=2, d_head=8, seed=0)


def interventions(activity) -> dict:
    """The collective tests on every rank: a resample-mode ablation curve, a phase-surrogate test."""
    curve = sl.ablation_curve(tiny(), activity, torch.arange(8.0).view(2, 4), step=3, n_random=2, mode="resample",
                              reference=[" ".join([p] * 6) for p in PROMPTS[:3]], batch_size=4, progress=False, distributed=True)
    test = sl.surrogate_test(activity, n_surrogates=5, method="phase", batch=2, distributed=True)
    return {"curve": curve.random_per_prompt, "given": curve.per_prompt["synergy-first"],
            "processes": curve.meta["processes"], "null": test.null, "p_pair": test.p_pair}


def main(out: Path, ckpt: Path) -> None:
    dist.init_process_group("gloo")
    rank, _ = D.world()
    if os.environ.get("SYNERGY_LENS_TEST_TASK") == "interventions":
        activity = D.broadcast_from_main(
            sl.record_head_activity(tiny(), PROMPTS, **SETTINGS) if rank == 0 else None)
        found = interventions(activity)
        everywhere = D.all_gather(found)  # every rank holds the whole result
        if D.is_main():
            assert all(torch.equal(f["null"], found["null"]) for f in everywhere)
            torch.save(found, out)
        dist.barrier()
        dist.destroy_process_group()
        return
    die = os.environ.get("SYNERGY_LENS_TEST_DIE_RANK")
    marker = out.with_suffix(".died")
    if die is not None and int(die) == rank and not marker.exists():
        save = C.Checkpoint.save

        def save_then_die(self, state):
            save(self, state)
            marker.write_text(str(state.n_done))
            os._exit(17)

        C.Checkpoint.save = save_then_die  # type: ignore[method-assign]
    activity = D.record_sharded(tiny(), PROMPTS, checkpoint=ckpt, **SETTINGS)
    result = D.decompose_sharded(activity, progress=False)
    if D.is_main():
        torch.save(
            {
                "activity": activity.to_dict(),
                "atoms": result.atoms,
                "per_sts": result.per_prompt_sts,
                "per_rtr": result.per_prompt_rtr,
                "meta": result.meta,
            },
            out,
        )
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(Path(sys.argv[1]), Path(sys.argv[2]))
