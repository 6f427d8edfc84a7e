"""Benchmark: the streaming engine (pair_summaries) against the dense kernel (all_pairs).

    python benchmarks/bench_stream.py [--units 1152] [--big-units 16384] [--time 1000]

Targets (issue 15, part 3), measured side by side in one run on the same kind of data
(``bench_phiid.make_data``: AR(1) units mixed by shared factors, float32, tau = 1, MMI):

1. 1,152 units x 1,000 steps: dense ``all_pairs`` then per-unit means and top-k, vs
   ``pair_summaries``; per-unit means and top-k pairs equal within 1e-12; unordered
   pairs per second of both.
2. 16,384 units x 1,000 steps (134 M pairs), one series: per-unit summaries and the top
   1,000 pairs in at most 90 s with peak memory at most 2 GB, and a pair rate at least 80%
   of the dense kernel's rate at 1,152 units. Run in a fresh subprocess, so its peak
   resident set size (``resource.getrusage``) is its own; the dense kernel would need
   34 GB for ``[16, unit, unit]`` here.

Both paths run with torch's default threads; a 1-thread CPU-time rate is printed as well
(less sensitive to other processes). The load average is printed before each timing
because other processes on a shared machine slow the threaded runs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_phiid import make_data

from synergy_lens.phiid import ATOMS, all_pairs, pair, pair_summaries
from tests.phiid.reference import summaries_of_atoms


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} / {fifteen:.1f} ({os.cpu_count()} CPUs)"


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux


def best_of(fn, repeats: int) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def one_thread(fn) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """``(wall, process CPU time)`` of one call with one torch thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        return time.perf_counter() - w0, time.process_time() - c0
    finally:
        torch.set_num_threads(threads)


def big_case(units: int, steps: int, top_k: int, device: str, threads: int) -> None:
    """The large run, alone in this process; prints one JSON line."""
    if threads:
        torch.set_num_threads(threads)
    x = make_data(units, steps).to(device)
    rss_data = peak_rss_gb()
    t0 = time.perf_counter()
    c0 = time.process_time()
    s = pair_summaries(x, top_k=top_k)
    if device == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    # spot check, not timed: three units' rows through pair(), one batch of pairs each
    check = 0.0
    for i in (0, units // 2, units - 1):
        others = torch.cat([x[:i], x[i + 1 :]])
        row = pair(x[i].expand_as(others), others)  # unit i as source x, every j as target
        mean = torch.stack([row[a] for a in ATOMS]).mean(-1)
        check = max(check, (mean - s.unit_mean[:, i]).abs().max().item())
    result = {
        "wall": wall,
        "cpu": cpu,
        "rss": peak_rss_gb(),
        "rss_data": rss_data,
        "gpu_peak": torch.cuda.max_memory_allocated() / 1024**3 if device == "cuda" else None,
        "top_sts": s.top_pairs("sts")[0].shape[0],
        "nan_units": int(s.unit_mean[0].isnan().sum()),
        "row_check": check,
        "threads": torch.get_num_threads(),
        "load_after": os.getloadavg()[0],
    }
    print(json.dumps(result))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--units", type=int, default=1152)
    ap.add_argument("--big-units", type=int, default=16384, help="0 skips the large run")
    ap.add_argument("--time", type=int, default=1000)
    ap.add_argument("--top-k", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--big-threads",
        type=int,
        nargs="+",
        default=[0],
        help="torch threads for the large run(s), 0 = default; 1 gives an honest CPU time",
    )
    ap.add_argument("--big-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.big_only:
        big_case(args.big_units, args.time, args.top_k, args.device, args.big_threads[0])
        return

    u, t, k = args.units, args.time, args.top_k
    n_pairs = u * (u - 1) // 2
    print(f"synergy-lens streaming benchmark: tau=1, MMI, float32 input, top_k={k}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    x = make_data(u, t)
    all_pairs(x[:64])
    pair_summaries(x[:64])

    rates = small_case(x, args, n_pairs)
    del x
    if args.big_units:
        big_cases(args, n_pairs, rates)
    cuda_case(args)


def small_case(x: torch.Tensor, args: argparse.Namespace, n_pairs: int) -> dict[str, float]:
    """[1] dense vs stream at ``--units``: equality and rates; returns the dense rates."""
    u, t, k = args.units, args.time, args.top_k
    print(f"\n[1] {u} units x {t} steps ({n_pairs:,} pairs): dense vs stream; {load()}")
    dense_t, dense = best_of(lambda: summaries_of_atoms(all_pairs(x).numpy(), k), args.repeats)
    kernel_t, _ = best_of(lambda: all_pairs(x), args.repeats)
    stream_t, s = best_of(lambda: pair_summaries(x, top_k=k), args.repeats)
    assert isinstance(dense, dict)
    mean_err = (s.unit_mean - torch.from_numpy(dense["mean"])).abs().nan_to_num().max().item()  # type: ignore[attr-defined]
    lines = [f"  max |stream - dense| per-unit means (16 atoms): {mean_err:.1e} nats"]
    for name in ("sts", "rtr"):
        pairs, atoms = s.top_pairs(name)  # type: ignore[attr-defined]
        same = torch.equal(pairs, torch.from_numpy(dense[f"{name}_pairs"]))
        err = (atoms - torch.from_numpy(dense[f"{name}_atoms"])).abs().max().item()
        lines.append(f"  top {k} by {name}: same pairs {same}, max |atom diff| {err:.1e}")
    dense_rate, kernel_rate, stream_rate = n_pairs / dense_t, n_pairs / kernel_t, n_pairs / stream_t
    print(f"  {'path':<40}{'time (s)':>10}{'pairs/s':>14}")
    print(f"  {'dense all_pairs (kernel only)':<40}{kernel_t:>10.3f}{kernel_rate:>14,.0f}")
    print(f"  {'dense all_pairs + NumPy means + top-k':<40}{dense_t:>10.3f}{dense_rate:>14,.0f}")
    print(f"  {'stream pair_summaries':<40}{stream_t:>10.3f}{stream_rate:>14,.0f}")
    print("\n".join(lines))
    print(f"  stream rate / dense kernel rate: {stream_rate / kernel_rate:.2f} (wall, best of {args.repeats})")
    dense_wall1, dense_cpu = one_thread(lambda: all_pairs(x))
    _, stream_cpu = one_thread(lambda: pair_summaries(x, top_k=k))
    print(
        f"  1 thread CPU time: dense kernel {dense_cpu:.3f} s ({n_pairs / dense_cpu:,.0f} pairs/s), "
        f"stream {stream_cpu:.3f} s ({n_pairs / stream_cpu:,.0f} pairs/s); "
        f"ratio {dense_cpu / stream_cpu:.2f}"
    )
    return {"kernel": kernel_rate, "dense_wall1": dense_wall1, "dense_cpu": dense_cpu}


def big_cases(args: argparse.Namespace, n_pairs: int, rates: dict[str, float]) -> None:
    """[2] ``--big-units`` in a fresh process per thread count (and on the GPU): time, memory."""
    ub, t, k, u = args.big_units, args.time, args.top_k, args.units
    kernel_rate, dense_wall1, dense_cpu = rates["kernel"], rates["dense_wall1"], rates["dense_cpu"]
    big_pairs = ub * (ub - 1) // 2
    print(f"\n[2] {ub} units x {t} steps ({big_pairs:,} pairs), one series; {load()}")
    runs = [("cpu", n) for n in args.big_threads]
    runs += [("cuda", 0)] if torch.cuda.is_available() else []
    for device, threads in runs:
        cmd = [sys.executable, __file__, "--big-only", "--big-units", str(ub), "--time", str(t)]
        cmd += ["--top-k", str(k), "--device", device, "--big-threads", str(threads)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rate = big_pairs / r["wall"]
        tag = f"{device}, {r['threads']} thread(s)"
        one = r["threads"] == 1 and device == "cpu"
        dense_rate = n_pairs / dense_wall1 if one else kernel_rate
        print(
            f"  [{tag}] time {r['wall']:.1f} s (target <= 90 s); CPU time {r['cpu']:.1f} s; "
            f"load average after {r['load_after']:.1f}"
        )
        print(
            f"  [{tag}] peak RSS {r['rss']:.2f} GB (target <= 2 GB; input data alone "
            f"{r['rss_data']:.2f} GB)"
            + (f"; peak GPU memory {r['gpu_peak']:.2f} GB" if r["gpu_peak"] is not None else "")
        )
        print(
            f"  [{tag}] {rate:,.0f} pairs/s (wall) = {rate / dense_rate:.2f} x the dense "
            f"kernel's wall rate at {u} units with as many threads (target >= 0.80); "
            f"top pairs {r['top_sts']}, "
            f"units with no valid partner {r['nan_units']}"
        )
        print(
            f"  [{tag}] per-unit means of 3 units vs pair() on their {ub - 1} partners: "
            f"max |diff| {r['row_check']:.1e} nats"
        )
        if one:
            cpu_rate = big_pairs / r["cpu"]
            print(
                f"  [{tag}] {cpu_rate:,.0f} pairs/s per CPU-second = "
                f"{cpu_rate / (n_pairs / dense_cpu):.2f} x the dense kernel's 1-thread rate"
            )
    print(f"  after: {load()}")


def cuda_case(args: argparse.Namespace) -> None:
    """[CUDA] GPU vs CPU summaries at ``--units``."""
    u, t, k = args.units, args.time, args.top_k
    if torch.cuda.is_available():
        xg = make_data(u, t).cuda()
        g = pair_summaries(xg, top_k=k)
        c = pair_summaries(xg.cpu(), top_k=k)
        err = (g.unit_mean.cpu() - c.unit_mean).abs().nan_to_num().max().item()
        same = torch.equal(g.top_pairs("sts")[0].cpu(), c.top_pairs("sts")[0])
        print(f"\n[CUDA] {u} units: max |GPU - CPU| per-unit means {err:.1e}; same top pairs {same}")
    else:
        print("\n[CUDA] no GPU visible: skipped")


if __name__ == "__main__":
    main()
