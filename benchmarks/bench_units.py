"""Benchmark: units beyond heads on SmolLM2-135M-Instruct (MLP neurons, attn and MLP sub-layers).

    python benchmarks/bench_units.py            # 60 prompts x 100 tokens (27 min measured, 1 core)
    python benchmarks/bench_units.py --quick    # 8 prompts x 32 tokens, 3 layers of neurons, minutes

What it measures, with one torch thread by default (``--threads``; on a shared CPU one
thread is the steadier measurement, see ``phiid/stream.py``):

1. ``units="mlp_neurons", layers="spread:6"``: 6 x 1,536 = 9,216 neurons of six layers
   spread over depth.
   a. ``sl.record_activity``: wall and CPU time; peak resident set size
      (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) of a fresh subprocess, next to its
      size after loading the model, and the size of the recorded tensor. The peak includes
      ``check_not_degenerate``, whose float64 temporaries (``degenerate_mask``) measured
      about 1 GB on their own for this 211 MB recording.
   b. ``sl.decompose`` (streams above 2,048 units): wall and CPU time, peak RSS of a fresh
      subprocess next to its size with the recording loaded, and the rate in
      prompt-pairs per second (``prompts * units * (units - 1) / 2 / time``).
   c. the neuron-level layer profile of each headline score that streamed summaries hold
      (``rank_gradient``, ``syn_minus_red``, ``synergy_fraction``), min-max scaled, and its
      inverted-U index.
   d. its null test. ``sl.headline`` / ``sl.surrogate_test`` decompose every surrogate with
      the dense kernel (``[16, unit, unit]``: 10.9 GB per prompt at 9,216 units), so this
      benchmark builds the same circular-shift null on the streaming engine: the aligned
      statistic (every unit rotated by one common offset per prompt) and ``n`` surrogates
      (each unit by its own offset, the library's ``circular_shift`` with the library's
      seeds), each summarised by ``pair_summaries``, scored, profiled and min-max scaled;
      ``p = (1 + #{null index >= aligned index}) / (1 + n)`` as ``headline``. Each
      surrogate costs a full decomposition, so the null runs on a subset of prompts (one
      per category first) and as many surrogates as ``--null-budget`` seconds allow after
      timing one decomposition; the full-size time is printed as an extrapolation.
2. ``units="attn"`` and ``units="mlp"`` (30 units each): recording time, decomposition, and
   ``sl.headline`` with its default null (19 circular-shift surrogates): profiles,
   inverted-U indices, p-values.

Recordings (and the neuron decomposition) are cached under ``--cache`` with the numbers
measured when they were made; a cached stage prints those numbers and says "cached".
``--fresh`` ignores the cache.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import synergy_lens as sl
from synergy_lens.analysis.headline import HEADLINE_SCORES
from synergy_lens.analysis.profile import layer_means, minmax_scale, u_index
from synergy_lens.analysis.surrogates import circular_shift
from synergy_lens.phiid import pair_summaries
from synergy_lens.phiid.summaries import PairSummaries
from synergy_lens.record import HeadActivity
from synergy_lens.units import normalised_depth

DEFAULT_CACHE = Path("/tmp/synergy_lens_bench_units")


# ------------------------------------------------------------------------------ helpers
def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} / {fifteen:.1f} ({os.cpu_count()} CPUs)"


def rss_gb() -> float:
    """Peak resident set size of this process so far (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def current_rss_gb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024**3


def n_pairs(units: int) -> int:
    return units * (units - 1) // 2


def _interleaved(n: int) -> list[Any]:
    """The first n prompts of the suite taken round-robin over its six categories."""
    by_cat: dict[Any, list[Any]] = {}
    for p in sl.default_prompts():
        by_cat.setdefault(p.category, []).append(p)
    return [p for group in zip(*by_cat.values()) for p in group][:n]


def _stage(args: argparse.Namespace, *extra: str) -> dict[str, Any]:
    """Run one stage of this script in a fresh process (its own peak RSS); its JSON line."""
    cmd = [sys.executable, __file__, "--threads", str(args.threads), "--cache", str(args.cache), *extra]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        raise RuntimeError(f"stage {extra} failed (exit {out.returncode}); its stderr is above")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _cached(path: Path, args: argparse.Namespace, *extra: str) -> tuple[dict[str, Any], bool]:
    """The stage's numbers from ``path``'s JSON sidecar, or from running it now."""
    side = path.with_suffix(".json")
    if side.exists() and path.exists() and not args.fresh:
        return json.loads(side.read_text()), True
    info = _stage(args, *extra)
    side.write_text(json.dumps(info))
    return info, False


# ------------------------------------------------------------------------------ stages
def stage_record(kind: str, layers: str | None, n_prompts: int, steps: int, path: Path) -> None:
    """Record ``kind`` in this (fresh) process and save it; prints one JSON line."""
    model = sl.load_model()
    rss_model = current_rss_gb()
    prompts = _interleaved(n_prompts)
    wall, cpu = time.perf_counter(), time.process_time()
    act = sl.record_activity(model, prompts, units=kind, layers=layers, max_new_tokens=steps, progress=False)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    act.save(path)
    tokens = int(act.lengths.sum()) if act.lengths is not None else 0
    print(json.dumps({
        "wall": wall, "cpu": cpu, "rss_peak": rss_gb(), "rss_model": rss_model,
        "values_gb": act.values.numel() * act.values.element_size() / 1024**3,
        "tokens": tokens, "units": act.n_units, "layers": act.model_layers,
        "labels": [act.unit_labels()[i] for i in (0, 1, -1)],
        "threads": torch.get_num_threads(), "load_after": os.getloadavg()[0], "made": time.strftime("%H:%M"),
    }))


def stage_decompose(act_path: Path, out_path: Path) -> None:
    """Streamed decomposition of a saved recording; saves the summaries, prints one JSON line."""
    act = HeadActivity.load(act_path)
    rss_data = current_rss_gb()
    wall, cpu = time.perf_counter(), time.process_time()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = sl.decompose(act, progress=False)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    result.save(out_path)
    print(json.dumps({
        "wall": wall, "cpu": cpu, "rss_peak": rss_gb(), "rss_data": rss_data,
        "type": type(result).__name__, "warnings": [str(w.message)[:300] for w in caught],
        "prompts": act.n_prompts, "units": act.n_units, "steps": int(act.lengths.sum()) if act.lengths is not None else 0,
        "threads": torch.get_num_threads(), "load_after": os.getloadavg()[0], "made": time.strftime("%H:%M"),
    }))


# ------------------------------------------------------------------------ neuron part
def _series(act: HeadActivity) -> list[torch.Tensor]:
    """Each prompt's valid ``[unit, time]`` series, float64 (what decompose uses)."""
    series = act.unit_series()
    lengths = [int(n) for n in torch.as_tensor(act.lengths).tolist()]
    return [series[p, :, :n].to(torch.float64) for p, n in enumerate(lengths)]


def _profiles(s: PairSummaries) -> dict[str, tuple[torch.Tensor, float]]:
    """Per headline score: the min-max scaled layer profile and its inverted-U index, as
    ``headline`` scores a surrogate (``synergy_scores`` of the summaries, ranks recomputed)."""
    depth = normalised_depth(int(s.n_layers or 1))
    out = {}
    for name in HEADLINE_SCORES:
        values = sl.synergy_scores(s, score=name).values
        prof = minmax_scale(layer_means(values.flatten(), values.shape[0], values.shape[1]))
        out[name] = (prof, u_index(prof, depth) if prof.numel() >= 3 else math.nan)
    return out


def _summarise(prompts: list[torch.Tensor], act: HeadActivity, top_k: int) -> tuple[PairSummaries, float]:
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # degenerate units: reported for the data
        s = pair_summaries(prompts, labels=act.unit_labels(), n_layers=act.n_layers, n_heads=act.n_heads,
                           top_k=top_k)
    return s, time.perf_counter() - t0


def neuron_null(act: HeadActivity, n_prompts: int, budget: float, max_surrogates: int,
                full_time: float, seed: int = 0, tau: int = 1) -> None:
    """[1d] The circular-shift null of the neuron profile on the streaming engine (docstring)."""
    from synergy_lens.analysis.surrogates import _min_shift  # the library's default offsets

    sub = act.select(list(range(n_prompts)))
    cats = sorted(set(sub.categories or []))
    prompts = _series(sub)
    print(f"\n[1d] null test of the neuron profile: circular shift, first {n_prompts} prompts of the "
          f"interleaved suite ({len(cats)} categories), seed {seed}; {load()}")

    def shifted(p: int, x: torch.Tensor, s: int, common: bool) -> torch.Tensor:
        rng = np.random.default_rng([seed, p, s, 0 if not common else 1])
        return circular_shift(x, rng, n=1, min_shift=_min_shift(x.shape[-1], tau, None), common=common)[0]

    observed, t_obs = _summarise(prompts, sub, top_k=1000)
    aligned, t_al = _summarise([shifted(p, x, 0, True) for p, x in enumerate(prompts)], sub, top_k=0)
    t_one = (t_obs + t_al) / 2
    n = min(max_surrogates, int((budget - t_obs - t_al) // t_one))
    print(f"  one decomposition of {n_prompts} prompts: {t_obs:.0f} s (data), {t_al:.0f} s (aligned); "
          f"budget {budget:.0f} s -> {n} surrogates (at most {max_surrogates})")
    if n < 2:
        print("  fewer than 2 surrogates fit the budget: no null test (raise --null-budget)")
        return
    t0 = time.perf_counter()
    null_idx = {name: [] for name in HEADLINE_SCORES}  # type: dict[str, list[float]]
    null_prof = {name: [] for name in HEADLINE_SCORES}  # type: dict[str, list[torch.Tensor]]
    null_sts = []
    for s in range(n):
        surr, _ = _summarise([shifted(p, x, s, False) for p, x in enumerate(prompts)], sub, top_k=0)
        for name, (prof, idx) in _profiles(surr).items():
            null_idx[name].append(idx)
            null_prof[name].append(prof)
        null_sts.append(surr.mean_sts)
    t_null = time.perf_counter() - t0
    obs, ali = _profiles(observed), _profiles(aligned)
    print(f"  {n} surrogates in {t_null:.0f} s ({t_null / n:.0f} s each, "
          f"{len(prompts) * n_pairs(act.n_units) * n / t_null:,.0f} prompt-pairs/s); {load()}")
    print(f"  {'score':<18}{'index':>8}{'aligned':>9}{'null mean':>11}{'null sd':>9}{'null max':>10}"
          f"{'z':>7}{'p':>8}")
    for name in HEADLINE_SCORES:
        nulls = torch.tensor(null_idx[name], dtype=torch.float64)
        finite = nulls[torch.isfinite(nulls)]
        a = ali[name][1]
        p = (1 + int((finite >= a).sum())) / (1 + finite.numel()) if finite.numel() and math.isfinite(a) else math.nan
        mean, sd, top = (
            (float(finite.mean()), float(finite.std()), float(finite.max())) if finite.numel() > 1
            else (math.nan, math.nan, math.nan)
        )
        print(f"  {name:<18}{obs[name][1]:8.3f}{a:9.3f}{mean:11.3f}{sd:9.4f}{top:10.3f}{(a - mean) / sd:7.1f}{p:8.3f}")
    print("  (index: the subset's observed profile; aligned: under one common shift, the tested statistic;")
    print("   z = (aligned - null mean) / null sd, descriptive only;")
    print(f"   p = (1 + #null >= aligned) / (1 + {n}), smallest possible {1 / (1 + n):.3f})")
    rows = "".join(f"{lab:>8}" for lab in _row_names(act))
    print(f"  mean null profile (scaled)  {rows}")
    for name in HEADLINE_SCORES:
        mean = torch.stack(null_prof[name]).nanmean(0)
        print(f"    {name:<26}" + "".join(f"{v:8.3f}" for v in mean.tolist()))
    above = (aligned.mean_sts[None] > torch.stack(null_sts)).all(0)
    print(f"  neurons whose aligned mean sts exceeds all {n} surrogates: {int(above.sum())} of {act.n_units} "
          f"(about {act.n_units / (n + 1):.0f} expected if no neuron exceeded its null)")
    extra = (n + 1) * full_time
    print(f"  EXTRAPOLATED full-size null ({act.n_prompts} prompts, aligned + {n} surrogates at the measured "
          f"full decomposition time {full_time:.0f} s): {extra:,.0f} s = {extra / 3600:.1f} h (not run)"
          + ("" if n == 19 else f"; with 19 surrogates {20 * full_time / 3600:.1f} h"))


def _row_names(act: HeadActivity) -> list[str]:
    return [f"L{layer}" for layer in act.model_layers]


def neuron_part(args: argparse.Namespace) -> None:
    """[1] MLP neurons of ``--neuron-layers``: record, decompose (streamed), profile, null."""
    tag = f"neurons_{args.neuron_layers.replace(':', '')}_{args.prompts}x{args.max_new_tokens}"
    act_path = args.cache / f"{tag}.safetensors"
    rec, cached = _cached(act_path, args, "--stage", "record", "mlp_neurons", args.neuron_layers,
                          str(args.prompts), str(args.max_new_tokens), str(act_path))
    act = HeadActivity.load(act_path)
    u = act.n_units
    print(f"\n[1] units='mlp_neurons', layers={args.neuron_layers!r} -> layers {act.model_layers}, "
          f"{act.n_layers} x {act.n_heads} = {u:,} units ({n_pairs(u):,} pairs); labels "
          f"{', '.join(rec['labels'][:2])}, ..., {rec['labels'][-1]}")
    print(f"[1a] record_activity: {args.prompts} prompts x {args.max_new_tokens} new tokens "
          f"({rec['tokens']} valid steps){' (cached: measured at ' + rec['made'] + ')' if cached else ''}")
    print(f"  wall {rec['wall']:.1f} s, CPU {rec['cpu']:.1f} s, {rec['tokens'] / rec['wall']:.1f} steps/s; "
          f"peak RSS {rec['rss_peak']:.2f} GB (after loading the model {rec['rss_model']:.2f} GB; "
          f"ru_maxrss of a fresh process); values tensor {rec['values_gb'] * 1024:.0f} MB "
          f"({rec['threads']} thread(s), load after {rec['load_after']:.1f})")

    res_path = args.cache / f"{tag}_summaries.safetensors"
    dec, cached = _cached(res_path, args, "--stage", "decompose", str(act_path), str(res_path))
    s = PairSummaries.load(res_path)
    pairs = act.n_prompts * n_pairs(u)
    print(f"[1b] decompose (streamed: {dec['type']}){' (cached: measured at ' + dec['made'] + ')' if cached else ''}")
    print(f"  wall {dec['wall']:.0f} s, CPU {dec['cpu']:.0f} s; {pairs:,} prompt-pairs -> "
          f"{pairs / dec['wall']:,.0f} pairs/s wall, {pairs / dec['cpu']:,.0f} per CPU-second; "
          f"peak RSS {dec['rss_peak']:.2f} GB (recording loaded {dec['rss_data']:.2f} GB) "
          f"({dec['threads']} thread(s), load after {dec['load_after']:.1f})")
    for w in dec["warnings"]:
        print(f"  warning: {w}")
    nan_units = int(torch.isnan(s.mean_sts).sum())
    print(f"  units with NaN mean sts: {nan_units}; constant units {len(s.constant_units)}; "
          f"collinear pairs {len(s.collinear_pairs)}; pairs defined in some prompts only {s.partial_pairs}")
    print(f"  labels match the recording: {list(s.labels or []) == act.unit_labels()}; "
          f"top sts pairs: {', '.join(f'{s.labels[i]}-{s.labels[j]}' for i, j in s.top_sts_pairs[:3].tolist())}"
          if s.labels is not None and s.top_sts_pairs is not None else "  no labels on the summaries")

    print(f"\n[1c] neuron-level layer profile (mean per layer, min-max scaled; sl.layer_profile, n_boot=0: "
          f"streamed summaries keep no per-prompt atoms); {load()}")
    print(f"  {'score':<20}" + "".join(f"{lab:>8}" for lab in _row_names(act)) + f"{'U-index':>10}")
    own = _profiles(s)
    for name in HEADLINE_SCORES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            prof = sl.layer_profile(s, score=name, n_boot=0)
        same = torch.allclose(prof.values, own[name][0], equal_nan=True)
        print(f"  {name:<20}" + "".join(f"{v:8.3f}" for v in prof.values.tolist())
              + f"{prof.inverted_u:10.3f}" + ("" if same else "  (differs from the null's scoring!)"))
    raw = sl.synergy_scores(s, score="mean_sts")
    print("  raw per-layer means (nats):")
    for name in ("mean_sts", "mean_rtr"):
        grid = getattr(raw, name)
        print(f"    {name:<18}" + "".join(f"{v:8.4f}" for v in grid.nanmean(-1).tolist()))
    print(f"  (depth of a row is row / (rows - 1), as layer_profile computes it; the model depths of "
          f"these layers are {', '.join(f'{x / 29:.2f}' for x in act.model_layers)})"
          if act.model_config.get("n_layers") == 30 else "")
    neuron_null(act, min(args.null_prompts, act.n_prompts), args.null_budget, args.max_surrogates, dec["wall"])


# ---------------------------------------------------------------------- sub-layer part
def sublayer_part(args: argparse.Namespace) -> None:
    """[2] ``attn`` and ``mlp`` sub-layers: record, decompose, headline with its null."""
    out = {}
    for kind in ("attn", "mlp"):
        path = args.cache / f"{kind}_{args.prompts}x{args.max_new_tokens}.safetensors"
        rec, cached = _cached(path, args, "--stage", "record", kind, "all", str(args.prompts),
                              str(args.max_new_tokens), str(path))
        act = HeadActivity.load(path)
        t0 = time.perf_counter()
        result = sl.decompose(act, progress=False)
        t_dec = time.perf_counter() - t0
        t0 = time.perf_counter()
        hl, test = sl.headline(act, result, n_surrogates=args.surrogates)
        t_hl = time.perf_counter() - t0
        out[kind] = (act, hl)
        print(f"\n[2] units={kind!r}: {act.n_units} units ({', '.join(rec['labels'][:2])}, ..., {rec['labels'][-1]}), "
              f"{args.prompts} prompts x {args.max_new_tokens} tokens ({rec['tokens']} valid steps)"
              f"{' (recording cached: measured at ' + rec['made'] + ')' if cached else ''}")
        print(f"  record_activity wall {rec['wall']:.1f} s, CPU {rec['cpu']:.1f} s, peak RSS {rec['rss_peak']:.2f} GB "
              f"(model {rec['rss_model']:.2f} GB); decompose {t_dec:.2f} s; headline ({test.n_surrogates} surrogates, "
              f"{test.method}) {t_hl:.1f} s; {load()}")
        print(f"  {'score':<18}{'index':>8}{'CI low':>8}{'CI high':>8}{'aligned':>9}{'null mean':>11}{'p':>8}")
        for row in hl.to_dataframe().itertuples():
            print(f"  {row.score:<18}{row.inverted_u:8.3f}{row.ci_low:8.3f}{row.ci_high:8.3f}{row.aligned:9.3f}"
                  f"{row.null_mean:11.3f}{row.p:8.3f}")
        for sentence in hl.sentences():
            print(f"  {sentence}")
        print(f"  {hl.core_sentence()}")
    print("\n[2] layer profiles side by side (min-max scaled; attn | mlp)")
    short = {"rank_gradient": "rank_grad", "syn_minus_red": "syn-red", "synergy_fraction": "syn_frac"}
    head = "".join(f"{short[s]:>10}" for s in HEADLINE_SCORES)
    print(f"  {'layer':<6}{head} |{head}")
    a_hl, m_hl = out["attn"][1], out["mlp"][1]
    for row in range(a_hl.profile.shape[1]):
        left = "".join(f"{v:10.3f}" for v in a_hl.profile[:, row].tolist())
        right = "".join(f"{v:10.3f}" for v in m_hl.profile[:, row].tolist())
        print(f"  L{row:<5}{left} |{right}")


# ---------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="8 prompts x 32 tokens, neurons of 3 layers")
    ap.add_argument("--prompts", type=int, default=None, help="prompts of the suite (default 60; quick 8)")
    ap.add_argument("--max-new-tokens", type=int, default=None, help="default 100; quick 32")
    ap.add_argument("--neuron-layers", default=None, help='default "spread:6"; quick "spread:3"')
    ap.add_argument("--null-prompts", type=int, default=None, help="prompts of the neuron null (default 6; quick 2)")
    ap.add_argument("--null-budget", type=float, default=None, help="seconds for the neuron null (default 2100)")
    ap.add_argument("--max-surrogates", type=int, default=19, help="at most this many neuron surrogates")
    ap.add_argument("--surrogates", type=int, default=19, help="surrogates of the attn/mlp headline")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--fresh", action="store_true", help="ignore cached recordings and decompositions")
    ap.add_argument("--stage", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.stage:
        name, *rest = args.stage
        if name == "record":
            kind, layers, n, steps, path = rest
            stage_record(kind, None if layers == "all" else layers, int(n), int(steps), Path(path))
        else:
            stage_decompose(Path(rest[0]), Path(rest[1]))
        return
    quick = args.quick
    args.prompts = args.prompts or (8 if quick else 60)
    args.max_new_tokens = args.max_new_tokens or (32 if quick else 100)
    args.neuron_layers = args.neuron_layers or ("spread:3" if quick else "spread:6")
    args.null_prompts = args.null_prompts or (2 if quick else 6)
    args.null_budget = args.null_budget if args.null_budget is not None else (60.0 if quick else 2100.0)
    if quick and args.surrogates == 19:
        args.surrogates = 4
    args.cache.mkdir(parents=True, exist_ok=True)
    print(f"synergy-lens units benchmark on {sl.load_model.__name__}() (SmolLM2-135M-Instruct): "
          f"{args.prompts} prompts x {args.max_new_tokens} new tokens; tau=1, MMI, mean over prompts")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"{platform.processor() or platform.machine()}; {load()}; cache {args.cache}")
    t0 = time.perf_counter()
    neuron_part(args)
    sublayer_part(args)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s; {load()}")


if __name__ == "__main__":
    main()
