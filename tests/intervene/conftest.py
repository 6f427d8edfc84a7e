"""Fixtures for the intervention tests: tiny models with a clean recording to ablate."""

from __future__ import annotations

import pytest
import torch

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
def _one_thread():
    """One intra-op thread for these small passes (restored after each module).

    On a shared CPU, several threads per tiny matmul spend their time synchronising: the
    tiny-model passes here run about 4x faster on one thread.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
