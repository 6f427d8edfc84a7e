"""Checkpointed recordings: resume after Ctrl-C or a killed process and lose nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import synergy_lens as sl
from synergy_lens.models import ModelAdapter, tiny_model
from synergy_lens.record import SIGNALS
from synergy_lens.record.signals import l2
from tests.record import _interrupt_worker as worker
from tests.record._interrupt_worker import PROMPTS, SETTINGS

ROOT = Path(__file__).resolve().parents[2]


def _assert_same(a, b):
    assert a.generated_ids == b.generated_ids and a.prompt_ids == b.prompt_ids
    assert torch.equal(a.lengths, b.lengths)
    torch.testing.assert_close(a.values, b.values, atol=0, rtol=0, equal_nan=True)
    assert a.settings == b.settings and a.model_config == b.model_config


@pytest.fixture
def generate_calls(monkeypatch):
    """Counts the batches that are actually generated."""
    calls = []
    original = ModelAdapter.generate

    def counting(self, prompts, **kw):
        calls.append(len(prompts))
        return original(self, prompts, **kw)

    monkeypatch.setattr(ModelAdapter, "generate", counting)
    return calls


def _rec(model, prompts, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("max_new_tokens", 8)
    return sl.record_head_activity(model, prompts, **kw)


def test_finished_checkpoint_is_reused_and_equals_a_plain_run(tiny, tmp_path, generate_calls):
    ckpt = tmp_path / "run.ckpt"
    first = _rec(tiny, PROMPTS, batch_size=2, checkpoint=ckpt)
    assert ckpt.is_file() and generate_calls == [2, 2]
    again = _rec(tiny, PROMPTS, batch_size=2, checkpoint=ckpt)
    assert generate_calls == [2, 2]  # nothing recomputed
    _assert_same(again, first)
    _assert_same(_rec(tiny, PROMPTS, batch_size=2), first)


def test_keyboard_interrupt_keeps_finished_batches(tiny, tmp_path, monkeypatch, generate_calls):
    model, prompts = tiny, PROMPTS[:3]
    def interrupting(z, *, adapter, layer):
        if len(generate_calls) == 3:  # during the third batch
            raise KeyboardInterrupt
        return l2(z, adapter=adapter, layer=layer)

    monkeypatch.setitem(SIGNALS, "flaky", interrupting)
    ckpt = tmp_path / "run.ckpt"
    with pytest.raises(KeyboardInterrupt) as info:
        _rec(model, prompts, batch_size=1, signal="flaky", checkpoint=ckpt)
    assert "2 of 3 prompts are saved" in "".join(getattr(info.value, "__notes__", []))
    monkeypatch.setitem(SIGNALS, "flaky", l2)  # same name, no interruption
    del generate_calls[:]
    resumed = _rec(model, prompts, batch_size=1, signal="flaky", checkpoint=ckpt)
    assert generate_calls == [1]  # only the unfinished batch
    _assert_same(resumed, _rec(model, prompts, batch_size=1, signal="flaky"))


def test_mismatching_checkpoint_is_refused(tiny, backend, tmp_path):
    ckpt = tmp_path / "run.ckpt"
    _rec(tiny, ["abc", "de"], checkpoint=ckpt)
    with pytest.raises(ValueError, match=r"different recording \(differs in: settings\)"):
        _rec(tiny, ["abc", "de"], checkpoint=ckpt, max_new_tokens=9)
    with pytest.raises(ValueError, match=r"differs in: prompts"):
        _rec(tiny, ["abc", "xx"], checkpoint=ckpt)
    other = tiny_model(backend, seed=1)  # same sizes, other weights
    with pytest.raises(ValueError, match=r"differs in: model"):
        _rec(other, ["abc", "de"], checkpoint=ckpt)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="expected a synergy-lens recording checkpoint.*delete it to start over"):
        _rec(tiny, ["abc"], checkpoint=tmp_path / "junk.pt")


def _start_worker(ckpt: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(Path(worker.__file__)), str(ckpt)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_interrupted_processes_resume_exactly(tmp_path, monkeypatch, generate_calls):
    """Ctrl-C (SIGINT) one recording process and SIGKILL another, each right after its first
    batch is saved; resuming each loses nothing and equals an uninterrupted run exactly.
    (The two processes run side by side to halve the start-up time.)"""
    how = {"sigint": signal.SIGINT, "sigkill": signal.SIGKILL}
    ckpts = {name: tmp_path / f"{name}.ckpt" for name in how}
    procs = {name: _start_worker(ckpts[name]) for name in how}
    errs = {}
    try:
        deadline = time.monotonic() + 600  # only a guard against a hang
        pending = set(how)
        while pending:  # poll until each process has saved its first batch
            for name in sorted(pending):
                if ckpts[name].exists():
                    procs[name].send_signal(how[name])
                    pending.discard(name)
                else:
                    assert procs[name].poll() is None, procs[name].communicate()[1][-2000:]
            assert time.monotonic() < deadline, f"no batch saved by {sorted(pending)}"
            time.sleep(0.02)
        for name, proc in procs.items():
            errs[name] = proc.communicate(timeout=60)[1]
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert procs["sigint"].returncode != 0 and "KeyboardInterrupt" in errs["sigint"]
    assert "Call again with the same arguments to resume" in errs["sigint"]
    assert procs["sigkill"].returncode == -signal.SIGKILL

    monkeypatch.setitem(SIGNALS, "slow_l2", l2)  # the same signal, without the sleep
    model = tiny_model("bridge", seed=0)
    plain = sl.record_head_activity(model, PROMPTS, **SETTINGS)
    for name, ckpt in ckpts.items():
        n_saved = int(load_file(ckpt)["done"].sum())  # a safetensors file
        assert 1 <= n_saved < len(PROMPTS), name
        del generate_calls[:]
        resumed = sl.record_head_activity(model, PROMPTS, checkpoint=ckpt, **SETTINGS)
        assert len(generate_calls) == len(PROMPTS) - n_saved, name  # saved batches not redone
        _assert_same(resumed, plain)
    assert not list(tmp_path.glob("*.tmp"))
