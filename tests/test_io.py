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


def test_result_files_are_safetensors_with_a_json_header(tmp_path):
    import json

    from safetensors import safe_open

    path = tmp_path / "r.pt"
    shared = torch.arange(4.0)
    save_payload(path, "x/3", {"a": shared, "b": shared, "c": shared[1:3], "n": torch.tensor([float("nan")])},
                 {"k": "é"})
    with safe_open(path, framework="pt") as f:  # readable without synergy_lens or an unpickler
        assert json.loads(f.metadata()["synergy_lens"]) == {"format": "x", "version": 3, "k": "é"}
        assert sorted(f.keys()) == ["a", "b", "c", "n"]
    tensors, header = load_payload(path, "x/3")
    assert torch.equal(tensors["b"], shared) and torch.equal(tensors["c"], torch.tensor([1.0, 2.0]))
    assert bool(tensors["n"].isnan().all()) and header == {"k": "é"}
    with pytest.raises(ValueError, match="expected 'x/2', found 'x/3'"):
        load_payload(path, "x/2")
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) - 3])
    with pytest.raises(ValueError, match=r"cut.pt: expected .*found a truncated safetensors file"):
        load_payload(tmp_path / "cut.pt", "x/3")


def test_files_of_the_torch_format_still_load(tmp_path):
    import json

    path = tmp_path / "old.pt"
    torch.save({"a": torch.arange(3), "header": json.dumps({"format": "x/1", "k": [1, 2]})}, path)
    tensors, header = load_payload(path, "x/1")
    assert torch.equal(tensors["a"], torch.arange(3)) and header == {"k": [1, 2]}


def test_saved_fields_encoding_round_trips_and_refuses_what_it_cannot_read(tmp_path):
    import dataclasses
    import math

    import pandas as pd

    from synergy_lens._io import SavedFields, load_fields
    from synergy_lens.dynamics.order import TransitionPoint

    @dataclasses.dataclass
    class Thing(SavedFields):
        FORMAT = "synergy_lens.Thing/2"
        value: object
        keep: object = None

    tp = TransitionPoint(estimate=1.5, method="logistic", ci=(1.0, 2.0), params=None)
    value = {"t": (1, torch.ones(2)), 3: [torch.zeros(1), None], "$odd": math.nan, "tp": tp,
             "frame": pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})}
    Thing(value=value).save(tmp_path / "t.st")
    back = load_fields(Thing, tmp_path / "t.st").value
    assert list(back) == ["t", 3, "$odd", "tp", "frame"] and back["t"][0] == 1 and isinstance(back["t"], tuple)
    assert torch.equal(back["t"][1], torch.ones(2)) and back[3][1] is None and math.isnan(back["$odd"])
    assert back["tp"] == tp and back["frame"].equals(value["frame"])
    with pytest.raises(TypeError, match="cannot save 'value/x': a builtins.object"):
        Thing(value={"x": object()}).save(tmp_path / "u.st")
    save_payload(tmp_path / "new.st", "synergy_lens.Thing/3", {}, {"fields": {"value": 1}})
    with pytest.raises(ValueError, match="format version 3, written by a newer synergy-lens"):
        Thing.load(tmp_path / "new.st")
    save_payload(tmp_path / "evil.st", "synergy_lens.Thing/2", {},
                 {"fields": {"value": {"$dataclass": "os:system", "fields": {}}}})
    with pytest.raises(ValueError, match="not a synergy_lens class"):
        Thing.load(tmp_path / "evil.st")
