"""A recording to be interrupted: run as ``python _interrupt_worker.py CHECKPOINT``.

Four prompts in batches of one on a tiny model, with a signal ("slow_l2", l2 that sleeps)
slow enough that the parent test can signal the process between batches. A separate
process started from scratch, as a user's job would be (a forked child of the test process
can deadlock in torch's thread pool).
"""

from __future__ import annotations

import sys
import time

import synergy_lens as sl
from synergy_lens.models import tiny_model
from synergy_lens.record.signals import l2

PROMPTS = ["hello there", "hi", "a longer prompt", "xyz"]
SETTINGS = {"max_new_tokens": 8, "batch_size": 1, "signal": "slow_l2", "progress": False}


def slow_l2(z, *, adapter, layer):
    """l2, slowed down so that a test can interrupt the recording between batches."""
    time.sleep(0.3)
    return l2(z, adapter=adapter, layer=layer)


if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)  # start-up and run on a busy machine without thread contention
    sl.register_signal("slow_l2", slow_l2)
    sl.record_head_activity(
        tiny_model("bridge", seed=0), PROMPTS, checkpoint=sys.argv[1], **SETTINGS
    )
