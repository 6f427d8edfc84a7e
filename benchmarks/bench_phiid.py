"""Benchmark: all-pairs Gaussian PhiID vs one pair at a time.

    python benchmarks/bench_phiid.py [--units 1152] [--time 1000] [--repeats 5]

Target (issue 4): 1,152 units x 1,000 steps, MMI, all 16 atoms, all pairs in at most
0.5 s on a 2-core CPU with peak memory at most 2 GB. Everything is measured side by side
in this one run, on the same data:

- ``all_pairs`` MMI on every pair (best and median of ``--repeats`` runs after a warm-up);
- one pair at a time, two ways, on a random subset of pairs, extrapolated to all pairs:
  (a) the reference-tool method (``phyid``'s ``calc_PhiID``: local Gaussian entropies
  with SciPy per pair, re-implemented here in NumPy/SciPy), and (b) this library's own
  ``pair()`` called in a Python loop;
- ``all_pairs`` CCS (needs per-sample values) on a subset of units, extrapolated;
- CUDA timings when a GPU is visible.

"Pairs" are unordered pairs {i, j}: U (U - 1) / 2 (662,976 for 1,152 units); one PhiID
of (i, j) gives (j, i) by mirroring, so a one-pair tool needs one call per unordered pair.
Peak memory is the process's peak resident set size (``resource.getrusage``), which also
counts the Python interpreter and the torch libraries. The load average is printed because
on a shared machine other processes slow the threaded runs (a 1-thread run is shown too).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy.stats import multivariate_normal

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synergy_lens.phiid import ATOMS, all_pairs, pair

# ---------------------------------------------------------------- reference tool, one pair
_BELOW = {  # atoms at or below each node of the product lattice
    f"{p}t{f}": [
        f"{a}t{b}"
        for a in "rxys"
        for b in "rxys"
        if (a == p or a == "r" or p == "s") and (b == f or b == "r" or f == "s")
    ]
    for p in "rxys"
    for f in "rxys"
}
_ZETA = np.array([[float(a in _BELOW[k]) for a in ATOMS] for k in ATOMS])
_SRC = {"x": [0], "y": [1], "s": [0, 1]}
_TGT = {"x": [2], "y": [3], "s": [2, 3]}


def reference_one_pair(x: np.ndarray, y: np.ndarray, tau: int = 1) -> np.ndarray:
    """MMI atoms of one pair, the reference tool's way (local entropies per sample)."""
    v = np.stack([x[:-tau], y[:-tau], x[tau:], y[tau:]])
    v = v / v.std(axis=1, ddof=1, keepdims=True)
    mu, cov = v.mean(1), np.cov(v)
    h = {}
    for idx in [
        *_SRC.values(),
        *_TGT.values(),
        *(s + t for s in _SRC.values() for t in _TGT.values()),
    ]:
        dist = multivariate_normal(mu[idx], cov[np.ix_(idx, idx)])
        h[tuple(idx)] = -np.atleast_1d(dist.logpdf(v[idx].T))
    mi = {
        (p, f): h[tuple(_SRC[p])] + h[tuple(_TGT[f])] - h[tuple(_SRC[p] + _TGT[f])]
        for p in "xys"
        for f in "xys"
    }

    def mmi(*series: np.ndarray) -> np.ndarray:
        return series[int(np.argmin([s.mean() for s in series]))]

    k = {f"{p}t{f}": mi[(p, f)] for p in "xys" for f in "xys"}
    k["rtx"], k["rty"] = mmi(mi["x", "x"], mi["y", "x"]), mmi(mi["x", "y"], mi["y", "y"])
    k["rts"], k["xtr"] = mmi(mi["x", "s"], mi["y", "s"]), mmi(mi["x", "x"], mi["x", "y"])
    k["ytr"], k["str"] = mmi(mi["y", "x"], mi["y", "y"]), mmi(mi["s", "x"], mi["s", "y"])
    k["rtr"] = mmi(mi["x", "x"], mi["x", "y"], mi["y", "x"], mi["y", "y"])
    known = np.stack([k[a] for a in ATOMS])
    atoms: np.ndarray = np.linalg.solve(_ZETA, known).mean(1)
    return atoms


# ---------------------------------------------------------------------------- helpers
def make_data(n_units: int, n_steps: int, seed: int = 0) -> torch.Tensor:
    """float32 activity-like data: AR(1) units mixed by a few shared factors."""
    g = torch.Generator().manual_seed(seed)
    factors = torch.randn(8, n_steps, generator=g)
    load = torch.randn(n_units, 8, generator=g) * 0.5
    x = load @ factors + torch.randn(n_units, n_steps, generator=g)
    for t in range(1, n_steps):  # mild autocorrelation
        x[:, t] += 0.4 * x[:, t - 1]
    return (x * 3.0 + 10.0).float()


def timed(
    fn: Callable[[], object], repeats: int, sync: Callable[[], None] = lambda: None
) -> list[float]:
    out = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t0)
    return out


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--units", type=int, default=1152)
    parser.add_argument("--time", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--ref-pairs", type=int, default=40, help="pairs for the reference-tool loop"
    )
    parser.add_argument("--loop-pairs", type=int, default=300, help="pairs for the pair() loop")
    parser.add_argument("--ccs-units", type=int, default=48, help="units for the CCS all-pairs run")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = parser.parse_args()

    u, t = args.units, args.time
    n_pairs = u * (u - 1) // 2
    x = make_data(u, t)
    print(f"synergy-lens PhiID benchmark: {u} units x {t} steps, float32 input, tau=1")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; {n_pairs:,} unordered pairs"
    )
    load = os.getloadavg()
    print(
        f"machine: {os.cpu_count()} CPUs, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}"
    )
    rss0 = peak_rss_gb()
    best, fast = bench_mmi(x, args, n_pairs, rss0)
    bench_one_pair(x, args, n_pairs, best, fast)
    bench_ccs(x, args, n_pairs)
    bench_cuda(x, args, n_pairs, fast)


def bench_mmi(x: torch.Tensor, args: argparse.Namespace, n_pairs: int, rss0: float) -> tuple[float, torch.Tensor]:
    """1. all pairs, MMI, CPU: best time and the atoms (the reference for the other sections)."""
    all_pairs(x[:64])  # warm-up (allocator, lazy imports)
    times = timed(lambda: all_pairs(x), args.repeats)
    best, med = min(times), statistics.median(times)
    rss1 = peak_rss_gb()
    print("\n[all_pairs MMI, CPU]")
    print(
        f"  time: best {best:.3f} s, median {med:.3f} s over {args.repeats} runs  (target <= 0.5 s)"
    )
    print(
        f"  throughput: {n_pairs / best:,.0f} pairs/s (best), {n_pairs / med:,.0f} pairs/s (median)"
    )
    print(f"  peak RSS: {rss1:.2f} GB (before the runs {rss0:.2f} GB)  (target <= 2 GB)")
    threads = torch.get_num_threads()

    # CPU time of a 1-thread run: the work itself, less affected by other processes than
    # wall time (shared caches and memory bandwidth still inflate it on a busy machine).
    torch.set_num_threads(1)
    one, cpu = [], []
    for _ in range(max(2, args.repeats // 2)):
        c0, w0 = time.process_time(), time.perf_counter()
        all_pairs(x)
        one.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    torch.set_num_threads(threads)
    print(
        f"  1 thread: wall best {min(one):.3f} s; CPU time best {min(cpu):.3f} s "
        f"(single-core work; less sensitive to other processes than wall time)"
    )
    return best, all_pairs(x)


def bench_one_pair(x: torch.Tensor, args: argparse.Namespace, n_pairs: int, best: float, fast: torch.Tensor) -> None:
    """2. one pair at a time on the same data, extrapolated to all pairs."""
    u = x.shape[0]
    rng = np.random.default_rng(0)
    xn = x.double().numpy()
    ij = [
        tuple(rng.choice(u, 2, replace=False)) for _ in range(max(args.ref_pairs, args.loop_pairs))
    ]
    t0 = time.perf_counter()
    ref = [reference_one_pair(xn[i], xn[j]) for i, j in ij[: args.ref_pairs]]
    ref_per_pair = (time.perf_counter() - t0) / args.ref_pairs
    err = max(np.abs(fast[:, i, j].numpy() - r).max() for (i, j), r in zip(ij, ref))
    xt = x.double()
    t0 = time.perf_counter()
    for i, j in ij[: args.loop_pairs]:
        pair(xt[i], xt[j])
    loop_per_pair = (time.perf_counter() - t0) / args.loop_pairs
    print("\n[one pair at a time, same data; extrapolated to all pairs]")
    print(
        f"  reference-tool method (phyid-style, SciPy local entropies): {ref_per_pair * 1e3:.2f} ms/pair "
        f"on {args.ref_pairs} pairs -> {ref_per_pair * n_pairs:,.0f} s for all; "
        f"all_pairs is {ref_per_pair * n_pairs / best:,.0f}x faster"
    )
    print(f"    max |all_pairs - reference| over those pairs, 16 atoms: {err:.1e} nats")
    print(
        f"  synergy_lens.phiid.pair() in a Python loop: {loop_per_pair * 1e3:.3f} ms/pair on "
        f"{args.loop_pairs} pairs -> {loop_per_pair * n_pairs:,.0f} s for all; "
        f"all_pairs is {loop_per_pair * n_pairs / best:,.0f}x faster"
    )



def bench_ccs(x: torch.Tensor, args: argparse.Namespace, n_pairs: int) -> None:
    """3. CCS (per-sample values: O(pairs x time))."""
    t, threads = x.shape[1], torch.get_num_threads()
    uc = args.ccs_units
    ccs_pairs = uc * (uc - 1) // 2
    all_pairs(x[:8], redundancy="CCS")
    ccs_time = min(timed(lambda: all_pairs(x[:uc], redundancy="CCS"), 2))
    rate = ccs_pairs / ccs_time
    print("\n[all_pairs CCS, CPU]")
    print(
        f"  {uc} units ({ccs_pairs:,} pairs) x {t} steps: {ccs_time:.2f} s -> {rate:,.0f} pairs/s; "
        f"all {n_pairs:,} pairs would take ~{n_pairs / rate:,.0f} s"
    )
    torch.set_num_threads(1)
    c0 = time.process_time()
    all_pairs(x[:uc], redundancy="CCS")
    ccs_cpu = time.process_time() - c0
    torch.set_num_threads(threads)
    print(
        f"  1 thread, CPU time: {ccs_cpu:.2f} s -> {ccs_pairs / ccs_cpu:,.0f} pairs/s per core; "
        f"all pairs ~{n_pairs / (ccs_pairs / ccs_cpu):,.0f} core-seconds"
    )



def bench_cuda(x: torch.Tensor, args: argparse.Namespace, n_pairs: int, fast: torch.Tensor) -> None:
    """4. CUDA, when a GPU is visible."""
    uc = args.ccs_units
    if torch.cuda.is_available():
        xg = x.cuda()
        all_pairs(xg[:64])
        sync = torch.cuda.synchronize
        torch.cuda.reset_peak_memory_stats()
        gt = timed(lambda: all_pairs(xg), args.repeats, sync)
        mem = torch.cuda.max_memory_allocated() / 1024**3
        gbest = min(gt)
        print(f"\n[all_pairs MMI, CUDA: {torch.cuda.get_device_name()}]")
        print(
            f"  time: best {gbest * 1e3:.1f} ms, median {statistics.median(gt) * 1e3:.1f} ms; "
            f"{n_pairs / gbest:,.0f} pairs/s; peak GPU memory {mem:.2f} GB"
        )
        diff = (all_pairs(xg).cpu() - fast).abs().nan_to_num().max().item()
        print(f"  max |GPU - CPU| = {diff:.1e}")
        all_pairs(xg[:8], redundancy="CCS")
        gct = min(timed(lambda: all_pairs(xg[: uc * 4], redundancy="CCS"), 2, sync))
        gcp = (uc * 4) * (uc * 4 - 1) // 2
        print(f"  CCS: {uc * 4} units ({gcp:,} pairs): {gct:.2f} s -> {gcp / gct:,.0f} pairs/s")
    else:
        print("\n[CUDA] no GPU visible: skipped")


if __name__ == "__main__":
    main()
