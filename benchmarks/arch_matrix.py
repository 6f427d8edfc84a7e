"""The architecture support table, measured: run the matrix tests and print their outcome.

    python benchmarks/arch_matrix.py                      # this interpreter's TransformerLens
    python benchmarks/arch_matrix.py --python .venv/bin/python .venv-tl39/bin/python
    python benchmarks/arch_matrix.py --python .venv/bin/python .venv-tl39/bin/python --write-readme

Runs ``tests/models/test_architectures.py`` once per interpreter (one TransformerLens line
each) and reads the outcome of every (architecture, backend) cell from pytest's JUnit XML.
A cell reads ``pass`` when every check passed (recording == teacher-forced == uncached,
ablation == hand-written hook == weight surgery, skip == deleted layer, weight noise ==
noisy transformers weights, bit-identical restore), ``error: ...`` when it raised the
expected clear error (the reason follows), and ``FAIL`` with the failed checks otherwise.
``--write-readme`` replaces the table between the ``arch-matrix`` markers in README.md.
Exits non-zero when any cell failed.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = "tests/models/test_architectures.py"
START, END = "<!-- arch-matrix:start -->", "<!-- arch-matrix:end -->"

FAMILIES = {
    "gpt2": "GPT-2 (LayerNorm, learned positions, no GQA)",
    "neox": "Pythia / GPT-NeoX (parallel attention, partial RoPE)",
    "llama": "Llama (RMSNorm, RoPE, GQA)",
    "qwen3": "Qwen3 (q/k norm)",
    "gemma3": "Gemma 3 (sliding-window + global layers, sandwich norms, own scaling)",
    "mixtral": "Mixtral (MoE)",
    "qwen3_moe": "Qwen3-MoE (MoE, q/k norm)",
    "olmoe": "OLMoE (MoE, full-width q/k norm)",
}
"""Row order and labels (the keys are ``synergy_lens.models.tiny.ARCHS``)."""

CHECKS = {
    "test_model_equals_transformers": "same logits",
    "test_recording_equals_teacher_forced_and_uncached": "recording",
    "test_head_ablation_equals_hand_written_hook_and_weights": "ablation",
    "test_skip_equals_deleted_layer": "skip",
    "test_weight_noise_equals_transformers_weights": "noise",
    "test_interventions_restore_bit_identically": "restore",
}
ERROR_TEST = "test_unsupported_cells_raise_a_clear_error"
_PARAM = re.compile(r"^(?P<test>\w+)\[(?P<arch>[a-z0-9_]+)-(?P<backend>bridge|hooked)(?:-.*)?\]$")


def tl_version(python: str) -> str:
    out = subprocess.run(
        [python, "-c", "import importlib.metadata as m; print(m.version('transformer-lens'))"],
        capture_output=True, text=True, check=True,
    )
    major_minor = out.stdout.strip().split(".")[:2]
    return ".".join(major_minor)


def run_matrix(python: str) -> tuple[dict[tuple[str, str], dict[str, object]], float]:
    """``{(arch, backend): {"passed": [...], "failed": [...], "reason": str | None}}`` and
    the wall time of the pytest run."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "matrix.xml"
        start = time.perf_counter()
        subprocess.run(
            [python, "-m", "pytest", TESTS, "-q", "-p", "no:cacheprovider", f"--junitxml={xml}",
             "-o", "junit_family=xunit1"],
            cwd=ROOT, env=env, check=False,
        )
        wall = time.perf_counter() - start
        if not xml.exists():
            raise SystemExit(f"pytest under {python} wrote no results (see its output above)")
        root = ET.parse(xml).getroot()
    cells: dict[tuple[str, str], dict[str, object]] = defaultdict(
        lambda: {"passed": [], "failed": [], "reason": None}
    )
    for case in root.iter("testcase"):
        m = _PARAM.match(case.get("name", ""))
        if m is None:
            continue
        cell = cells[m["arch"], m["backend"]]
        bad = case.find("failure") is not None or case.find("error") is not None
        skipped = case.find("skipped") is not None
        if skipped:
            continue
        label = "clear error" if m["test"] == ERROR_TEST else CHECKS.get(m["test"], m["test"])
        (cell["failed"] if bad else cell["passed"]).append(label)  # type: ignore[union-attr]
        for prop in case.iter("property"):
            if prop.get("name") == "reason":
                cell["reason"] = prop.get("value")
    return dict(cells), wall


def describe(cell: dict[str, object] | None) -> str:
    if cell is None:
        return "n/a (backend not in this TransformerLens)"
    failed = sorted(set(cell["failed"]))  # type: ignore[call-overload]
    if failed:
        return "FAIL: " + ", ".join(failed)
    passed = set(cell["passed"])  # type: ignore[call-overload]
    if "clear error" in passed:
        return f"clear error: {cell['reason']}; use `bridge`"
    missing = set(CHECKS.values()) - passed
    if missing:
        return "incomplete: " + ", ".join(sorted(missing))
    return "pass"


def table(columns: list[tuple[str, dict[tuple[str, str], dict[str, object]], str]]) -> str:
    head = "| architecture | " + " | ".join(name for name, _, _ in columns) + " |"
    rule = "|---" * (len(columns) + 1) + "|"
    rows = [head, rule]
    for arch, label in FAMILIES.items():
        cells = [describe(results.get((arch, backend))) for _, results, backend in columns]
        rows.append(f"| `{arch}`: {label} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", nargs="+", default=[sys.executable],
                    help="interpreters to run the matrix under, one per TransformerLens line")
    ap.add_argument("--write-readme", action="store_true", help="update README.md's table")
    args = ap.parse_args()
    columns = []
    timings = []
    for python in args.python:
        version = tl_version(python)
        results, wall = run_matrix(python)
        timings.append(f"TransformerLens {version}: {wall:.0f} s")
        for backend in ("bridge", "hooked"):
            if any(b == backend for _, b in results):
                columns.append((f"TL {version} {backend}", results, backend))
    text = table(columns)
    print(text)
    print("pytest wall time per line: " + "; ".join(timings))
    if args.write_readme:
        readme = ROOT / "README.md"
        body = readme.read_text(encoding="utf-8")
        if START not in body or END not in body:
            raise SystemExit(f"README.md has no {START} ... {END} markers")
        before, rest = body.split(START, 1)
        _, after = rest.split(END, 1)
        readme.write_text(f"{before}{START}\n{text}\n{END}{after}", encoding="utf-8")
        print("README.md updated")
    return 1 if "FAIL" in text or "incomplete" in text else 0


if __name__ == "__main__":
    sys.exit(main())
