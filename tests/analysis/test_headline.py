"""The headline test: a descriptive inverted U made only of slower middle layers is not called
significant; one made of synergistically coupled middle layers is. Plus the result's
sentences, table and round trip."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from synergy_lens.analysis.headline import (
    HEADLINE_SCORES,
    Headline,
    headline,
    index_null,
    shape_word,
)
from synergy_lens.analysis.profile import layer_means, minmax_scale, u_index
from synergy_lens.phiid import decompose

from .planted import CORE, N_HEADS, N_LAYERS, FakeActivity, planted_core_system, simulate

N_PROMPTS, N_TIME, N_SURROGATES = 8, 150, 19


def _units() -> int:
    return N_LAYERS * N_HEADS


def slow_middle_system() -> tuple[np.ndarray, np.ndarray]:
    """No coupling at all: every unit is its own AR(1) with independent noise, middle layers
    (2, 3) slower (0.9 vs 0.3). (A shared noise would be a coupling: the null destroys it.)"""
    u = _units()
    a = np.full(u, 0.3)
    a[CORE] = 0.9
    return np.diag(a), np.eye(u)


def coupled_middle_system() -> tuple[np.ndarray, np.ndarray]:
    """tests/analysis/planted.py's core: middle-layer units coupled through their deviation
    from the core mean (synergy), every unit AR 0.5 with shared noise 0.3."""
    return planted_core_system(a=0.5, rho=0.3, c=0.8, a_mem=0.5, rho_mem=0.3)


def _headline(system: tuple[np.ndarray, np.ndarray]) -> tuple[Headline, object, object]:
    x = simulate(*system, n_prompts=N_PROMPTS, n_time=N_TIME, seed=1)
    act = FakeActivity.from_series(x, N_LAYERS, N_HEADS)
    result = decompose(act, progress=False)
    hl, test = headline(act, result, n_surrogates=N_SURROGATES, n_boot=200, seed=0)
    return hl, test, result


@pytest.fixture(scope="module")
def slow() -> tuple[Headline, object, object]:
    return _headline(slow_middle_system())


@pytest.fixture(scope="module")
def coupled() -> tuple[Headline, object, object]:
    return _headline(coupled_middle_system())


def test_slower_middle_layers_give_a_descriptive_inverted_u_that_is_not_significant(slow) -> None:
    """Seeded: syn_minus_red (the released code's score) shows a clear inverted U with a CI
    above 0, yet no score's index exceeds the circular-shift null at 0.05."""
    hl, _, _ = slow
    k = hl.scores.index("syn_minus_red")
    assert hl.index[k] > 0.5 and hl.ci_low[k] > 0
    for s in hl.scores:
        assert not hl.significant(s), hl.sentence(s)
    assert "not above the autocorrelation null" in hl.sentence("syn_minus_red")


def test_coupled_middle_layers_are_called_significant(coupled) -> None:
    """Seeded: with synergistic coupling in the middle layers, the rank gradient's and the
    synergy fraction's inverted U exceed every one of the 19 surrogates (p = 1/20)."""
    hl, _, _ = coupled
    for s in ("rank_gradient", "synergy_fraction"):
        k = hl.scores.index(s)
        assert hl.index[k] > 0.5 and hl.ci_low[k] > 0
        assert hl.p[k] == pytest.approx(1 / (1 + N_SURROGATES), abs=1e-12)
        assert hl.significant(s)
        assert "above the autocorrelation null" in hl.sentence(s)


def test_index_null_matches_a_direct_computation(coupled) -> None:
    hl, test, _ = coupled
    depth = torch.linspace(0, 1, N_LAYERS, dtype=torch.float64)
    for s in HEADLINE_SCORES:
        aligned, null, _ = index_null(test, s)
        k = test.scores.index(s)
        direct = [u_index(minmax_scale(layer_means(test.null[r, k].flatten(), N_LAYERS, N_HEADS)), depth)
                  for r in range(N_SURROGATES)]
        torch.testing.assert_close(null, torch.tensor(direct, dtype=torch.float64))
        expected_p = (1 + sum(v >= aligned for v in direct)) / (1 + N_SURROGATES)
        assert hl.p[hl.scores.index(s)] == pytest.approx(expected_p, abs=1e-12)


def test_core_heads_and_sentences_and_round_trip(coupled, tmp_path) -> None:
    hl, _, _ = coupled
    assert len(hl.core) == math.ceil(0.25 * _units()) and hl.core_q.shape == (len(hl.core),)
    assert "core heads" in hl.core_sentence()
    df = hl.to_dataframe()
    assert list(df["score"]) == list(HEADLINE_SCORES) and df["above_null"].dtype == bool
    agree = hl.agreement_table()
    assert agree.shape == (3, 3) and np.allclose(np.diag(agree.to_numpy()), 1.0)
    hl.save(tmp_path / "h.pt")
    back = Headline.load(tmp_path / "h.pt")
    assert back.sentences() == hl.sentences() and torch.equal(back.null_index, hl.null_index)


def test_shape_word() -> None:
    assert shape_word(0.4, (0.1, 0.6)) == "inverted U"
    assert shape_word(0.4, (-0.1, 0.6)).startswith("weak inverted U")
    assert shape_word(-0.2) == "no inverted U"
    assert shape_word(math.nan) == "no profile"
