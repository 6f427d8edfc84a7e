"""Fixtures for the intervention tests: tiny models with a clean recording to ablate."""

from __future__ import annotations

import pytest

from synergy_lens.models import adapt


@pytest.fixture(scope="module")
def tiny3(backend: str):
    """A 3-layer tiny model (so a middle layer can be skipped), 4 query heads, 2 KV heads."""
    from synergy_lens.models import tiny_model

    return tiny_model(backend, n_layers=3, n_heads=4, n_kv_heads=2, d_head=8, seed=1)


@pytest.fixture(scope="module")
def clean_run(tiny3):
    """Two prompts and their greedy continuations: the (prompt_ids, generated_ids) pairs."""
    a = adapt(tiny3)
    prompts = [[256, 72, 101, 108, 108, 111], [256, 49, 43, 50, 61]]
    gens = a.generate(prompts, max_new_tokens=6, stop_at_eos=False)
    return list(zip(prompts, gens))



@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    """Every intervention test module runs its tiny passes on one thread (tests/conftest.py)."""
    yield
