"""Run every benchmark in turn, one subprocess each (``make bench``).

    python benchmarks/run_all.py            # the targets' sizes (about 25 min on 2 CPU cores)
    python benchmarks/run_all.py --quick    # smaller sizes, same comparisons (about 5 min)
    python benchmarks/run_all.py --only phiid ablation

Each benchmark prints its own side-by-side ratios; this runner adds a header per benchmark
and the exit status, and returns non-zero if any benchmark failed. The ratios, not the
absolute times, are what to compare across machines; run on a quiet machine (the load
average is printed) because other processes slow the threaded runs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# name -> (script, full-size arguments, --quick arguments)
BENCHMARKS: dict[str, tuple[str, list[str], list[str]]] = {
    "phiid": ("bench_phiid.py", [], ["--repeats", "3", "--ref-pairs", "10", "--loop-pairs", "50", "--ccs-units", "24"]),
    "stream": ("bench_stream.py", [], ["--units", "576", "--big-units", "4096", "--repeats", "2"]),
    "ablation": ("bench_ablation.py", ["--repeats", "2"], []),
    "record": ("bench_record.py", [], ["--prompts", "8", "--max-new-tokens", "32"]),
    "units": ("bench_units.py", [], ["--quick"]),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes, same comparisons")
    ap.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="run only these")
    args = ap.parse_args()
    failed = []
    for name in args.only or list(BENCHMARKS):
        script, full, quick = BENCHMARKS[name]
        cmd = [sys.executable, str(HERE / script), *(quick if args.quick else full)]
        load = os.getloadavg()[0]
        print(f"\n=== {name}: {' '.join(cmd[1:])}  (load average {load:.1f})", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call(cmd)
        print(f"=== {name}: exit {rc}, {time.perf_counter() - t0:.0f} s", flush=True)
        if rc:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
