"""Shared fixtures: tiny random models on every available backend, the real SmolLM2 once."""

from __future__ import annotations

import os

import pytest

# No hub at test time: fail fast instead of retrying network calls.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from synergy_lens.models import available_backends
from tests import shapecheck

BACKENDS = available_backends()


@pytest.fixture(autouse=True)
def _shape_checks(request: pytest.FixtureRequest):
    """Runtime shape checks (tests/shapecheck.py) everywhere but in tests marked
    ``wrong_shapes``, which feed wrong arrays on purpose to test the library's own errors."""
    if request.node.get_closest_marker("wrong_shapes") is None:
        yield
    else:
        with shapecheck.off():
            yield


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of tiny-model passes (restored after it).

    On a shared CPU, several threads per tiny matmul spend their time synchronising: tiny
    passes run several times faster on one thread. Use with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(params=BACKENDS, scope="session")
def backend(request: pytest.FixtureRequest) -> str:
    """Each TransformerLens backend installed here ("bridge"; "hooked" on TL 3.9)."""
    return str(request.param)


@pytest.fixture(scope="session")
def tiny(backend: str):
    """A tiny random Llama-family model (2 layers, 4 query heads, 2 KV heads, d_head 8)."""
    from synergy_lens.models import tiny_model

    return tiny_model(backend, n_layers=2, n_heads=4, n_kv_heads=2, d_head=8, seed=0)


@pytest.fixture(scope="session")
def smol(backend: str):
    """The real SmolLM2-135M-Instruct on each backend (loaded once per session)."""
    from synergy_lens.models import load_model

    return load_model(backend=backend)


@pytest.fixture(scope="session")
def smol_hf():
    """The transformers model SmolLM2 is loaded from, with its tokenizer."""
    from synergy_lens.models import load_default_hf

    return load_default_hf()
