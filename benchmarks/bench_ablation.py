"""Benchmark: a batched ablation curve against the one-pass-per-condition loop, same run.

Both compute the same cumulative ablation curve of paper (B) (zero ablation, synergy-first
and redundancy-first orders from a per-head score, random orders) on SmolLM2-135M-Instruct:

- loop: one forward pass per (condition, prompt), i.e. ``with ablate_heads(model, heads):``
  around a teacher-forced pass, as one would write it by hand;
- batched: the conditions of a prompt stacked along the batch dimension (the same
  sequence repeated), one head mask per batch element, ``--batch-size`` per pass.

Everything else is shared (one clean pass per prompt, identical conditions computed once,
only generated positions unembedded), so the ratio measures the batching alone. The two
are timed alternately (loop, batched, loop, batched, ...) and the medians compared, which
keeps a busy shared machine from favouring either. The curves must agree (max abs
difference printed).

The run is repeated for each ``--dtypes`` entry (default float32 and bfloat16), each
dtype's loop and batched timings side by side. On a CPU the forward pass is compute-bound,
so batching gains only what larger matrix products give, and that depends on the dtype. On
the 2-core Xeon of our CI machine (AMX, AVX-512 BF16), a bare transformers forward of 68
tokens of SmolLM2 costs 124 ms per sequence alone and 64 ms per sequence in a batch of 32
in float32: a 1.9x ceiling for any batching scheme. In bfloat16 it is 77 ms and 20 ms
(3.8x), because the AMX tiles need large matrices. Measured with this script on a quiet
machine (load 1-2), 2 threads: 1.7-2.1x in float32 and 3.6x in bfloat16. On an
accelerator, one pass of 32 sequences costs about as much as one of a single sequence.

    python benchmarks/bench_ablation.py [--prompts 4] [--tokens 24] [--step 30] [--threads 1]
        [--dtypes float32,bfloat16]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=24, help="generated tokens per prompt")
    ap.add_argument("--step", type=int, default=30, help="heads added per curve step")
    ap.add_argument("--random", type=int, default=2, help="random orders")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=1, help="timed (loop, batched) pairs")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--dtypes", default="float32,bfloat16", help="comma-separated model dtypes")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    for dtype in [d.strip() for d in args.dtypes.split(",") if d.strip()]:
        bench_one(args, dtype)
        print()


def bench_one(args: argparse.Namespace, dtype: str) -> None:
    import synergy_lens as sl
    from synergy_lens.intervene import ablation_curve
    from synergy_lens.models import adapt
    from synergy_lens.record import default_prompts

    model = sl.load_model(backend=args.backend, dtype=dtype)
    adapter = adapt(model)
    texts = [p.text for p in default_prompts()][:: max(1, 60 // args.prompts)][: args.prompts]
    prompt_ids = [adapter.tokenize(adapter.apply_chat_template(t)) for t in texts]
    gen = adapter.generate(prompt_ids, max_new_tokens=args.tokens, stop_at_eos=False)
    activity = list(zip(prompt_ids, gen))
    # A per-head score for the orders: any fixed [layer, head] tensor will do for timing.
    scores = torch.randn(adapter.n_layers, adapter.n_heads, generator=torch.Generator().manual_seed(0))

    def run(batched: bool):
        t0 = time.perf_counter()
        curve = ablation_curve(
            model, activity, scores, step=args.step, n_random=args.random, batched=batched,
            batch_size=args.batch_size, progress=False,
        )
        return time.perf_counter() - t0, curve

    run(True)  # warm-up: allocator, lazy imports, oneDNN kernel selection
    loop_t, batch_t = [], []
    for _ in range(args.repeats):
        t, loop_curve = run(False)
        loop_t.append(t)
        t, batch_curve = run(True)
        batch_t.append(t)
    diff = max(
        float((loop_curve.curves[k] - batch_curve.curves[k]).abs().max()) for k in loop_curve.curves
    )
    diff = max(diff, float((loop_curve.random - batch_curve.random).abs().max()))
    n_cond = (2 + args.random) * len(loop_curve.steps)
    lt, bt = statistics.median(loop_t), statistics.median(batch_t)
    load = os.getloadavg()[0]
    print(
        f"[{dtype}] model {adapter.name} ({adapter.backend}), {len(activity)} prompts x "
        f"{args.tokens} generated tokens (sequences of {min(map(len, prompt_ids)) + args.tokens}-"
        f"{max(map(len, prompt_ids)) + args.tokens} tokens), {n_cond} conditions "
        f"({len(loop_curve.steps)} steps x {2 + args.random} orders), torch threads "
        f"{torch.get_num_threads()}, load average {load:.1f}"
    )
    print(f"  loop    (one pass per condition and prompt): {lt:8.2f} s  (runs: {[round(x, 2) for x in loop_t]})")
    print(f"  batched (up to {args.batch_size} conditions per pass): {bt:8.2f} s  (runs: {[round(x, 2) for x in batch_t]})")
    ratio = lt / bt
    verdict = "met" if ratio >= 4 else "not met"
    print(f"  speed-up batched vs loop: {ratio:.2f}x (target >= 4x: {verdict})   "
          f"max |curve difference|: {diff:.2e} nats")


if __name__ == "__main__":
    main()
