"""The shared result-file helpers: atomic writes, permissions, format tags."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from synergy_lens._io import atomic_torch_save, atomic_write_text, load_payload, save_payload


def test_payload_roundtrip_and_format_tag(tmp_path):
    path = tmp_path / "sub" / "r.pt"
    save_payload(path, "x/1", {"a": torch.arange(3), "skip": None}, {"k": [1, 2]})
    tensors, header = load_payload(path, "x/1")
    assert torch.equal(tensors["a"], torch.arange(3)) and "skip" not in tensors
    assert header == {"k": [1, 2]}
    with pytest.raises(ValueError, match="expected 'y/1', found 'x/1'"):
        load_payload(path, "y/1")
    torch.save({"no": torch.zeros(1)}, tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="without a synergy-lens header"):
        load_payload(tmp_path / "plain.pt", "x/1")


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "r.pt"
    atomic_torch_save({"v": torch.ones(2)}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_torch_save({"v": Unpicklable()}, path)
    assert torch.equal(torch.load(path, weights_only=True)["v"], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.pt"]


def test_files_get_the_umask_permissions_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        a = atomic_write_text(tmp_path / "a.html", "<p>é</p>")
        b = atomic_torch_save(torch.zeros(1), tmp_path / "b.pt")
    finally:
        os.umask(old)
    assert stat.S_IMODE(a.stat().st_mode) == 0o644
    assert stat.S_IMODE(b.stat().st_mode) == 0o644
    assert a.read_text(encoding="utf-8") == "<p>é</p>"
