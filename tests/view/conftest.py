"""Synthetic results for the view tests: real result objects from random activity, no model.

Everything here is built in seconds: a random ``HeadActivity`` (3 layers x 4
heads, 5 prompts x 30 steps, one prompt being ``<script>alert(1)</script>``) goes through
the real ``decompose``, ``synergy_scores``, ``layer_profile``, ``find_core`` and
``topology_table``, ``unit_stability``, ``rank_uncertainty`` and the headline and
robustness tests (5 surrogates); the ablation curve and the attention patterns are made by hand.
"""

from __future__ import annotations

import pytest
import torch

from synergy_lens.analysis import (
    find_core,
    layer_profile,
    rank_uncertainty,
    synergy_scores,
    topology_table,
    unit_stability,
)
from synergy_lens.intervene import AblationCurve
from synergy_lens.phiid import decompose
from synergy_lens.pipeline import headline_step
from synergy_lens.record import HeadActivity
from synergy_lens.view.circuits import HeadAttention
from synergy_lens.view.results import RunResults

N_LAYERS, N_HEADS, N_PROMPTS, N_STEPS = 3, 4, 5, 30
SCRIPT = "<script>alert(1)</script>"
PROMPTS = [SCRIPT, "What is 2 + 2?", "Tom & Jerry <b>bold</b>", "plain prompt", "\x00control\x1bchars"]


def make_activity(seed: int = 0) -> HeadActivity:
    g = torch.Generator().manual_seed(seed)
    values = torch.rand(N_PROMPTS, N_STEPS, N_LAYERS, N_HEADS, generator=g)
    values[:, 1:] += 0.5 * values[:, :-1]  # some autocorrelation
    lengths = torch.tensor([N_STEPS, N_STEPS, 25, N_STEPS, 20])
    gen = [[int(t) for t in torch.randint(0, 50, (int(n),), generator=g)] for n in lengths]
    return HeadActivity(
        values=values, lengths=lengths, prompts=list(PROMPTS),
        categories=["a", "b", "a", "b", "a"], prompt_ids=[[1, 2, 3]] * N_PROMPTS, generated_ids=gen,
        completions=[f"completion {i} </pre><script>alert({i})</script>" for i in range(N_PROMPTS)],
        model_name="synthetic", settings={"signal": "l2", "max_new_tokens": N_STEPS},
    )


def make_curve() -> AblationCurve:
    steps = torch.tensor([0, 4, 8, 12])
    random = torch.tensor([[0.0, 0.1, 0.3, 0.9], [0.0, 0.2, 0.5, 0.9], [0.0, 0.05, 0.4, 0.9]])
    curves = {"synergy-first": torch.tensor([0.0, 0.5, 0.8, 0.9]), "redundancy-first": torch.tensor([0.0, 0.02, 0.1, 0.9])}
    return AblationCurve(
        steps=steps, curves=curves, per_prompt={k: v[:, None].repeat(1, 2) for k, v in curves.items()},
        random=random, random_per_prompt=random[:, :, None].repeat(1, 1, 2),
        orders={"synergy-first": ["L1H0"], "redundancy-first": ["L0H0"]}, meta={"mode": "zero", "n_prompts": 2},
    )


def make_attention() -> HeadAttention:
    n = 6
    p = torch.tril(torch.rand(2, n, n, generator=torch.Generator().manual_seed(1)))
    p = p / p.sum(-1, keepdim=True)
    return HeadAttention(tokens=["<bos>", SCRIPT, " a", " b", "&", " c"], patterns=p, labels=["L1H2", "L2H0"])


@pytest.fixture(scope="session")
def activity() -> HeadActivity:
    return make_activity()


@pytest.fixture(scope="session")
def result(activity):
    return decompose(activity, progress=False)


@pytest.fixture(scope="session")
def scores(result):
    return synergy_scores(result)


@pytest.fixture(scope="session")
def profile(result):
    return layer_profile(result, n_boot=40, seed=0)


@pytest.fixture(scope="session")
def core(scores):
    return find_core(scores, q=0.25)


@pytest.fixture(scope="session")
def curve() -> AblationCurve:
    return make_curve()


@pytest.fixture(scope="session")
def attention() -> HeadAttention:
    return make_attention()


@pytest.fixture(scope="session")
def run(activity, result, scores, profile, core, curve, attention) -> RunResults:
    r = RunResults(settings={"model": "synthetic", "max_new_tokens": N_STEPS, "note": SCRIPT})
    r.add("activity", activity).add("phiid", result).add("scores", scores)
    r.add("profile_rank_gradient", profile)
    r.add("profile_synergy_fraction", layer_profile(result, score="synergy_fraction", n_boot=40))
    r.add("core", core).add("topology", topology_table(result))
    r.add("ablation", curve).add("attention", attention)
    r.add("tokens", [[f"t{j}" for j in range(len(g))] for g in activity.generated_ids])
    r.add("stability", unit_stability(activity, warn=False))
    r.add("ranks", rank_uncertainty(result, n_boot=20, seed=0))
    headline_step(r, activity, result, score="rank_gradient", q=0.25, n_boot=20, seed=0, n_surrogates=5,
                  robustness=("detrended", "pooled"), progress=False)
    return r
