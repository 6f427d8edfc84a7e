"""benchmarks/gpu_check.py --smoke: every row is there and the exactness rows hold.

The smoke run is the GPU check's own code on the CPU with tiny random models, so on a CPU
the "device" side of each comparison is a second CPU copy: those rows must agree to
rounding. The comparisons that differ in earnest here (float32 against float64 PhiID input,
recording hooks against plain generation, cached generation against a teacher-forced pass,
batched against looped ablation) are checked against this test's own tolerances.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"

ROWS = [
    "env.device", "env.versions",
    "phiid.mmi_device_vs_cpu", "phiid.ccs_device_vs_cpu", "phiid.float32_vs_float64",
    "phiid.all_pairs_time", "phiid.stream_vs_dense", "phiid.stream_small", "phiid.stream_large",
    "small.build", "small.logits_device_vs_cpu", "small.signals_device_vs_cpu",
    "small.greedy_tokens", "small.ablation_device_vs_cpu",
    "big.build",
    "record.tokens_unchanged", "record.signals_vs_teacher_forced", "record.plain",
    "record.recording", "record.overhead",
    "ablation.clean_condition", "ablation.curve_batched_vs_loop", "ablation.speedup",
    "e2e.total", "e2e.report",
]
EXACT = [  # rows that compare two computations of the same numbers: must pass
    "phiid.mmi_device_vs_cpu", "phiid.ccs_device_vs_cpu", "phiid.float32_vs_float64",
    "small.logits_device_vs_cpu", "small.signals_device_vs_cpu", "small.ablation_device_vs_cpu",
    "record.tokens_unchanged", "record.signals_vs_teacher_forced",
    "ablation.clean_condition", "ablation.curve_batched_vs_loop",
]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("gpu_check") / "gpu_check.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert out.exists(), f"no JSON written; exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(out.read_text()), proc


def rows_of(doc: dict) -> dict[str, dict]:
    return {r["check"]: r for r in doc["rows"]}


def test_smoke_completes_with_every_row(smoke: tuple[dict, subprocess.CompletedProcess]) -> None:
    doc, proc = smoke
    rows = rows_of(doc)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert doc["complete"] is True and doc["meta"]["mode"] == "smoke"
    assert [r for r in ROWS if r not in rows] == []
    bad = {k: r["value"] for k, r in rows.items() if r["status"] in ("fail", "error")}
    assert bad == {}
    # analyse() reported its stages one by one (recording, PhiID, scores, ...), then the total
    stages = [k for k in rows if k.startswith("e2e.stage_")]
    assert len(stages) >= 4, stages
    assert sum(rows[k]["data"]["seconds"] for k in stages) <= rows["e2e.total"]["data"]["seconds"] + 1e-6
    for k in ("phiid.stream_vs_dense", "phiid.stream_small", "phiid.stream_large"):
        if rows[k]["status"] == "skip":  # the streaming engine is optional
            assert "not available" in rows[k]["value"]


def test_smoke_exactness_rows_pass(smoke: tuple[dict, subprocess.CompletedProcess]) -> None:
    rows = rows_of(smoke[0])
    assert {k: rows[k]["status"] for k in EXACT} == {k: "pass" for k in EXACT}
    data = {k: rows[k]["data"] for k in EXACT}
    # both sides in float64 on the CPU: identical up to rounding
    assert data["phiid.mmi_device_vs_cpu"]["max_abs_diff"] <= 1e-12
    assert data["phiid.ccs_device_vs_cpu"]["max_abs_diff"] <= 1e-12
    # float32 rounding of the series moves the atoms, but by far less than 1e-5 nats
    assert 0 < data["phiid.float32_vs_float64"]["max_abs_diff"] <= 1e-5
    # two CPU copies of one float32 model
    assert data["small.logits_device_vs_cpu"]["rel_diff"] <= 1e-6
    assert data["small.signals_device_vs_cpu"]["rel_diff"] <= 1e-6
    assert data["small.ablation_device_vs_cpu"]["max_abs_diff"] <= 1e-6
    # recording must not change generation; its signals equal a teacher-forced pass's
    assert data["record.tokens_unchanged"]["equal"] is True
    assert data["record.signals_vs_teacher_forced"]["rel_diff"] <= 1e-4
    # no head ablated = the clean model; batched = one pass per condition (float32)
    assert data["ablation.clean_condition"]["value_nats"] <= 1e-5
    assert data["ablation.curve_batched_vs_loop"]["max_abs_diff"] <= 1e-4
    if rows["phiid.stream_vs_dense"]["status"] != "skip":
        assert rows["phiid.stream_vs_dense"]["status"] == "pass"
        assert rows["phiid.stream_vs_dense"]["data"]["max_abs_diff"] <= 1e-12


def test_smoke_speed_rows_are_info_only(smoke: tuple[dict, subprocess.CompletedProcess]) -> None:
    """Speed targets are for the GPU: on the CPU they are reported, never judged."""
    rows = rows_of(smoke[0])
    for k in ("phiid.all_pairs_time", "record.overhead", "ablation.speedup", "e2e.total"):
        assert rows[k]["status"] == "info" and rows[k]["target"], k
