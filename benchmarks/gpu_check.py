"""GPU readiness: correctness and speed of synergy-lens on an accelerator, in one run.

    python benchmarks/gpu_check.py --smoke --json gpu_check.json   # CPU, tiny shapes (CI)
    make gpu-check                                                # the full run, on a GPU

One table (printed, and written as JSON after every row, so a run stopped half-way still
leaves what it measured). Each comparison is measured side by side in the same run:

- ``phiid``: all-pairs PhiID on the device against the float64 CPU kernel (all 16 atoms,
  MMI on every pair; CCS on a sample of units), float32 against float64 input, and the
  all-pairs time at 1,152 units x 1,000 steps (device and CPU).
- ``small``: a SmolLM2-135M-shaped Llama (random weights, float32) built once on the CPU and
  copied to the device: logits, head signals and a short ablation curve compared.
- ``big``: a Qwen3-8B-shaped model (36 layers x 32 query heads = 1,152 units, 8 KV heads,
  head_dim 128, MLP 12,288; the vocabulary cut to 32,000 from 151,936 to save memory),
  random weights, bfloat16, built directly on the device;
- ``record``: plain batched generation against recording (batch 32 x 100 new tokens),
  alternating, on the big model; the recording must not change the generated tokens, and
  its signals must match a teacher-forced pass;
- ``ablation``: the batched ablation curve against one pass per condition, on the big model;
- ``e2e``: ``analyse`` (``synergy_lens.analyse`` or ``synergy_lens.pipeline``) end to
  end on the big model with 60 prompts x 100 tokens (the demo's settings, ablation
  included), wall time per stage, then saving the results and writing the HTML report;
- ``stream`` (optional): the streaming engine (``synergy_lens.phiid.pair_summaries``)
  against the dense kernel at 1,152 units, then timed at 16,384 and 46,080 units, each run
  only when the time left allows it; ``skip`` rows when the engine is not installed.

Sections run in the order phiid, small, (big,) record, ablation, stream, e2e. No model or
tokenizer is downloaded: the models are built from transformers configs with a byte-level
tokenizer whose vocabulary is padded with ``[k]`` tokens to the model's size. ``--smoke``
runs every section on the CPU with tiny shapes of the same code paths (about a minute on
two cores; the test suite runs it); the speed rows are then ``info``, the exactness rows
still pass or fail against the tolerances below. ``--budget`` bounds the run: a section
that would start too late is skipped (its rows say so), and a watchdog writes the table
and exits if the run overruns the budget by more than a minute.

The GPU machine needs TransformerLens, plotly and circuitsvis, carried as wheels
(``make gpu-wheels`` here, then ``make gpu-check`` there installs them; README, "GPU check").
A rerun of some sections only: ``make gpu-check GPU_CHECK_ARGS="--only record ablation"``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# ------------------------------------------------------------------------------ tolerances
PHIID_DEVICE_ATOL = 1e-9
"""Max |device - CPU| over all 16 atoms, nats: both sides compute in float64 (the device's
reductions run in another order, so agreement is to rounding, not bitwise)."""
PHIID_F32_ATOL = 1e-5
"""Max |atoms(float32 input) - atoms(float64 input)|, nats: the kernel works in float64,
so this is the effect of rounding the series to float32 (~6e-8 relative) on the atoms."""
LOGITS_RTOL = {"float32": 1e-4, "bfloat16": 5e-2}
"""Max |device - CPU| logits of the same weights, relative to max |logit|."""
SIGNAL_RTOL = {"float32": 1e-4, "bfloat16": 5e-2}
"""Max |a - b| of head signals relative to max |signal|: device vs CPU, and cached
generation vs a teacher-forced pass (different kernels, so rounding differs in bfloat16)."""
CURVE_ATOL = {"float32": 1e-4, "bfloat16": 0.15}
"""Max |curve difference| in nats between two ways of computing one ablation curve.
bfloat16 rounding alone moves a divergence by up to about 0.1 nats (README)."""
STREAM_BUDGET_CUDA = 4 * 2**30
"""``memory_budget`` of the streaming engine on a GPU (its default, 256 MiB, suits a CPU)."""
STREAM_MAX_S = 45.0
"""A streaming run is skipped when the one before it (fewer units; cost grows with the
pairs) predicts more than this, or more than the budget left less e2e's share."""
TARGETS = {
    "phiid_s": 0.5,  # all pairs at 1,152 units x 1,000 steps (issue 4's CPU target)
    "record_overhead": 0.05,  # recording vs plain generation
    "ablation_speedup": 4.0,  # batched vs one pass per condition
    "e2e_s": 180.0,  # sl.analyse on the big model, 60 prompts x 100 tokens
}

SECTIONS: dict[str, tuple[list[str], float]] = {
    # section (a Check method) -> (its rows, seconds it needs on an H200, roughly), in run order:
    # the surest and cheapest first; the optional streaming engine, each size only if the time
    # left (less e2e's share) allows it; e2e, the longest and least known, last (its stage
    # rows are written as each stage ends, and the watchdog names the stage it stopped in)
    "phiid": (["phiid.mmi_device_vs_cpu", "phiid.ccs_device_vs_cpu", "phiid.float32_vs_float64",
               "phiid.all_pairs_time"], 20),
    "small": (["small.build", "small.logits_device_vs_cpu", "small.greedy_tokens",
               "small.signals_device_vs_cpu", "small.ablation_device_vs_cpu"], 30),
    "record": (["record.tokens_unchanged", "record.signals_vs_teacher_forced", "record.plain",
                "record.recording", "record.overhead"], 40),
    "ablation": (["ablation.clean_condition", "ablation.curve_batched_vs_loop", "ablation.speedup"], 40),
    "stream": (["phiid.stream_vs_dense", "phiid.stream_small", "phiid.stream_large"], 20),
    "e2e": (["e2e.total", "e2e.report"], 150),
}
BIG_SECTIONS = ("record", "ablation", "e2e")


# ------------------------------------------------------------------------------- settings
@dataclasses.dataclass(frozen=True)
class ModelShape:
    """A Llama-family transformer's sizes (``arch``: ``"qwen3"`` or ``"llama"``)."""

    arch: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    d_model: int
    d_mlp: int
    vocab: int
    dtype: str
    note: str = ""

    @property
    def units(self) -> int:
        return self.n_layers * self.n_heads

    def describe(self) -> str:
        return (f"{self.arch} {self.n_layers}x{self.n_heads} heads ({self.units} units), "
                f"{self.n_kv_heads} KV, d_head {self.d_head}, d_model {self.d_model}, "
                f"MLP {self.d_mlp}, vocab {self.vocab}, {self.dtype}{self.note}")


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Everything that differs between ``--smoke`` and the full run."""

    phiid_units: int
    phiid_time: int
    ccs_units: int
    stream_units: tuple[int, int]
    stream_time: int
    small: ModelShape
    big: ModelShape
    compare_prompts: int
    compare_tokens: int
    record_batch: int
    record_tokens: int
    record_repeats: int
    ablation_prompts: int
    ablation_tokens: int
    ablation_step: int
    ablation_random: int
    ablation_batch: int
    e2e_prompts: int
    e2e_tokens: int
    e2e_batch: int
    e2e_boot: int
    e2e_ablation: dict[str, int]
    budget_s: float


FULL = Sizes(
    phiid_units=1152, phiid_time=1000, ccs_units=64, stream_units=(16384, 46080), stream_time=1000,
    small=ModelShape("llama", 30, 9, 3, 64, 576, 1536, 8192, "float32",
                     " (SmolLM2-135M's shape; vocab 8,192 instead of 49,152)"),
    big=ModelShape("qwen3", 36, 32, 8, 128, 4096, 12288, 32000, "bfloat16",
                   " (Qwen3-8B's shape; vocab 32,000 instead of 151,936)"),
    compare_prompts=4, compare_tokens=16,
    record_batch=32, record_tokens=100, record_repeats=2,
    ablation_prompts=4, ablation_tokens=32, ablation_step=96, ablation_random=2, ablation_batch=32,
    e2e_prompts=60, e2e_tokens=100, e2e_batch=32, e2e_boot=1000,
    e2e_ablation={"ablation_prompts": 12, "ablation_tokens": 48, "ablation_seeds": 3, "ablation_steps": 10},
    budget_s=420.0,
)
SMOKE = Sizes(
    phiid_units=48, phiid_time=200, ccs_units=10, stream_units=(256, 512), stream_time=200,
    small=ModelShape("llama", 2, 4, 2, 8, 32, 64, 259, "float32"),
    big=ModelShape("qwen3", 2, 4, 2, 16, 64, 128, 512, "float32"),
    compare_prompts=2, compare_tokens=8,
    record_batch=4, record_tokens=10, record_repeats=1,
    ablation_prompts=2, ablation_tokens=8, ablation_step=4, ablation_random=1, ablation_batch=8,
    e2e_prompts=4, e2e_tokens=8, e2e_batch=4, e2e_boot=20,
    e2e_ablation={"ablation_prompts": 2, "ablation_tokens": 8, "ablation_seeds": 1, "ablation_steps": 2},
    budget_s=240.0,
)


# ----------------------------------------------------------------------------- the table
class Table:
    """Rows of the check; printed as they come and written as JSON after each one."""

    def __init__(self, path: Path | None, meta: dict[str, Any]) -> None:
        self.path, self.meta = path, meta
        self.rows: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.section = "start"
        self.section_t0 = time.perf_counter()
        self.t0 = time.perf_counter()

    def add(self, check: str, value: str, status: str, *, target: str = "", **data: Any) -> None:
        row = {"check": check, "value": value, "target": target, "status": status, "data": data}
        with self.lock:
            self.rows.append(row)
            print(f"  {status.upper():5s} {check:36s} {value}" + (f"   [target {target}]" if target else ""),
                  flush=True)
            self.write(complete=False)

    def write(self, *, complete: bool, note: str = "") -> None:
        if self.path is None:
            return
        doc = {"meta": self.meta | {"elapsed_s": round(time.perf_counter() - self.t0, 1)},
               "complete": complete, "note": note, "rows": self.rows}
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(doc, indent=1, default=str))
        os.replace(tmp, self.path)

    def print_table(self) -> None:
        w = max([len(r["check"]) for r in self.rows] + [5])
        print(f"\n{'check':{w}s}  {'status':6s}  {'result':60s}  target")
        for r in self.rows:
            print(f"{r['check']:{w}s}  {r['status']:6s}  {r['value']:60s}  {r['target']}")
        counts = {s: sum(r["status"] == s for r in self.rows) for s in ("pass", "fail", "error", "skip")}
        print(f"\n{counts['pass']} pass, {counts['fail']} fail, {counts['error']} error, "
              f"{counts['skip']} skipped, in {time.perf_counter() - self.t0:.0f} s")


def verdict(ok: bool, smoke: bool, *, speed: bool = False) -> str:
    """pass/fail; speed targets are only ``info`` in the smoke run (CPU, tiny shapes)."""
    if speed and smoke:
        return "info"
    return "pass" if ok else "fail"


# ---------------------------------------------------------------------------- utilities
class Device:
    """The device under test and how to time work on it."""

    def __init__(self, name: str) -> None:
        self.torch = torch.device(name)
        self.cuda = self.torch.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.torch)

    def timed(self, fn: Callable[[], Any]) -> tuple[Any, float]:
        self.sync()
        t = time.perf_counter()
        out = fn()
        self.sync()
        return out, time.perf_counter() - t

    def reset_peak(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.torch)

    def peak_gb(self) -> float | None:
        return torch.cuda.max_memory_allocated(self.torch) / 1024**3 if self.cuda else None


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| over entries where both are finite (NaN where they disagree on NaN)."""
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    if not torch.equal(torch.isnan(a), torch.isnan(b)):
        return math.nan
    keep = ~torch.isnan(a)
    return float((a[keep] - b[keep]).abs().max()) if bool(keep.any()) else 0.0


def rel_max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    scale = float(b.detach().double().abs().nan_to_num().max().cpu())
    return max_abs(a, b) / max(scale, 1e-30)


def fmt(x: float | None, spec: str = ".2e") -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def activity_data(n_units: int, n_steps: int, seed: int = 0) -> torch.Tensor:
    """float64 activity-like series ``[unit, time]``: AR(1) units mixed by shared factors."""
    g = torch.Generator().manual_seed(seed)
    factors = torch.randn(8, n_steps, generator=g, dtype=torch.float64)
    load = torch.randn(n_units, 8, generator=g, dtype=torch.float64) * 0.5
    x = load @ factors + torch.randn(n_units, n_steps, generator=g, dtype=torch.float64)
    for t in range(1, n_steps):
        x[:, t] += 0.4 * x[:, t - 1]
    return x * 3.0 + 10.0


def prompt_texts(n: int) -> list[str]:
    """n prompts of the default suite, round-robin over its six categories (repeated if n > 60)."""
    from synergy_lens.record import default_prompts

    by_cat: dict[Any, list[str]] = {}
    for p in default_prompts():
        by_cat.setdefault(p.category, []).append(p.text)
    ordered = [t for group in zip(*by_cat.values()) for t in group]
    return [ordered[i % len(ordered)] for i in range(n)]


# ------------------------------------------------------------------------------ models
def padded_byte_tokenizer(vocab_size: int) -> Any:
    """A byte-level tokenizer (256 bytes, BOS 256, EOS 257, PAD 258) padded to ``vocab_size``
    with tokens ``[k]`` that text never encodes to but that decode to readable strings."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from synergy_lens.models.tiny import byte_tokenizer

    base = byte_tokenizer()
    vocab = dict(base.get_vocab())
    for k in range(len(vocab), vocab_size):
        vocab[f"[{k}]"] = k
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<bos>", eos_token="<eos>",
                                   pad_token="<pad>")


def hf_config(shape: ModelShape) -> Any:
    common = dict(
        vocab_size=shape.vocab, hidden_size=shape.d_model, intermediate_size=shape.d_mlp,
        num_hidden_layers=shape.n_layers, num_attention_heads=shape.n_heads,
        num_key_value_heads=shape.n_kv_heads, head_dim=shape.d_head, max_position_embeddings=2048,
        bos_token_id=256, eos_token_id=257, pad_token_id=258, tie_word_embeddings=False,
    )
    if shape.arch == "qwen3":
        from transformers import Qwen3Config

        cfg = Qwen3Config(**common, architectures=["Qwen3ForCausalLM"])
    elif shape.arch == "llama":
        from transformers import LlamaConfig

        cfg = LlamaConfig(**common, architectures=["LlamaForCausalLM"])
    else:
        raise ValueError(f"unknown architecture {shape.arch!r}: use 'qwen3' or 'llama'")
    cfg.name_or_path = f"synergy-lens/random-{shape.arch}"
    return cfg


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def hf_model(shape: ModelShape, device: torch.device, seed: int) -> Any:
    """A random-init transformers model, built directly on ``device`` in ``shape.dtype``."""
    from transformers import AutoModelForCausalLM

    cfg = hf_config(shape)
    dtype = getattr(torch, shape.dtype)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        with torch.device(device), default_dtype(dtype):
            model = AutoModelForCausalLM.from_config(cfg)
    return model.to(dtype).eval()


def bridge(shape: ModelShape, hf: Any, tokenizer: Any) -> Any:
    """Wrap a transformers model in a TransformerBridge (offline: the tokenizer lives in a
    temporary folder while TransformerLens reads it back)."""
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as d:
        tokenizer.save_pretrained(d)
        hf.config.save_pretrained(d)
        tok = AutoTokenizer.from_pretrained(d)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = TransformerBridge.boot_transformers(
                hf.config.name_or_path, hf_model=hf, tokenizer=tok, dtype=getattr(torch, shape.dtype),
                device=hf.device,
            )
    model.eval()
    model.cfg.default_prepend_bos = False
    return model


# ---------------------------------------------------------------------------- sections
class Check:
    def __init__(self, args: argparse.Namespace, sizes: Sizes, table: Table, device: Device) -> None:
        self.args, self.sizes, self.table, self.dev = args, sizes, table, device
        self.smoke = bool(args.smoke)
        self.t0 = time.perf_counter()
        self.big: Any = None
        self.big_tried = False
        self.datasets_note = ""
        self.runs_e2e = False
        self.e2e_kwargs: dict[str, Any] = json.loads(args.e2e_kwargs) if args.e2e_kwargs else {}
        self.tokenizers: dict[int, Any] = {}

    # -- bookkeeping ------------------------------------------------------------------
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def run_section(self, name: str, rows: list[str], estimate_s: float, fn: Callable[[], None]) -> None:
        """Run one section; on an exception or too little budget, its missing rows say why."""
        self.table.section, self.table.section_t0 = name, time.perf_counter()
        before = {r["check"] for r in self.table.rows}
        left = self.sizes.budget_s - self.elapsed()
        if not self.smoke and estimate_s > 0 and estimate_s > left:
            reason = f"skipped: {left:.0f} s of the {self.sizes.budget_s:.0f} s budget left, section needs ~{estimate_s:.0f} s"
            for r in rows:
                self.table.add(r, reason, "skip")
            return
        print(f"\n[{name}] ({self.elapsed():.0f} s elapsed)", flush=True)
        try:
            fn()
        except Exception as err:  # one broken section must not lose the others
            msg = f"{type(err).__name__}: {err}".replace("\n", " ")[:300]
            traceback.print_exc()
            done = {r["check"] for r in self.table.rows} - before
            for r in rows:
                if r not in done:
                    self.table.add(r, f"error in section {name}: {msg}", "error")
        finally:
            if self.dev.cuda:
                torch.cuda.empty_cache()

    def tokenizer(self, vocab: int) -> Any:
        if vocab not in self.tokenizers:
            self.tokenizers[vocab] = padded_byte_tokenizer(vocab)
        return self.tokenizers[vocab]

    # -- environment ------------------------------------------------------------------
    def env(self) -> None:
        import transformers

        try:
            from importlib.metadata import version

            import transformer_lens

            tl = getattr(transformer_lens, "__version__", None) or version("transformer-lens")
        except Exception as err:  # pragma: no cover - reported, not raised
            tl = f"missing ({type(err).__name__}: {err})"
        if self.dev.cuda:
            props = torch.cuda.get_device_properties(self.dev.torch)
            dev = (f"{props.name}, {props.total_memory / 1024**3:.0f} GiB, {props.multi_processor_count} SMs, "
                   f"CUDA {torch.version.cuda}, TF32 matmul {torch.backends.cuda.matmul.allow_tf32}; "
                   f"CPU {os.cpu_count()} cores")
        else:
            dev = f"CPU ({platform.processor() or platform.machine()}), {torch.get_num_threads()} threads"
        self.table.add("env.device", dev, "info", device=str(self.dev.torch))
        self.table.add(
            "env.versions",
            f"python {platform.python_version()}, torch {torch.__version__}, transformers "
            f"{transformers.__version__}, transformer-lens {tl}{self.datasets_note}", "info",
        )

    # -- PhiID ----------------------------------------------------------------------
    def phiid(self) -> None:
        from synergy_lens.phiid import all_pairs

        s, dev = self.sizes, self.dev
        x64 = activity_data(s.phiid_units, s.phiid_time)
        n_pairs = s.phiid_units * (s.phiid_units - 1) // 2
        ref, cpu_s = dev_timed_cpu(lambda: all_pairs(x64))
        xd = x64.to(dev.torch)
        all_pairs(xd[:16])  # warm-up: kernels, allocator
        got, _ = dev.timed(lambda: all_pairs(xd))
        diff = max_abs(got, ref)
        self.table.add("phiid.mmi_device_vs_cpu",
                       f"max |device - CPU float64| = {fmt(diff)} nats, 16 atoms, {n_pairs:,} pairs "
                       f"({s.phiid_units} units x {s.phiid_time} steps)",
                       verdict(diff <= PHIID_DEVICE_ATOL, False), target=f"<= {PHIID_DEVICE_ATOL:g}",
                       max_abs_diff=diff, units=s.phiid_units, steps=s.phiid_time)

        xc = x64[: s.ccs_units]
        ref_c = all_pairs(xc, redundancy="CCS")
        got_c, ccs_s = dev.timed(lambda: all_pairs(xc.to(dev.torch), redundancy="CCS"))
        diff_c = max_abs(got_c, ref_c)
        self.table.add("phiid.ccs_device_vs_cpu",
                       f"max |device - CPU float64| = {fmt(diff_c)} nats, CCS, {s.ccs_units} units "
                       f"({s.ccs_units * (s.ccs_units - 1) // 2:,} pairs; {ccs_s:.2f} s on the device)",
                       verdict(diff_c <= PHIID_DEVICE_ATOL, False), target=f"<= {PHIID_DEVICE_ATOL:g}",
                       max_abs_diff=diff_c, units=s.ccs_units)

        got32 = all_pairs(x64.float().to(dev.torch))
        diff32 = max_abs(got32, ref)
        self.table.add("phiid.float32_vs_float64",
                       f"max |atoms(float32 input) - atoms(float64 input)| = {fmt(diff32)} nats",
                       verdict(diff32 <= PHIID_F32_ATOL, False), target=f"<= {PHIID_F32_ATOL:g}",
                       max_abs_diff=diff32)

        x32 = x64.float().to(dev.torch)
        times = [dev.timed(lambda: all_pairs(x32))[1] for _ in range(3 if self.smoke else 5)]
        best = min(times)
        dev.reset_peak()
        dev.timed(lambda: all_pairs(x32))
        peak = dev.peak_gb()
        self.table.add("phiid.all_pairs_time",
                       f"{best:.3f} s on {dev.torch.type} (median {statistics.median(times):.3f}), "
                       f"{cpu_s:.3f} s on the CPU ({torch.get_num_threads()} threads): "
                       f"{cpu_s / best:.1f}x; {n_pairs / best:,.0f} pairs/s"
                       + (f"; peak {peak:.2f} GiB" if peak is not None else ""),
                       verdict(best <= TARGETS["phiid_s"], self.smoke, speed=True),
                       target=f"<= {TARGETS['phiid_s']} s at 1,152 x 1,000",
                       device_s=best, cpu_s=cpu_s, runs=times, peak_gb=peak)

    def stream(self) -> None:
        rows = ("phiid.stream_vs_dense", "phiid.stream_small", "phiid.stream_large")
        try:
            from synergy_lens.phiid import pair_summaries
        except ImportError as err:
            for row in rows:
                self.table.add(row, f"not available (synergy_lens.phiid.pair_summaries: {err})", "skip")
            return
        from synergy_lens.phiid import all_pairs

        s, dev = self.sizes, self.dev
        budget = STREAM_BUDGET_CUDA if dev.cuda else None
        kw: dict[str, Any] = {"top_k": 100} | ({"memory_budget": budget} if budget else {})
        x = activity_data(s.phiid_units, s.phiid_time)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # expected: none; a degenerate unit would warn
            dense = all_pairs(x).nanmean(dim=-1)  # [16, unit]: mean over partners, unit as source
        got = pair_summaries(x.float().to(dev.torch), **kw)
        diff = max_abs(got.unit_mean, all_pairs(x.float()).nanmean(dim=-1))
        diff64 = max_abs(pair_summaries(x.to(dev.torch), **kw).unit_mean, dense)
        self.table.add("phiid.stream_vs_dense",
                       f"per-unit atom means, streamed on {dev.torch.type} vs dense CPU all_pairs: max "
                       f"|diff| = {fmt(diff64)} nats (float64 input), {fmt(diff)} (float32 input); "
                       f"{s.phiid_units} units", verdict(max(diff, diff64) <= PHIID_DEVICE_ATOL, False),
                       target=f"<= {PHIID_DEVICE_ATOL:g}", max_abs_diff=max(diff, diff64))
        xd = x.float().to(dev.torch)
        _, base_s = dev.timed(lambda: pair_summaries(xd, **kw))  # warm, for the extrapolation
        del x, xd, dense, got
        known = (s.phiid_units, base_s)  # (units, seconds) of the largest run so far
        for row, units in zip(rows[1:], s.stream_units):
            try:
                guess = known[1] * (units / known[0]) ** 2  # cost grows with the pairs
                reserve = SECTIONS["e2e"][1] if self.runs_e2e else 0.0
                limit = min(STREAM_MAX_S, self.sizes.budget_s - self.elapsed() - reserve)
                if guess > limit and not self.smoke:
                    self.table.add(row, f"skipped: {units:,} units would take ~{guess:.0f} s (from "
                                   f"{known[1]:.2f} s at {known[0]:,} units), over the {limit:.0f} s "
                                   "allowed", "skip")
                    continue
                xs = activity_data(units, s.stream_time, seed=1).float().to(dev.torch)
                pair_summaries(xs[:64], **kw)  # warm-up
                dev.reset_peak()
                out, secs = dev.timed(lambda xs=xs: pair_summaries(xs, **kw))
                known = (units, secs)
                peak = dev.peak_gb()
                n_pairs = units * (units - 1) // 2
                finite = bool(torch.isfinite(out.unit_mean).all())
                self.table.add(row, f"{units:,} units x {s.stream_time} steps ({n_pairs:,} pairs): "
                               f"{secs:.2f} s, {n_pairs / secs:,.0f} pairs/s"
                               + (f", peak {peak:.1f} GiB" if peak is not None else "")
                               + ("" if finite else "; NON-FINITE unit means"),
                               verdict(finite, False) if not finite else "info",
                               seconds=secs, units=units, peak_gb=peak, memory_budget=budget)
                del xs, out
            except Exception as err:
                msg = f"{type(err).__name__}: {err}".replace("\n", " ")[:300]
                self.table.add(row, f"{units:,} units: {msg}", "error")
            finally:
                if dev.cuda:
                    torch.cuda.empty_cache()

    # -- the small model: CPU vs device ---------------------------------------------
    def small(self) -> None:
        from synergy_lens.intervene import ablation_curve
        from synergy_lens.models import adapt
        from synergy_lens.record import SIGNALS, teacher_forced_signals

        s, shape = self.sizes, self.sizes.small
        t = time.perf_counter()
        tok = self.tokenizer(shape.vocab)
        hf_cpu = hf_model(shape, torch.device("cpu"), seed=0)
        hf_dev = copy.deepcopy(hf_cpu).to(self.dev.torch)
        cpu, dev = bridge(shape, hf_cpu, tok), bridge(shape, hf_dev, tok)
        a_cpu, a_dev = adapt(cpu), adapt(dev)
        self.table.add("small.build", f"{shape.describe()}; built on the CPU and copied to "
                       f"{self.dev.torch} in {time.perf_counter() - t:.1f} s", "info")

        ids = [a_cpu.tokenize(p) for p in prompt_texts(s.compare_prompts)]
        tokens, _ = a_cpu.pad(ids, side="right")
        with torch.inference_mode():
            lc = a_cpu.forward(tokens)
            ld = a_dev.forward(tokens.to(self.dev.torch))
        rel = rel_max_abs(ld, lc)
        tol = LOGITS_RTOL[shape.dtype]
        self.table.add("small.logits_device_vs_cpu", f"max |device - CPU| / max |logit| = {fmt(rel)} "
                       f"({len(ids)} prompts, right-padded)", verdict(rel <= tol, False),
                       target=f"<= {tol:g}", rel_diff=rel)

        gen_cpu = a_cpu.generate(ids, max_new_tokens=s.compare_tokens, stop_at_eos=False)
        gen_dev = a_dev.generate(ids, max_new_tokens=s.compare_tokens, stop_at_eos=False)
        same = sum(a == b for g, h in zip(gen_cpu, gen_dev) for a, b in zip(g, h))
        total = sum(len(g) for g in gen_cpu)
        first = [next((i for i, (a, b) in enumerate(zip(g, h)) if a != b), None) for g, h in zip(gen_cpu, gen_dev)]
        self.table.add("small.greedy_tokens", f"{same}/{total} greedy tokens equal on CPU and device "
                       f"(first difference per prompt: {first}; random weights make near-ties)", "info",
                       same=same, total=total)

        fn = SIGNALS["l2"]
        sig_cpu = teacher_forced_signals(a_cpu, ids, gen_cpu, fn, n_steps=s.compare_tokens)
        sig_dev = teacher_forced_signals(a_dev, ids, gen_cpu, fn, n_steps=s.compare_tokens)
        rel = rel_max_abs(sig_dev, sig_cpu)
        tol = SIGNAL_RTOL[shape.dtype]
        self.table.add("small.signals_device_vs_cpu", f"head signals (l2 of hook_z), same tokens: max "
                       f"|device - CPU| / max = {fmt(rel)}", verdict(rel <= tol, False),
                       target=f"<= {tol:g}", rel_diff=rel)

        pairs = list(zip(ids, [g[: s.ablation_tokens] for g in gen_cpu]))
        scores = torch.randn(shape.n_layers, shape.n_heads, generator=torch.Generator().manual_seed(0))
        kw = dict(step=max(1, shape.units // (2 if self.smoke else 4)), n_random=1, batch_size=16, progress=False)
        c_cpu = ablation_curve(cpu, pairs, scores, **kw)
        c_dev = ablation_curve(dev, pairs, scores, **kw)
        diff = curve_diff(c_cpu, c_dev)
        tol = CURVE_ATOL[shape.dtype]
        self.table.add("small.ablation_device_vs_cpu", f"batched ablation curve, max |device - CPU| = "
                       f"{fmt(diff)} nats ({len(c_cpu.steps)} steps)", verdict(diff <= tol, False),
                       target=f"<= {tol:g}", max_abs_diff=diff)
        del cpu, dev, hf_cpu, hf_dev

    # -- the big model -----------------------------------------------------------------
    def build_big(self) -> None:
        shape = self.sizes.big
        tok = self.tokenizer(shape.vocab)
        self.dev.reset_peak()
        t = time.perf_counter()
        hf = hf_model(shape, self.dev.torch, seed=0)
        self.dev.sync()
        self.big = bridge(shape, hf, tok)
        secs = time.perf_counter() - t
        n_params = sum(p.numel() for p in hf.parameters())
        peak = self.dev.peak_gb()
        self.table.add("big.build", f"{shape.describe()}; {n_params / 1e6:,.1f} M parameters, built on "
                       f"{self.dev.torch.type} in {secs:.1f} s" + (f", peak {peak:.1f} GiB" if peak else ""),
                       "info", params=n_params, seconds=secs, peak_gb=peak)

    def record(self) -> None:
        from synergy_lens.models import adapt
        from synergy_lens.record import SIGNALS, GenerationRecorder, teacher_forced_signals

        s, a = self.sizes, adapt(self.big)
        fn = SIGNALS["l2"]
        ids = [a.tokenize(p) for p in prompt_texts(s.record_batch)]
        n = s.record_tokens
        a.generate(ids[:2], max_new_tokens=2)  # warm-up

        def recorded() -> tuple[list[list[int]], torch.Tensor]:
            rec = GenerationRecorder(a, fn)
            with a.hooks(rec.hooks()):
                out = a.generate(ids, max_new_tokens=n, stop_at_eos=False)
            return out, rec.values(out, n_steps=n)

        plain_t, rec_t = [], []
        plain = rec_out = None
        for _ in range(s.record_repeats):  # alternate: both see the same machine state
            plain, secs = self.dev.timed(lambda: a.generate(ids, max_new_tokens=n, stop_at_eos=False))
            plain_t.append(secs)
            (rec_out, values), secs = self.dev.timed(recorded)
            rec_t.append(secs)
        assert plain is not None and rec_out is not None
        equal = plain == rec_out
        self.table.add("record.tokens_unchanged", f"generation with the recording hooks gave "
                       f"{'the same' if equal else 'OTHER'} tokens as plain generation ({len(ids)} x {n})",
                       verdict(equal, False), target="identical", equal=equal)
        tf = teacher_forced_signals(a, ids, rec_out, fn, n_steps=n)
        rel = rel_max_abs(values, tf)
        tol = SIGNAL_RTOL[s.big.dtype]
        self.table.add("record.signals_vs_teacher_forced", f"recorded in generation vs one teacher-forced "
                       f"pass, same tokens: max |diff| / max = {fmt(rel)} ({s.big.dtype})",
                       verdict(rel <= tol, False), target=f"<= {tol:g}", rel_diff=rel)
        n_tok = sum(len(g) for g in plain)
        p, r = min(plain_t), min(rec_t)
        self.table.add("record.plain", f"{n_tok / p:,.0f} tokens/s ({p:.2f} s; runs {[round(x, 2) for x in plain_t]})",
                       "info", tokens=n_tok, seconds=plain_t)
        self.table.add("record.recording", f"{n_tok / r:,.0f} tokens/s ({r:.2f} s; runs {[round(x, 2) for x in rec_t]})",
                       "info", tokens=n_tok, seconds=rec_t)
        over = r / p - 1
        self.table.add("record.overhead", f"{over:+.1%} (best of {s.record_repeats} alternating runs, batch "
                       f"{len(ids)} x {n} new tokens)", verdict(over <= TARGETS["record_overhead"], self.smoke, speed=True),
                       target=f"<= {TARGETS['record_overhead']:.0%}", overhead=over)

    def ablation(self) -> None:
        from synergy_lens.intervene import ablation_curve
        from synergy_lens.models import adapt

        s, a = self.sizes, adapt(self.big)
        ids = [a.tokenize(p) for p in prompt_texts(s.ablation_prompts)]
        gen = a.generate(ids, max_new_tokens=s.ablation_tokens, stop_at_eos=False)
        pairs = list(zip(ids, gen))
        scores = torch.randn(s.big.n_layers, s.big.n_heads, generator=torch.Generator().manual_seed(0))

        def run(batched: bool) -> Any:
            return ablation_curve(self.big, pairs, scores, step=s.ablation_step, n_random=s.ablation_random,
                                  batched=batched, batch_size=s.ablation_batch, progress=False)

        if not self.smoke:
            run(True)  # warm-up
        loop, loop_s = self.dev.timed(lambda: run(False))
        batched, batch_s = self.dev.timed(lambda: run(True))
        clean = max(abs(float(c[0])) for c in [*loop.curves.values(), *batched.curves.values()])
        tol = CURVE_ATOL[s.big.dtype]
        self.table.add("ablation.clean_condition", f"divergence with no head ablated (first curve point), "
                       f"loop and batched: max {fmt(clean)} nats", verdict(clean <= tol, False),
                       target=f"<= {tol:g}", value_nats=clean)
        diff = curve_diff(loop, batched)
        n_cond = (2 + s.ablation_random) * len(loop.steps)
        self.table.add("ablation.curve_batched_vs_loop", f"max |batched - loop| = {fmt(diff)} nats "
                       f"({s.big.dtype}; {n_cond} conditions x {len(pairs)} prompts)",
                       verdict(diff <= tol, False), target=f"<= {tol:g}", max_abs_diff=diff)
        ratio = loop_s / batch_s
        self.table.add("ablation.speedup", f"{ratio:.2f}x: loop {loop_s:.2f} s, batched {batch_s:.2f} s "
                       f"({len(pairs)} prompts x {s.ablation_tokens} tokens, batch {s.ablation_batch})",
                       verdict(ratio >= TARGETS["ablation_speedup"], self.smoke, speed=True),
                       target=f">= {TARGETS['ablation_speedup']:g}x", ratio=ratio, loop_s=loop_s, batched_s=batch_s)

    def e2e(self) -> None:
        import synergy_lens

        try:  # the public name where the package exports it, else the pipeline's own
            analyse = synergy_lens.analyse  # type: ignore[attr-defined]
        except AttributeError:
            from synergy_lens.pipeline import analyse

        s = self.sizes
        marks: list[tuple[str, float]] = []
        recorded: set[str] = set()

        def close_stage(end: float) -> None:
            text, start = marks[-1]
            word = "".join(ch for ch in text.split()[0].lower() if ch.isalnum()) if text.split() else ""
            slug = f"e2e.stage_{word or len(marks)}"
            if slug in recorded:
                slug += f"_{len(marks)}"
            recorded.add(slug)
            self.table.add(slug, f"{end - start:7.1f} s  {text}", "info", seconds=end - start)

        def stages(text: str) -> None:
            self.dev.sync()
            now = time.perf_counter()
            if marks:
                close_stage(now)
            marks.append((text, now))
            self.table.section, self.table.section_t0 = f"e2e: {text}", now

        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kwargs: dict[str, Any] = {
                "max_new_tokens": s.e2e_tokens, "batch_size": s.e2e_batch, "stop_at_eos": False,
                "n_boot": s.e2e_boot, "ablation": dict(s.e2e_ablation) | {"mode": "zero"},
            } | self.e2e_kwargs
            run = analyse(self.big, prompt_texts(s.e2e_prompts), stages=stages, progress=False, **kwargs)
        self.dev.sync()
        end = time.perf_counter()
        if marks:
            close_stage(end)
        total = end - t
        extra = f"; also {json.dumps(self.e2e_kwargs)}" if self.e2e_kwargs else ""
        self.table.add("e2e.total", f"{total:.1f} s for analyse() ({s.e2e_prompts} prompts x {s.e2e_tokens} tokens, "
                       f"batch {s.e2e_batch}, {s.e2e_boot} bootstrap resamples, demo ablation settings{extra})",
                       verdict(total <= TARGETS["e2e_s"], self.smoke, speed=True),
                       target=f"<= {TARGETS['e2e_s']:.0f} s", seconds=total)
        from synergy_lens.view.report import write_report

        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            run.save(Path(d) / "run")
            saved = time.perf_counter() - t
            report = write_report(run, Path(d) / "report.html")
            secs = time.perf_counter() - t
            size = report.stat().st_size / 1e6
        self.table.add("e2e.report", f"{secs:.1f} s to save the results ({saved:.1f} s) and write the HTML "
                       f"report ({size:.1f} MB)", "info", seconds=secs, save_s=saved, mb=size)


def dev_timed_cpu(fn: Callable[[], Any]) -> tuple[Any, float]:
    fn()  # warm-up
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def curve_diff(a: Any, b: Any) -> float:
    """max |a - b| over every curve (named orders and random orders) of two AblationCurves."""
    diff = max(max_abs(a.curves[k], b.curves[k]) for k in a.curves)
    return max(diff, max_abs(a.random, b.random))


def datasets_fallback() -> str:
    """Import ``datasets``, or stand in for the three names TransformerLens imports from it.

    TransformerLens imports ``datasets`` at start-up but uses it only to load training
    data, which this check never does; a machine whose ``pyarrow`` or ``huggingface_hub``
    is too old for the carried ``datasets`` wheel would otherwise lose the whole run.
    Returns a note for the table ("" when the real package imported).
    """
    try:
        import datasets  # noqa: F401

        return ""
    except Exception as err:  # ImportError, or an AttributeError from a too-old dependency
        import types

        def unavailable(*args: Any, **kwargs: Any) -> Any:
            raise ImportError(f"datasets could not be imported ({err}); the GPU check stands in for it")

        mods = {name: types.ModuleType(name) for name in
                ("datasets", "datasets.arrow_dataset", "datasets.iterable_dataset", "datasets.load")}
        mods["datasets.arrow_dataset"].Dataset = type("Dataset", (), {})  # type: ignore[attr-defined]
        mods["datasets.iterable_dataset"].IterableDataset = type("IterableDataset", (), {})  # type: ignore[attr-defined]
        mods["datasets.load"].load_dataset = unavailable  # type: ignore[attr-defined]
        mods["datasets"].load_dataset = unavailable  # type: ignore[attr-defined]
        sys.modules.update(mods)
        return f"; datasets replaced by a stand-in ({type(err).__name__}: {err})"


# ------------------------------------------------------------------------------ main
def watchdog(table: Table, limit_s: float) -> None:
    """After ``limit_s`` seconds, write what was measured and end the process."""

    def fire() -> None:
        note = (f"stopped by the watchdog after {limit_s:.0f} s, in section {table.section!r} "
                f"(running for {time.perf_counter() - table.section_t0:.0f} s)")
        with table.lock:
            print(f"\n{note}", flush=True)
            table.write(complete=False, note=note)
            table.print_table()
        sys.stdout.flush()
        os._exit(3)

    timer = threading.Timer(limit_s, fire)
    timer.daemon = True
    timer.start()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny shapes, seconds (the CI test)")
    ap.add_argument("--json", type=Path, default=None, help="write the table here (after every row)")
    ap.add_argument("--device", default=None, help="device under test (default: cuda if visible, else cpu)")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds: skip a section that would start later than this allows "
                         f"(default {FULL.budget_s:.0f}; the watchdog stops the run 60 s later)")
    ap.add_argument("--e2e-kwargs", default=None, metavar="JSON",
                    help="more keyword arguments for analyse() in e2e, e.g. '{\"n_surrogates\": 0}'")
    ap.add_argument("--only", nargs="+", default=None, choices=list(SECTIONS),
                    help="run only these sections (record, ablation and e2e build the big model)")
    args = ap.parse_args(argv)
    if args.e2e_kwargs is not None:
        try:
            ok = isinstance(json.loads(args.e2e_kwargs), dict)
        except json.JSONDecodeError:
            ok = False
        if not ok:
            ap.error(f"--e2e-kwargs must be a JSON object such as '{{\"n_surrogates\": 0}}', got {args.e2e_kwargs!r}")

    sizes = SMOKE if args.smoke else FULL
    if args.budget is not None:
        sizes = dataclasses.replace(sizes, budget_s=args.budget)
    name = args.device or ("cpu" if args.smoke or not torch.cuda.is_available() else "cuda")
    if not args.smoke and name == "cpu":
        print("warning: the full check on a CPU takes hours (the big model has 7 B parameters); "
              "use --smoke, or run it where a GPU is visible", file=sys.stderr)
    if args.smoke:
        torch.set_num_threads(min(2, torch.get_num_threads()))
    meta = {"mode": "smoke" if args.smoke else "full", "device": name, "argv": sys.argv[1:],
            "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "tolerances": {"phiid_device_atol": PHIID_DEVICE_ATOL, "phiid_f32_atol": PHIID_F32_ATOL,
                           "logits_rtol": LOGITS_RTOL, "signal_rtol": SIGNAL_RTOL, "curve_atol": CURVE_ATOL},
            "targets": TARGETS, "sizes": dataclasses.asdict(sizes)}
    table = Table(args.json, meta)
    watchdog(table, sizes.budget_s + 60)
    print(f"synergy-lens GPU check ({meta['mode']}) on {name}; budget {sizes.budget_s:.0f} s", flush=True)
    check = Check(args, sizes, table, Device(name))
    check.datasets_note = datasets_fallback()
    check.runs_e2e = "e2e" in (args.only or SECTIONS)
    torch.manual_seed(0)
    want = set(args.only or SECTIONS)

    check.run_section("env", ["env.device", "env.versions"], 0, check.env)
    for name, (rows, estimate_s) in SECTIONS.items():
        if name not in want:
            continue
        if name in BIG_SECTIONS and check.big is None:
            if not check.big_tried:
                check.big_tried = True
                check.run_section("big", ["big.build"], 40, check.build_big)
            if check.big is None:
                for r in rows:
                    table.add(r, "skipped: the big model was not built", "skip")
                continue
        check.run_section(name, rows, estimate_s, getattr(check, name))
    table.write(complete=True)
    table.print_table()
    bad = [r["check"] for r in table.rows if r["status"] in ("fail", "error")]
    if args.json:
        print(f"\nwrote {args.json}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
