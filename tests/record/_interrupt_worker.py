"""A recording to be interrupted: run as ``python _interrupt_worker.py CHECKPOINT``.

Four prompts in batches of one on a tiny model. The signal "slow_l2" is l2, but once the
checkpoint file exists (the first batch is saved) each call sleeps, so the parent test has
ample time to interrupt the process in the middle of the next batches even on a busy
machine. A separate process started from scratch, as a user's job would be (a forked child
of the test process can deadlock in torch's thread pool).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import synergy_lens as sl
from synergy_lens.models import tiny_model
from synergy_lens.record.signals import l2

PROMPTS = ["hello there", "hi", "a longer prompt", "xyz"]
SETTINGS = {"max_new_tokens": 8, "batch_size": 1, "signal": "slow_l2", "progress": False}
CHECKPOINT: Path | None = None


def slow_l2(z, *, adapter, layer):
    """l2, slowed down after the first saved batch."""
    if CHECKPOINT is not None and CHECKPOINT.exists():
        time.sleep(5.0)
    return l2(z, adapter=adapter, layer=layer)


if __name__ == "__main__":
    import signal

    import torch

    # Python turns SIGINT into KeyboardInterrupt only if SIGINT was not ignored when it
    # started, and a job started in the background by a non-interactive shell (as CI
    # scripts do) inherits an ignored SIGINT. Install Python's handler, as in a terminal.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    torch.set_num_threads(1)  # no thread contention on a busy machine
    CHECKPOINT = Path(sys.argv[1])
    sl.register_signal("slow_l2", slow_l2)
    model = tiny_model("bridge", seed=0)
    sl.record_head_activity(model, PROMPTS, checkpoint=CHECKPOINT, **SETTINGS)
